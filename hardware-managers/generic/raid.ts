/**
 * Software RAID: create_configuration / delete_configuration (clean steps, raid
 * interface) and apply_configuration (deploy step). Each member disk gets a GPT with one Linux-RAID partition per
 * logical disk; logical disk i becomes /dev/md<i> (root-device.ts picks the root volume from there).
 * The plan (validation, partition sizes, mdadm arguments) is pure so it is unit-tested without md in the kernel.
 */
import { existsSync } from 'node:fs';
import { IncompatibleHardwareMethodError, SoftwareRAIDError } from '../../protocol/agent-api.js';
import { run } from '../../common/exec.js';
import { getLogger } from '../../common/logger.js';
import type { NodeInfo, StepCall } from '../types.js';
import { assertSafeToWrite, listBlockDevices, probeAllBlockDevices, probeSignatures, refreshPartitions, type BlockDevice } from '../../block/devices.js';
import { findDevicesByHints } from './hints.js';
import { listCandidateDisks, mdArrayName, mdDeviceName, skipListVolumes } from './root-device.js';
import { parentDisk, slavesOf } from '../../block/sysfs.js';

const log = getLogger('raid');

export interface LogicalDisk {
  size_gb: number | 'MAX';
  raid_level: string;
  controller?: string;
  physical_disks?: unknown[];
  volume_name?: string;
  is_root_volume?: boolean;
  [key: string]: unknown;
}

const LEVELS: Record<string, { md: string; min: number; dataDisks: (n: number) => number }> = {
  '0': { md: '0', min: 2, dataDisks: (n) => n },
  '1': { md: '1', min: 2, dataDisks: () => 1 },
  '1+0': { md: '10', min: 4, dataDisks: (n) => n / 2 },
  '10': { md: '10', min: 4, dataDisks: (n) => n / 2 },
  '5': { md: '5', min: 3, dataDisks: (n) => n - 1 },
  '6': { md: '6', min: 4, dataDisks: (n) => n - 2 },
};

/**
 * The logical disks of a target RAID config, validated. None for software → IncompatibleHardwareMethodError (a
 * hardware-RAID manager's job); a mix, an unknown level, a bad size or MAX anywhere but last → SoftwareRAIDError.
 */
export function validateRaidConfig(config: unknown): LogicalDisk[] {
  const lds = (config as { logical_disks?: unknown } | null | undefined)?.logical_disks;
  if (!Array.isArray(lds) || lds.length === 0) return [];
  const software = lds.filter((l) => (l as LogicalDisk | null)?.controller === 'software');
  if (software.length === 0) throw new IncompatibleHardwareMethodError('No software RAID logical disks in the configuration');
  if (software.length !== lds.length) {
    throw new SoftwareRAIDError('Software RAID configuration requires all logical disks to have controller set to software');
  }
  return lds.map((raw, i) => {
    const ld = raw as LogicalDisk;
    const level = String(ld.raid_level ?? '');
    if (!LEVELS[level]) throw new SoftwareRAIDError(`Unsupported software RAID level "${level}" (supported: 0, 1, 1+0, 5, 6)`);
    const size = ld.size_gb;
    if (size === 'MAX') {
      if (i !== lds.length - 1) throw new SoftwareRAIDError('Only the last logical disk may have size_gb MAX');
    } else if (typeof size !== 'number' || !(size > 0)) {
      throw new SoftwareRAIDError(`Invalid size_gb ${JSON.stringify(size)} for logical disk ${i}`);
    }
    if (ld.physical_disks !== undefined && !Array.isArray(ld.physical_disks)) {
      throw new SoftwareRAIDError(`physical_disks of logical disk ${i} must be a list`);
    }
    return { ...ld, raid_level: level };
  });
}

export interface RaidArrayPlan {
  md: string;
  level: string;
  name: string | null;
  /** Member partitions, e.g. /dev/sda1 /dev/sdb1. */
  devices: string[];
}

export interface RaidPlan {
  /** Whole member disks, each to get a fresh GPT. */
  disks: string[];
  /** sgdisk arguments per disk (partition per logical disk, type FD00). */
  partitionArgs: Record<string, string[]>;
  arrays: RaidArrayPlan[];
  mdadmArgs: string[][];
}

