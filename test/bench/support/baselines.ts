/**
 * The baselines the benches compare against, each the strongest plain-tool way of doing the same job, run in the
 * same process and run as the figure it is compared with. A baseline that fails (or writes fewer bytes than asked)
 * throws BaselineFailed: run.ts then ends the bench with a non-zero exit and no ratio, since a ratio against a
 * broken baseline would flatter whatever it is compared with.
 */
import { errorMessage } from '../../../common/errors.js';
import { run } from '../../../common/exec.js';

export class BaselineFailed extends Error {
  constructor(what: string, why: string) {
    super(`baseline \`${what}\` failed, no ratio printed: ${why}`);
    this.name = 'BaselineFailed';
  }
}

async function timed(what: string, fn: () => Promise<unknown>): Promise<number> {
  const t = process.hrtime.bigint();
  try {
    await fn();
  } catch (e) {
    throw e instanceof BaselineFailed ? e : new BaselineFailed(what, errorMessage(e));
  }
  return Number(process.hrtime.bigint() - t) / 1e9;
}

/** The byte count dd reports on stderr ("N bytes (...) copied"); dd's default status level prints it. */
function ddBytes(stderr: string): number | null {
  const m = /^(\d+) bytes/m.exec(stderr);
  return m ? Number(m[1]) : null;
}

/**
 * `curl URL | dd of=DEV bs=4M iflag=fullblock oflag=direct conv=fsync` under pipefail: a failed download or write
 * fails the pipeline, and dd must report exactly `bytes` written. URL and device are positional args of the script,
 * never spliced into it. Returns seconds.
 */
export async function curlDd(url: string, dev: string, bytes: number, timeoutMs = 600_000): Promise<number> {
  const what = 'curl | dd bs=4M iflag=fullblock oflag=direct';
  return timed(what, async () => {
    const r = await run('bash', ['-c', 'set -o pipefail; curl -sSf "$1" | dd of="$2" bs=4M iflag=fullblock oflag=direct conv=fsync',
      'baseline', url, dev], { timeoutMs, quiet: true });
    const wrote = ddBytes(r.stderr);
    if (wrote !== bytes) throw new BaselineFailed(what, `dd reported ${wrote ?? 'no'} bytes written, expected ${bytes}`);
  });
}

/** `dd if=/dev/zero of=DEV bs=4M oflag=direct` over the first `sizeMiB` MiB (a multiple of 4). Returns seconds. */
export async function ddZero(dev: string, sizeMiB: number): Promise<number> {
  const what = 'dd if=/dev/zero bs=4M oflag=direct';
  return timed(what, async () => {
    const r = await run('dd', ['if=/dev/zero', `of=${dev}`, 'bs=4M', `count=${sizeMiB / 4}`, 'oflag=direct', 'conv=fsync'],
      { timeoutMs: 3600_000, quiet: true });
    const wrote = ddBytes(r.stderr);
    if (wrote !== sizeMiB * 1024 * 1024) throw new BaselineFailed(what, `dd reported ${wrote ?? 'no'} bytes, expected ${sizeMiB} MiB`);
  });
}

/** `blkdiscard DEV` (discard) or `blkdiscard --zeroout DEV` (the kernel's WRITE ZEROES offload). Returns seconds. */
export async function blkdiscard(dev: string, zeroout: boolean): Promise<number> {
  const args = zeroout ? ['--zeroout', dev] : [dev];
  return timed(`blkdiscard${zeroout ? ' --zeroout' : ''}`, () => run('blkdiscard', args, { timeoutMs: 3600_000, quiet: true }));
}

/**
 * The IPA-style writer (support/ipa_style_writer.py under Debian's /usr/bin/python3 with python3-requests): 1 MiB
 * chunks, checksum per chunk, buffered writes, fsync. It must report exactly `bytes` written and a matching
 * checksum. Returns seconds.
 */
export async function ipaStyleWriter(url: string, dev: string, bytes: number, algo: string, sum: string,
  timeoutMs = 600_000): Promise<number> {
  const what = 'IPA-style python writer (requests, 1 MiB chunks, hash, write, fsync)';
  const script = new URL('./ipa_style_writer.py', import.meta.url).pathname;
  return timed(what, async () => {
    const r = await run('/usr/bin/python3', [script, url, dev, algo, sum], { timeoutMs, quiet: true });
    if (r.stdout.trim() !== `written ${bytes}`) throw new BaselineFailed(what, `it reported "${r.stdout.trim()}", expected ${bytes} bytes`);
  });
}
