/**
 * Block-device facts and small operations the image writer needs. Works without udev (the ramdisk and the test
 * hosts have none): partitions are read from sysfs, identities from `blkid -p` (a direct probe, no cache).
 */
import { constants, promises as fsp } from 'node:fs';
import { basename, join } from 'node:path';
import { run } from '../common/exec.js';
import { getLogger } from '../common/logger.js';
import { refreshPartitions } from './devices.js';
import { errorMessage } from '../common/errors.js';
import { diskGeometry, moveGptBackupToEnd } from './gpt.js';

const log = getLogger('image-disk');
const MiB = 1024 * 1024;

/** Size in bytes: sysfs (no process spawned; 30-60 ms each on a busy box), `blockdev` where sysfs has no entry. */
export async function deviceSize(dev: string): Promise<number> {
  const geo = await diskGeometry(dev).catch(() => null); // not a block device under /sys: ask blockdev
  if (geo) return geo.bytes;
  const r = await run('blockdev', ['--getsize64', dev], { quiet: true });
  return Number(r.stdout.trim());
}

function sysName(dev: string): string {
  return basename(dev);
}

/** write-zeroes is cheap (loop: hole punch, NVMe/SCSI: offloaded) when the queue advertises it. */
export async function fastZeroSupported(dev: string): Promise<boolean> {
  const name = sysName(dev);
  for (const q of [`/sys/class/block/${name}/queue`, `/sys/class/block/${name}/../queue`]) {
    const v = await fsp.readFile(join(q, 'write_zeroes_max_bytes'), 'utf8').catch(() => null); // older kernels: no such file
    if (v !== null) return Number(v.trim()) > 0;
  }
  return false;
}

/**
 * Make [start, start+len) read as zeros without writing it: fallocate --punch-hole on the block device is the
 * kernel's zero-out with unmap allowed and no fallback (fails instead of writing zero pages where the device
 * can't offload it; on a loop device it punches a hole in the backing file). Returns false when unsupported.
 */
export async function punchZeros(dev: string, start: number, len: number): Promise<boolean> {
  if (len <= 0) return true;
  try {
    await run('fallocate', ['--punch-hole', '--keep-size', '-o', String(start), '-l', String(len), dev], { quiet: true });
    return true;
  } catch {
    return false;
  }
}

/** Zero [start, start+len): offloaded where possible, else BLKZEROOUT (the kernel writes zero pages). */
export async function zeroRange(dev: string, start: number, len: number): Promise<void> {
  if (len <= 0) return;
  if (await punchZeros(dev, start, len)) return;
  await run('blkdiscard', ['-z', '-o', String(start), '-l', String(len), dev], { quiet: true });
}

/**
 * Before a whole-disk image is written: zero the last MiB, where an old GPT backup header lives that an image
 * smaller than the disk does not overwrite (the image itself overwrites everything from byte 0, so the first MiB
 * needs no extra pass). No fsync and no re-read here: the image writer's fsync covers these pages, and the
 * partition table is re-read once after the image is on the disk. A failed write is still cleaned by wipeEnds.
 */
export async function zeroStaleTail(dev: string): Promise<void> {
  const size = await deviceSize(dev);
  const len = Math.min(MiB, size);
  const fh = await fsp.open(dev, constants.O_WRONLY);
  try {
    await fh.write(Buffer.alloc(len), 0, len, size - len);
  } finally {
    await fh.close();
  }
}