/** "/dev/loop3" + 1 → "/dev/loop3p1"; "/dev/sda" + 1 → "/dev/sda1". */
export function partitionPath(disk: string, n: number): string {
  return /\d$/.test(disk) ? `${disk}p${n}` : `${disk}${n}`;
}

function membersFor(ld: LogicalDisk, disks: readonly BlockDevice[]): BlockDevice[] {
  if (!ld.physical_disks || ld.physical_disks.length === 0) return [...disks];
  const out: BlockDevice[] = [];
  for (const pd of ld.physical_disks) {
    const hint = typeof pd === 'string' ? { name: pd } : (pd as Record<string, unknown>);
    const found = findDevicesByHints(disks, hint).find((d) => !out.includes(d));
    if (!found) throw new SoftwareRAIDError(`No disk matches physical_disks entry ${JSON.stringify(pd)}`);
    out.push(found);
  }
  return out;
}

/** Partition sizes, partition numbers and mdadm invocations for the logical disks over the given disks. */
export function planSoftwareRaid(lds: readonly LogicalDisk[], disks: readonly BlockDevice[]): RaidPlan {
  const partitionArgs: Record<string, string[]> = {};
  const nextPart: Record<string, number> = {};
  const arrays: RaidArrayPlan[] = [];
  lds.forEach((ld, i) => {
    const lvl = LEVELS[ld.raid_level];
    if (!lvl) throw new SoftwareRAIDError(`Unsupported software RAID level "${ld.raid_level}"`);
    const members = membersFor(ld, disks);
    if (members.length < lvl.min) {
      throw new SoftwareRAIDError(`RAID ${ld.raid_level} needs at least ${lvl.min} disks, found ${members.length}`);
    }
    const perMemberMiB = ld.size_gb === 'MAX' ? 0 : Math.ceil((ld.size_gb * 1024) / lvl.dataDisks(members.length));
    const devices: string[] = [];
    for (const m of members) {
      const n = (nextPart[m.name] ?? 0) + 1;
      nextPart[m.name] = n;
      const args = partitionArgs[m.name] ?? [];
      partitionArgs[m.name] = args;
      args.push(`--new=${n}:0:${perMemberMiB === 0 ? '0' : `+${perMemberMiB}M`}`, `--typecode=${n}:FD00`);
      devices.push(partitionPath(m.name, n));
    }
    const md = mdDeviceName(i);
    const name = typeof ld.volume_name === 'string' && ld.volume_name !== '' ? ld.volume_name : null;
    arrays.push({ md, level: lvl.md, name, devices });
  });
  const mdadmArgs = arrays.map((a) => [
    '--create', a.md, '--run', '--force', '--metadata=1.2', `--level=${a.level}`,
    `--raid-devices=${a.devices.length}`, ...(a.name ? [`--name=${a.name}`] : []), ...a.devices,
  ]);
  return { disks: Object.keys(partitionArgs), partitionArgs, arrays, mdadmArgs };
}

/** md in the kernel shows /proc/mdstat; without it mdadm --create cannot work. */
export function mdAvailable(): boolean {
  return existsSync('/proc/mdstat');
}

async function buildRaid(node: NodeInfo, config: unknown): Promise<Record<string, unknown>> {
  const lds = validateRaidConfig(config);
  if (lds.length === 0) return {};
  if (!mdAvailable()) throw new SoftwareRAIDError('The kernel has no md (software RAID) support: /proc/mdstat is missing');
  const disks = (await listCandidateDisks(node)).filter((d) => !d.type.startsWith('raid'));
  const plan = planSoftwareRaid(lds, disks);
  for (const disk of plan.disks) await assertSafeToWrite(disk);
  for (const disk of plan.disks) {
    await run('sgdisk', ['--zap-all', disk], { timeoutMs: 120_000, okCodes: [0, 2] });
    await run('sgdisk', [...(plan.partitionArgs[disk] ?? []), disk], { timeoutMs: 120_000 });
    await refreshPartitions(disk);
  }
  for (const [i, args] of plan.mdadmArgs.entries()) {
    log.info({ md: plan.arrays[i]?.md, devices: plan.arrays[i]?.devices }, 'creating software RAID array');
    await run('mdadm', args, { timeoutMs: 300_000 });
  }
  return { logical_disks: lds };
}

