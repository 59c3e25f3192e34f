/**
 * A decompressor's output channel: a connected pair of Unix stream sockets (listen on a path in a private temp dir,
 * connect, accept, then the path is removed). The tool gets the accepted end as its stdout; we read the other with
 * `onread`, into a buffer we choose for every read. Node has no pipe(2) or socketpair(2), and a child's stdout
 * 'pipe' would allocate a new 64 KiB buffer per read (~30 MiB more peak RSS over a 512 MiB zstd stream). A socket
 * and not a FIFO (as until issue 22): a read returns up to the socket buffer, 200-300 KiB on average where a FIFO
 * gives at most its 64 KiB, so 2 GiB of zstd output takes ~8,000 reads instead of ~38,000 (measured).
 */
import { promises as fsp } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface ToolOutput {
  /** Our end: read with the given onread. */
  reader: net.Socket;
  /** The tool's end (its stdout); close ours once the tool has it, or the reader never sees end-of-file. */
  writer: net.Socket;
}

export async function openToolOutput(onread: net.OnReadOpts): Promise<ToolOutput> {
  const dir = await fsp.mkdtemp(join(tmpdir(), 'bmts-out-'));
  const path = join(dir, 's');
  const server = net.createServer({ pauseOnConnect: true });
  let reader: net.Socket | null = null;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
    const accepted = new Promise<net.Socket>((resolve, reject) => {
      server.once('connection', resolve);
      server.once('error', reject);
    });
    const r = net.connect({ path, onread });
    reader = r;
    await new Promise<void>((resolve, reject) => {
      r.once('connect', resolve);
      r.once('error', reject);
    });
    return { reader: r, writer: await accepted };
  } catch (e) {
    reader?.destroy();
    throw e;
  } finally {
    server.close();
    await fsp.rm(dir, { recursive: true, force: true });
  }
}
