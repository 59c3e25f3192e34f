/**
 * Low-level disk wiping used by the erase steps: metadata destruction, zero-out offload, plain overwrite with
 * progress, NVMe format and ATA secure erase. Every function here writes: callers run assertSafeToWrite first.
 */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { randomFillSync } from 'node:crypto';
import { basename, join } from 'node:path';
import { run } from '../common/exec.js';
import { getLogger } from '../common/logger.js';
import { refreshPartitions } from './devices.js';
import { SYS_BLOCK, readSysInt } from './sysfs.js';
import { errorMessage } from '../common/errors.js';

const log = getLogger('wipe');
const MiB = 1024 * 1024;
const CHUNK = 4 * MiB;
/** Flush this often during an overwrite, so progress means bytes on the device, not in the page cache. */
const SYNC_EVERY = 256 * MiB;

export type Progress = (update: Record<string, unknown>) => void;

function aborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new Error('aborted');
}

/** Write `len` bytes of `fill` at `offset` and flush them to the device. */
async function writeRange(path: string, offset: number, len: number, fill: Buffer): Promise<void> {
  const fh = await open(path, constants.O_WRONLY | constants.O_DSYNC);
  try {
    let done = 0;
    while (done < len) {
      const n = Math.min(fill.length, len - done);
      await fh.write(fill, 0, n, offset + done);
      done += n;
    }
    await fh.datasync();
  } finally {
    await fh.close();
  }
}

/**
 * IPA's destroy_disk_metadata: wipefs every signature, zero the first and last MiB (primary and backup GPT, md 1.x
 * and LVM labels live there), then zap GPT/MBR structures on whole disks and let the kernel drop the partitions.
 */
export async function destroyMetadata(path: string, size: number, wholeDisk: boolean): Promise<void> {
  await run('wipefs', ['--force', '--all', path], { timeoutMs: 120_000 });
  const zero = Buffer.alloc(MiB);
  const len = Math.min(MiB, size);
  if (len > 0) {
    await writeRange(path, 0, len, zero);
    await writeRange(path, Math.max(0, size - len), len, zero);
  }
  if (wholeDisk) {
    try {
      await run('sgdisk', ['--zap-all', path], { timeoutMs: 120_000, okCodes: [0, 2] });
    } catch (e) {
      // The start and end are already zeroed; a disk too small or odd for sgdisk is still clean.
      log.warn({ dev: path, err: errorMessage(e) }, 'sgdisk --zap-all failed after zeroing');
    }
    await refreshPartitions(path);
  }
}

/** Whether the kernel can zero the device without us sending the zeros (WRITE ZEROES / WRITE SAME / fallocate). */
export function supportsZeroOut(path: string): boolean {
  return (readSysInt(join(SYS_BLOCK, basename(path), 'queue', 'write_zeroes_max_bytes')) ?? 0) > 0;
}

export function supportsDiscard(path: string): boolean {
  return (readSysInt(join(SYS_BLOCK, basename(path), 'queue', 'discard_max_bytes')) ?? 0) > 0;
}

/** True when every sampled MiB (start, middle, end) reads back as zeros. */
export async function samplesAreZero(path: string, size: number): Promise<boolean> {
  const fh = await open(path, constants.O_RDONLY);
  try {
    const buf = Buffer.alloc(Math.min(MiB, size));
    for (const off of [0, Math.floor(size / 2 / MiB) * MiB, Math.max(0, size - buf.length)]) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, off);
      if (!buf.subarray(0, bytesRead).every((b) => b === 0)) return false;
    }
    return true;
  } finally {
    await fh.close();
  }
}

/** BLKZEROOUT through blkdiscard --zeroout, verified by sampling. */
export async function zeroOut(path: string, size: number): Promise<void> {
  await run('blkdiscard', ['--zeroout', path], { timeoutMs: 24 * 3600_000 });
  if (!(await samplesAreZero(path, size))) throw new Error(`${path} does not read back zeros after blkdiscard --zeroout`);
}

export interface OverwriteOptions {
  /** Random-data passes before the final one (shred's -n). */
  randomPasses: number;
  /** Finish with a pass of zeros (shred's -z). */
  zeroize: boolean;
  progress?: Progress;
  signal?: AbortSignal;
}

/**
 * A buffer whose memory address suits O_DIRECT on `path`. V8 does not expose addresses, so the aligned offset
 * inside a slightly larger allocation is found by probing with O_DIRECT reads (harmless); null when the device
 * refuses O_DIRECT, in which case the caller writes through the page cache.
 */
async function directBuffer(path: string, size: number): Promise<Buffer | null> {
  const raw = Buffer.allocUnsafeSlow(size + 4096);
  const probe = await open(path, constants.O_RDONLY | constants.O_DIRECT).catch(() => null); // no O_DIRECT: buffered probe
  if (!probe) return null;
  try {
    for (let off = 0; off < 4096; off += 16) {
      const ok = await probe.read(raw, off, 4096, 0).then(() => true, () => false);
      if (ok) return raw.subarray(off, off + size);
    }
  } finally {
    await probe.close();
  }
  return null;
}