export async function createConfiguration(call: StepCall): Promise<Record<string, unknown>> {
  return buildRaid(call.node, call.node.target_raid_config);
}

/** Deploy step: args.raid_config (required), args.delete_existing (default true). */
export async function applyConfiguration(call: StepCall): Promise<Record<string, unknown>> {
  const config = call.args.raid_config;
  if (!config || typeof config !== 'object') throw new SoftwareRAIDError('apply_configuration requires the raid_config argument');
  if (call.args.delete_existing !== false) await deleteConfiguration(call);
  return buildRaid(call.node, config);
}

/**
 * Stop every md array on the visible disks (except volumes the skip list keeps), zero the members' superblocks
 * (also stale ones on disks not assembled) and wipe the member disks' partition tables. A disk that holds a kept
 * volume (assembled or not) keeps its partition table and that volume's superblocks.
 */
export async function deleteConfiguration(call: StepCall): Promise<Record<string, unknown>> {
  const keep = new Set(skipListVolumes(call.node));
  const visible = await listBlockDevices();
  const holders = new Set<string>();
  const keptMembers = new Set<string>();
  const keptDisks = new Set<string>();
  const diskOf = (member: string): string => `/dev/${parentDisk(member.slice(5)) ?? member.slice(5)}`;
  const deleted: string[] = [];
  for (const md of visible.filter((d) => d.type.startsWith('raid'))) {
    const name = await mdArrayName(md.name);
    const members = slavesOf(md.kname).map((k) => `/dev/${k}`);
    if (name && keep.has(name)) {
      log.info({ md: md.name, volume: name }, 'RAID volume in the skip list kept');
      for (const m of members) {
        keptMembers.add(m);
        keptDisks.add(diskOf(m));
      }
      continue;
    }
    await assertSafeToWrite(md.name);
    await run('mdadm', ['--stop', md.name], { timeoutMs: 60_000 });
    for (const m of members) {
      await run('mdadm', ['--zero-superblock', m], { timeoutMs: 60_000, okCodes: [0, 1] });
      holders.add(diskOf(m));
    }
    deleted.push(md.name);
  }
  // Members of arrays that were never assembled (or were removed from one) still carry superblocks.
  const all = await probeAllBlockDevices();
  const candidates = new Set(visible.map((d) => d.name));
  for (const d of all.filter((x) => candidates.has(x.name))) {
    for (const p of [d, ...d.partitions]) {
      if (keptMembers.has(p.name)) continue;
      const sig = await probeSignatures(p.name);
      if (sig.TYPE !== 'linux_raid_member') continue;
      // blkid's LABEL of an md member is the array name ("homehost:name").
      const name = sig.LABEL?.replace(/^[^:]*:/, '');
      if (name && keep.has(name)) {
        log.info({ dev: p.name, volume: name }, 'member of a RAID volume in the skip list kept');
        keptDisks.add(d.name);
        continue;
      }
      await assertSafeToWrite(p.name);
      await run('mdadm', ['--zero-superblock', p.name], { timeoutMs: 60_000, okCodes: [0, 1] });
      holders.add(d.name);
    }
  }
  const wiped: string[] = [];
  for (const disk of [...holders].sort()) {
    if (keptDisks.has(disk)) {
      log.info({ disk }, 'disk holds a RAID volume in the skip list: partition table kept');
      continue;
    }
    await assertSafeToWrite(disk);
    await run('wipefs', ['--force', '--all', disk], { timeoutMs: 120_000 });
    await run('sgdisk', ['--zap-all', disk], { timeoutMs: 120_000, okCodes: [0, 2] });
    await refreshPartitions(disk);
    wiped.push(disk);
  }
  return { deleted_arrays: deleted, wiped_disks: wiped };
}