/** Zero the first and last MiB (partition tables, GPT backup header, filesystem superblocks at the start). */
export async function wipeEnds(dev: string): Promise<void> {
  const size = await deviceSize(dev);
  const fh = await fsp.open(dev, constants.O_WRONLY);
  try {
    const zero = Buffer.alloc(Math.min(MiB, size));
    await fh.write(zero, 0, zero.length, 0);
    if (size > zero.length) await fh.write(zero, 0, zero.length, size - zero.length);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rereadPartitions(dev).catch(() => undefined); // a busy device keeps its old table; the wait below notices
  log.warn({ dev }, 'partition table wiped');
}

export async function rereadPartitions(dev: string): Promise<void> {
  // The managers' refresh: partprobe/partx add partitions by ioctl (some kernels have no table parsers).
  await refreshPartitions(dev);
  await waitForPartitionNodes(dev);
}

/** devtmpfs creates partition nodes asynchronously; wait (bounded) until every sysfs partition has one. */
async function waitForPartitionNodes(dev: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const parts = await listPartitionNames(dev);
    const missing = [];
    for (const p of parts) if (!(await fsp.stat(`/dev/${p}`).catch(() => null))) missing.push(p); // absent node = missing
    if (missing.length === 0 || Date.now() > deadline) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The partitions of `dev` the kernel shows (sysfs names, in partition-number order); nothing is probed. */
export async function listPartitionNames(dev: string): Promise<string[]> {
  const dir = `/sys/class/block/${sysName(dev)}`;
  const entries = await fsp.readdir(dir).catch(() => [] as string[]);
  const out: Array<{ name: string; n: number }> = [];
  for (const e of entries) {
    const n = await fsp.readFile(join(dir, e, 'partition'), 'utf8').catch(() => null); // not a partition entry
    if (n !== null) out.push({ name: e, n: Number(n.trim()) });
  }
  return out.sort((a, b) => a.n - b.n).map((p) => p.name);
}

export interface PartitionInfo {
  path: string;
  number: number;
  start: number;
  size: number;
  fstype: string | null;
  uuid: string | null;
  label: string | null;
  partuuid: string | null;
  partlabel: string | null;
  parttype: string | null;
}

export async function probe(dev: string): Promise<Record<string, string>> {
  const r = await run('blkid', ['-p', '-o', 'export', dev], { quiet: true, okCodes: [0, 2] });
  const out: Record<string, string> = {};
  for (const line of r.stdout.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}

export async function listPartitions(dev: string): Promise<PartitionInfo[]> {
  const names = await listPartitionNames(dev);
  const out: PartitionInfo[] = [];
  for (const name of names) {
    const sys = `/sys/class/block/${sysName(dev)}/${name}`;
    const read = async (f: string): Promise<number> => Number((await fsp.readFile(join(sys, f), 'utf8')).trim());
    const p = await probe(`/dev/${name}`);
    out.push({
      path: `/dev/${name}`,
      number: await read('partition'),
      start: (await read('start')) * 512,
      size: (await read('size')) * 512,
      fstype: p.TYPE ?? null,
      uuid: p.UUID ?? null,
      label: p.LABEL ?? null,
      partuuid: p.PART_ENTRY_UUID ?? null,
      partlabel: p.PART_ENTRY_NAME ?? null,
      parttype: p.PART_ENTRY_TYPE ?? null,
    });
  }
  return out;
}

/** 'gpt', 'dos' or null (no partition table). */
export async function partitionTableType(dev: string): Promise<string | null> {
  const p = await probe(dev);
  return p.PTTYPE ?? null;
}

/** IPA's disk identifier: the MBR signature at byte 440 as 0x%08x (0x00000000 on most GPT disks). */
export async function diskIdentifier(dev: string): Promise<string> {
  const fh = await fsp.open(dev, constants.O_RDONLY);
  try {
    const b = Buffer.alloc(4);
    await fh.read(b, 0, 4, 440);
    return `0x${b.readUInt32LE(0).toString(16).padStart(8, '0')}`;
  } finally {
    await fh.close();
  }
}

/**
 * Move the GPT backup header to the end of a disk larger than the image (errors ignored, as IPA does). Nothing to
 * do for an MBR image or a backup already at the last LBA; the common GPT case is written directly (block/gpt.ts,
 * the bytes sgdisk -e writes without its sync() and one-second sleep); anything unusual still goes to sgdisk -e.
 */
export async function fixGptBackup(dev: string): Promise<void> {
  const outcome = await moveGptBackupToEnd(dev).catch((e: unknown) => {
    log.warn({ dev, err: errorMessage(e) }, 'GPT backup move failed; trying sgdisk -e');
    return 'unsure' as const;
  });
  log.debug({ dev, outcome }, 'GPT backup header');
  if (outcome !== 'unsure') return;
  if ((await partitionTableType(dev)) !== 'gpt') return;
  await run('sgdisk', ['-e', dev], { quiet: true }).catch((e: unknown) =>
    log.warn({ dev, err: errorMessage(e) }, 'sgdisk -e failed (ignored)'),
  );
}