/**
 * Overwrite the whole device: `randomPasses` passes of random data then (if zeroize, or if there was no random
 * pass) one of zeros. Large O_DIRECT writes with two in flight (one buffer is filled while the other is written);
 * buffered writes with periodic flushes where O_DIRECT is refused. Progress goes out about every 64 MiB.
 */
export async function overwriteDevice(path: string, size: number, o: OverwriteOptions): Promise<string> {
  const passes: ('random' | 'zero')[] = [...Array<'random'>(Math.max(0, o.randomPasses)).fill('random')];
  if (o.zeroize || passes.length === 0) passes.push('zero');
  const total = size * passes.length;
  const started = Date.now();
  const first = await directBuffer(path, CHUNK);
  const second = first ? await directBuffer(path, CHUNK) : null;
  const direct = first !== null && second !== null && size % 4096 === 0;
  const bufs = direct && first && second ? [first, second] : [Buffer.allocUnsafeSlow(CHUNK), Buffer.allocUnsafeSlow(CHUNK)];
  const fh = await open(path, constants.O_WRONLY | (direct ? constants.O_DIRECT : 0));
  const inflight: (Promise<unknown> | null)[] = [null, null];
  try {
    let written = 0;
    for (const [i, kind] of passes.entries()) {
      if (kind === 'zero') for (const b of bufs) b.fill(0);
      let off = 0;
      let sinceSync = 0;
      let sinceReport = 0;
      let slot = 0;
      while (off < size) {
        aborted(o.signal);
        const n = Math.min(CHUNK, size - off);
        await inflight[slot];
        const buf = bufs[slot] as Buffer;
        if (kind === 'random') randomFillSync(buf, 0, n);
        inflight[slot] = fh.write(buf, 0, n, off);
        slot = 1 - slot;
        off += n;
        written += n;
        sinceSync += n;
        sinceReport += n;
        if (!direct && sinceSync >= SYNC_EVERY) {
          await Promise.all(inflight);
          await fh.datasync();
          sinceSync = 0;
        }
        if (sinceReport >= 64 * MiB || off === size) {
          sinceReport = 0;
          const secs = (Date.now() - started) / 1000;
          o.progress?.({
            device: path, pass: i + 1, passes: passes.length, pass_kind: kind,
            bytes_done: written, bytes_total: total,
            percent: Math.floor((written / total) * 100),
            mib_s: secs > 0 ? Math.round(written / MiB / secs) : null,
          });
        }
      }
      await Promise.all(inflight);
      await fh.datasync();
    }
  } finally {
    await Promise.allSettled(inflight);
    await fh.close();
  }
  return `overwrite ${passes.join('+')}`;
}

/** NVMe format with secure erase (crypto erase when the controller supports it, else user-data erase). */
export async function nvmeSecureErase(path: string): Promise<string> {
  let mode = '1';
  try {
    const r = await run('nvme', ['id-ctrl', path, '-o', 'json'], { timeoutMs: 30_000 });
    const fna = Number((JSON.parse(r.stdout) as { fna?: unknown }).fna ?? 0);
    if (fna & 0x4) mode = '2';
  } catch {
    // id-ctrl unavailable: user-data erase is the universally supported mode
  }
  await run('nvme', ['format', path, '-s', mode, '-f'], { timeoutMs: 24 * 3600_000 });
  return `nvme format -s ${mode}`;
}

export interface AtaSecurity {
  supported: boolean;
  enabled: boolean;
  locked: boolean;
  frozen: boolean;
  enhanced: boolean;
}

/** The "Security:" block of `hdparm -I`. */
export function parseHdparmSecurity(text: string): AtaSecurity | null {
  const i = text.indexOf('Security:');
  if (i < 0) return null;
  const block = text.slice(i).split(/\n\s*\n|\n(?=\S)/)[0] ?? '';
  const has = (re: RegExp): boolean => re.test(block);
  return {
    supported: has(/^\s*supported\s*$/m),
    enabled: has(/^\s*enabled\s*$/m),
    locked: has(/^\s*locked\s*$/m),
    frozen: has(/^\s*frozen\s*$/m),
    enhanced: has(/^\s*supported: enhanced erase/m),
  };
}

/** ATA secure erase via hdparm; null when the drive does not offer it in a usable state (try something else). */
export async function ataSecureErase(path: string): Promise<string | null> {
  let sec: AtaSecurity | null;
  try {
    sec = parseHdparmSecurity((await run('hdparm', ['-I', path], { timeoutMs: 30_000 })).stdout);
  } catch {
    return null;
  }
  if (!sec || !sec.supported || sec.frozen || sec.locked) return null;
  const pass = 'NULL';
  if (!sec.enabled) await run('hdparm', ['--user-master', 'u', '--security-set-pass', pass, path], { timeoutMs: 60_000 });
  const how = sec.enhanced ? '--security-erase-enhanced' : '--security-erase';
  await run('hdparm', ['--user-master', 'u', how, pass, path], { timeoutMs: 24 * 3600_000 });
  const after = parseHdparmSecurity((await run('hdparm', ['-I', path], { timeoutMs: 30_000 })).stdout);
  if (after?.enabled) throw new Error(`ATA security still enabled on ${path} after ${how}`);
  return `ata ${how.slice(2)}`;
}
