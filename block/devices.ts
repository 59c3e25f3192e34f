/**
 * Block devices: listing (lsblk, falling back to /sys where lsblk is missing) and THE write-safety guard every disk
 * writer calls first (assertSafeToWrite). With a device allow-list (ipa-device-allowlist; tests: their loop
 * devices) only those devices exist for the agent, and loop devices count as disks.
 */
import { existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import { BlockDeviceError } from '../protocol/agent-api.js';
import { CommandError, run } from '../common/exec.js';
import { getLogger } from '../common/logger.js';
import { blockContext } from './context.js';
import {
  SYS_BLOCK, devNumber, devNumberOfPath, holdersOf, kernelName, listDir, parentDisk, partitionsOf,
  readSys, readSysInt, readText, realPath, slavesOf, unescapeMount,
} from './sysfs.js';
import { errorMessage } from '../common/errors.js';

const log = getLogger('disks');

export interface BlockDevice {
  /** /dev/<kname>, IPA's `name`. */
  name: string;
  kname: string;
  /** lsblk TYPE: disk, loop, part, raid1, ... */
  type: string;
  size: number;
  model: string | null;
  vendor: string | null;
  serial: string | null;
  wwn: string | null;
  wwn_with_extension: string | null;
  wwn_vendor_extension: string | null;
  hctl: string | null;
  by_path: string | null;
  tran: string | null;
  rotational: boolean;
  readOnly: boolean;
  logical_sectors: number | null;
  physical_sectors: number | null;
  mountpoints: string[];
  /** Partitions (for whole devices), in name order. */
  partitions: BlockDevice[];
}

/** Refused by assertSafeToWrite; on the wire a BlockDeviceError. */
export class UnsafeDeviceError extends BlockDeviceError {}

const EXCLUDED_NAME = /^(ram|zram|fd|sr|nbd)\d*/;

function str(v: unknown): string | null {
  if (v === null || v === undefined) return null;
  const s = String(v).trim();
  return s === '' ? null : s;
}
function num(v: unknown): number | null {
  if (v === null || v === undefined || v === '') return null;
  const n = Number(v);
  return Number.isFinite(n) ? n : null;
}
function bool(v: unknown): boolean {
  return v === true || v === 1 || v === '1' || v === 'true';
}

function byPathMap(): Map<string, string> {
  const m = new Map<string, string>();
  const dir = '/dev/disk/by-path';
  for (const link of listDir(dir)) {
    const target = realPath(join(dir, link));
    if (target && !m.has(basename(target))) m.set(basename(target), join(dir, link));
  }
  return m;
}

interface LsblkNode {
  [key: string]: unknown;
  children?: LsblkNode[];
}

function fromLsblk(n: LsblkNode, byPath: Map<string, string>): BlockDevice {
  const kname = str(n.kname) ?? str(n.name) ?? '';
  const wwn = str(n.wwn);
  const mps = Array.isArray(n.mountpoints) ? n.mountpoints : [n.mountpoint];
  return {
    name: `/dev/${kname}`,
    kname,
    type: str(n.type) ?? 'disk',
    size: num(n.size) ?? 0,
    model: str(n.model),
    vendor: str(n.vendor),
    serial: str(n.serial) ?? readSys(join(SYS_BLOCK, kname, 'device', 'serial')),
    wwn,
    // lsblk's WWN already carries the vendor extension when there is one (IPA derives the split from udev).
    wwn_with_extension: wwn,
    wwn_vendor_extension: null,
    hctl: str(n.hctl),
    by_path: byPath.get(kname) ?? null,
    tran: str(n.tran),
    rotational: bool(n.rota),
    readOnly: bool(n.ro),
    logical_sectors: num(n['log-sec']),
    physical_sectors: num(n['phy-sec']),
    mountpoints: mps.map(str).filter((x): x is string => x !== null),
    partitions: (n.children ?? []).filter((c) => str(c.type) === 'part').map((c) => fromLsblk(c, byPath)),
  };
}

function fromSysfs(kname: string, byPath: Map<string, string>): BlockDevice {
  const base = join(SYS_BLOCK, kname);
  const isLoop = existsSync(join(base, 'loop'));
  const md = readSys(join(base, 'md', 'level'));
  const wwn = readSys(join(base, 'device', 'wwid')) ?? readSys(join(base, 'wwid'));
  return {
    name: `/dev/${kname}`,
    kname,
    type: existsSync(join(base, 'partition')) ? 'part' : isLoop ? 'loop' : md ?? 'disk',
    size: (readSysInt(join(base, 'size')) ?? 0) * 512,
    model: readSys(join(base, 'device', 'model')),
    vendor: readSys(join(base, 'device', 'vendor')),
    serial: readSys(join(base, 'device', 'serial')),
    wwn,
    wwn_with_extension: wwn,
    wwn_vendor_extension: null,
    hctl: null,
    by_path: byPath.get(kname) ?? null,
    tran: null,
    rotational: readSys(join(base, 'queue', 'rotational')) === '1',
    readOnly: readSys(join(base, 'ro')) === '1',
    logical_sectors: readSysInt(join(base, 'queue', 'logical_block_size')),
    physical_sectors: readSysInt(join(base, 'queue', 'physical_block_size')),
    mountpoints: [],
    partitions: partitionsOf(kname).map((p) => fromSysfs(p, byPath)),
  };
}

const LSBLK_COLUMNS = 'NAME,KNAME,TYPE,SIZE,MODEL,VENDOR,SERIAL,WWN,HCTL,TRAN,ROTA,RO,LOG-SEC,PHY-SEC,MOUNTPOINT,MOUNTPOINTS';

/** Every block device lsblk knows (or /sys when lsblk is missing), unfiltered, partitions nested. */
export async function probeAllBlockDevices(): Promise<BlockDevice[]> {
  const byPath = byPathMap();
  try {
    // The columns fromLsblk reads, as IPA names its own: `-O` adds filesystem and partition-table columns that
    // lsblk, with no udev database (the ramdisk), gets by probing every device (3x slower, 0.1-0.2 s of each
    // deploy). An lsblk too old for a column (MOUNTPOINTS: util-linux 2.37) refuses the list: then all of them.
    const r = await run('lsblk', ['-J', '-b', '-a', '-o', LSBLK_COLUMNS], { quiet: true, timeoutMs: 30_000 })
      .catch(() => run('lsblk', ['-J', '-b', '-O', '-a'], { quiet: true, timeoutMs: 30_000 }));
    const parsed = JSON.parse(r.stdout) as { blockdevices?: LsblkNode[] };
    const top = (parsed.blockdevices ?? []).map((n) => fromLsblk(n, byPath));
    // lsblk nests md arrays and multipath maps under their members; they are devices of their own for us.
    const seen = new Set(top.map((d) => d.kname));
    const walk = (nodes: LsblkNode[]): void => {
      for (const n of nodes) {
        const type = str(n.type) ?? '';
        const k = str(n.kname) ?? str(n.name) ?? '';
        if ((type.startsWith('raid') || type === 'md' || type === 'mpath') && !seen.has(k)) {
          seen.add(k);
          top.push(fromLsblk(n, byPath));
        }
        walk(n.children ?? []);
      }
    };
    walk((parsed.blockdevices ?? []).flatMap((n) => n.children ?? []));
    return top;
  } catch (e) {
    log.warn({ err: errorMessage(e) }, 'lsblk unusable, listing block devices from /sys');
    return listDir(SYS_BLOCK)
      .filter((k) => !existsSync(join(SYS_BLOCK, k, 'partition')))
      .sort()
      .map((k) => fromSysfs(k, byPath));
  }
}

function allowedKnames(): Set<string> | null {
  const list = blockContext().deviceAllowlist;
  if (!list) return null;
  return new Set(list.map((d) => d.trim()).filter((d) => d !== '').map(kernelName));
}

/** Whether a whole device is visible under the allow-list (md arrays: when every member's disk is allowed). */
function allowedWhole(kname: string, allowed: Set<string>): boolean {
  if (allowed.has(kname)) return true;
  const members = slavesOf(kname);
  return members.length > 0 && members.every((m) => allowedWhole(parentDisk(m) ?? m, allowed));
}

function isCandidate(d: BlockDevice, allowed: Set<string> | null): boolean {
  if (d.size <= 0 || EXCLUDED_NAME.test(d.kname)) return false;
  if (allowed) return allowedWhole(d.kname, allowed);
  return d.type === 'disk' || d.type.startsWith('raid') || d.type === 'mpath';
}

export interface ListOptions {
  /** Also return partitions, flattened after their disks (IPA's include_partitions). */
  includePartitions?: boolean;
}

/**
 * Disks the agent may see: type disk / md raid / mpath (plus loop devices when allow-listed), without ram, zram,
 * floppies, optical drives or zero-sized devices; only allow-listed ones when an allow-list is set.
 */
export async function listBlockDevices(opts: ListOptions = {}): Promise<BlockDevice[]> {
  const allowed = allowedKnames();
  const disks = (await probeAllBlockDevices()).filter((d) => isCandidate(d, allowed));
  if (!opts.includePartitions) return disks;
  return disks.flatMap((d) => [d, ...d.partitions]);
}

/** Devices whose filesystems are mounted or that are swap: "maj:min" → what uses them. */
function busyDevices(): Map<string, string> {
  const busy = new Map<string, string>();
  for (const line of (readText('/proc/self/mountinfo') ?? '').split('\n')) {
    const f = line.split(' ');
    const sep = f.indexOf('-');
    if (f.length < 5 || sep < 0) continue;
    const where = `mounted at ${unescapeMount(f[4] ?? '?')}`;
    if (f[2] && !f[2].startsWith('0:')) busy.set(f[2], where);
    const source = unescapeMount(f[sep + 2] ?? '');
    const n = source.startsWith('/') ? devNumberOfPath(source) : null;
    if (n) busy.set(n, where);
  }
  for (const line of (readText('/proc/mounts') ?? '').split('\n')) {
    const [source, target] = line.split(' ');
    const n = source?.startsWith('/') ? devNumberOfPath(unescapeMount(source)) : null;
    if (n) busy.set(n, `mounted at ${unescapeMount(target ?? '?')}`);
  }
  for (const line of (readText('/proc/swaps') ?? '').split('\n').slice(1)) {
    const path = line.split(/\s+/)[0];
    const n = path ? devNumberOfPath(unescapeMount(path)) : null;
    if (n) busy.set(n, 'in use as swap');
  }
  return busy;
}

/** The device, its partitions and whatever is stacked on them (md, dm), recursively. */
function stackOf(kname: string, seen = new Set<string>()): Set<string> {
  if (seen.has(kname)) return seen;
  seen.add(kname);
  for (const p of partitionsOf(kname)) stackOf(p, seen);
  for (const h of holdersOf(kname)) stackOf(h, seen);
  return seen;
}

/**
 * Throws UnsafeDeviceError unless `devPath` is a block device the agent may overwrite: with an allow-list, the
 * device (or, for a partition, its disk) must be on it; outside the ramdisk it must not be mounted, be swap, or
 * hold (through partitions, md or dm) anything mounted or swap. Every writer calls this right before writing.
 */
export async function assertSafeToWrite(devPath: string): Promise<void> {
  const real = realPath(devPath);
  if (!real || devNumberOfPath(real) === null) {
    throw new UnsafeDeviceError(`Refusing to write to ${devPath}: not a block device`);
  }
  const kname = basename(real);
  const allowed = allowedKnames();
  if (allowed && !allowedWhole(parentDisk(kname) ?? kname, allowed)) {
    throw new UnsafeDeviceError(`Refusing to write to ${devPath}: not in the device allow-list`);
  }
  if (blockContext().inRamdisk) return;
  const busy = busyDevices();
  const problems: string[] = [];
  for (const k of stackOf(kname)) {
    const n = devNumber(k);
    const use = n ? busy.get(n) : undefined;
    if (use) problems.push(`/dev/${k} is ${use}`);
  }
  if (problems.length > 0) {
    throw new UnsafeDeviceError(`Refusing to write to ${devPath}: ${problems.join('; ')}`);
  }
}

/**
 * Make the kernel's partition list match the disk after a table was written or wiped. One BLKRRPART first
 * (`blockdev --rereadpt`): a kernel with partition-table parsers (the ramdisk's) is done with that one call.
 * Some kernels (this CI host's) have none: BLKRRPART then drops every partition and adds nothing, so when the
 * kernel shows none afterwards `partx -a` adds the table's partitions by BLKPG (and fails, harmlessly, when the
 * disk has no table). partprobe (libparted: flushes, dmidecode, `udevadm settle`; 0.2-0.4 s on a busy box) and
 * `partx -u` stay as the fallback for BLKRRPART refused: a partition in use (EBUSY), a loop device without
 * partition scanning (EINVAL).
 */
export async function refreshPartitions(devPath: string): Promise<void> {
  const reread = await run('blockdev', ['--rereadpt', devPath], { quiet: true, timeoutMs: 30_000 }).then(() => true, () => false);
  if (reread) {
    if (partitionsOf(kernelName(devPath)).length > 0) return;
    const added = await run('partx', ['-a', devPath], { quiet: true, timeoutMs: 30_000 }).then(
      () => true,
      // partx ran and found no table (exit 1): the disk has no partitions, which the kernel now shows. Only a
      // partx that could not run at all leaves the question open.
      (e: unknown) => e instanceof CommandError && e.exitCode !== undefined,
    );
    if (added) return;
  }
  const tries: [string, string[]][] = [
    ['partprobe', [devPath]],
    ['partx', ['-u', devPath]],
  ];
  for (const [file, args] of tries) {
    try {
      await run(file, args, { quiet: true, timeoutMs: 30_000 });
      return;
    } catch {
      // next method
    }
  }
  log.warn({ dev: devPath }, 'could not re-read the partition table');
}

/** blkid's low-level probe of one device (KEY=value pairs: TYPE, LABEL, PART_ENTRY_TYPE, PART_ENTRY_NAME, ...). */
export async function probeSignatures(devPath: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  try {
    const r = await run('blkid', ['-p', '-o', 'export', devPath], { quiet: true, okCodes: [0, 2], timeoutMs: 15_000 });
    for (const line of r.stdout.split('\n')) {
      const i = line.indexOf('=');
      if (i > 0) out[line.slice(0, i)] = line.slice(i + 1);
    }
  } catch {
    // blkid missing or the device unreadable: no signatures known
  }
  return out;
}

