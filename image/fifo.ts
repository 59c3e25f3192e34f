/**
 * An anonymous-in-effect FIFO: made with mkfifo in a private temp dir, opened at both ends, then unlinked (the
 * open descriptors keep it alive). Node has no pipe(2); a helper's stdout pointed at the write end and the read end
 * wrapped in a net.Socket with `onread` gives reads into one reused buffer, where a child's stdout pipe would
 * allocate a new 64 KiB buffer per read (measured: ~30 MiB more peak RSS over a 512 MiB zstd stream).
 */
import { closeSync, constants, openSync, promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../common/exec.js';

export interface Fifo {
  readFd: number;
  writeFd: number;
}

export async function openFifo(): Promise<Fifo> {
  const dir = await fsp.mkdtemp(join(tmpdir(), 'bmts-fifo-'));
  const path = join(dir, 'fifo');
  try {
    await run('mkfifo', ['-m', '600', path], { quiet: true });
    // Non-blocking read end first (succeeds with no writer yet), then the write end (succeeds: a reader exists).
    const readFd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
    let writeFd: number;
    try {
      writeFd = openSync(path, constants.O_WRONLY);
    } catch (e) {
      closeSync(readFd);
      throw e;
    }
    return { readFd, writeFd };
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}
