/**
 * Choosing the disk the OS goes on: a software RAID root volume if one was built,
 * else the first disk matching the node's root device hints, else the smallest disk of at least 4 GiB (the
 * minimum is hardwareContext().minRootDeviceBytes so tests can use small loop devices). Disks matched by the
 * node's skip list (properties.skip_block_devices) are never candidates.
 */
import { DeviceNotFound } from '../../protocol/agent-api.js';
import { run } from '../../common/exec.js';
import { getLogger } from '../../common/logger.js';
import { hardwareContext } from '../context.js';
import type { NodeInfo } from '../types.js';
import { listBlockDevices, type BlockDevice } from '../../block/devices.js';
import { HintError, findDevicesByHints, matchRootDeviceHints } from './hints.js';
import { errorMessage } from '../../common/errors.js';

const log = getLogger('root-device');

function asRecord(v: unknown): Record<string, unknown> | null {
  return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
}

/** instance_info.root_device wins over properties.root_device (as in Ironic). */
export function rootDeviceHints(node: NodeInfo | null | undefined): Record<string, unknown> | null {
  const h = asRecord(node?.instance_info?.root_device) ?? asRecord(node?.properties?.root_device);
  return h && Object.keys(h).length > 0 ? h : null;
}

/** properties.skip_block_devices entries that describe disks (those with volume_name are RAID volumes). */
export function skipListHints(node: NodeInfo | null | undefined): Record<string, unknown>[] {
  const raw = node?.properties?.skip_block_devices;
  if (!Array.isArray(raw)) return [];
  return raw.map(asRecord).filter((h): h is Record<string, unknown> => h !== null && !('volume_name' in h));
}

/** RAID volume names the node asks to keep (skip_block_devices entries with volume_name). */
export function skipListVolumes(node: NodeInfo | null | undefined): string[] {
  const raw = node?.properties?.skip_block_devices;
  if (!Array.isArray(raw)) return [];
  return raw.map(asRecord).flatMap((h) => (h && typeof h.volume_name === 'string' ? [h.volume_name] : []));
}

/** Device names (/dev/...) the skip list protects. A malformed hint is logged, not fatal. */
export function skipListDevices<D extends BlockDevice>(node: NodeInfo | null | undefined, devices: readonly D[]): Set<string> {
  const out = new Set<string>();
  for (const hint of skipListHints(node)) {
    try {
      for (const d of findDevicesByHints(devices, hint)) out.add(d.name);
    } catch (e) {
      log.warn({ hint, err: errorMessage(e) }, 'invalid skip_block_devices entry ignored');
    }
  }
  return out;
}

/** Disks minus the skip list, each logged once when skipped. */
export async function listCandidateDisks(node: NodeInfo | null | undefined): Promise<BlockDevice[]> {
  const devices = await listBlockDevices();
  const skip = skipListDevices(node, devices);
  for (const s of skip) log.info({ dev: s }, 'device is in the node skip list (properties.skip_block_devices); skipped');
  return devices.filter((d) => !skip.has(d.name));
}

/** md device of the idx-th logical disk of a software RAID config (raid.ts builds them with these names). */
export function mdDeviceName(idx: number): string {
  return `/dev/md${idx}`;
}

/** Index of the root volume of a software-RAID target config (is_root_volume, else the first), or null. */
export function softwareRaidRootIndex(node: NodeInfo | null | undefined): number | null {
  const disks = asRecord(node?.target_raid_config)?.logical_disks;
  if (!Array.isArray(disks) || disks.length === 0) return null;
  const ld = disks.map(asRecord);
  if (!ld.every((d) => d && d.controller === 'software')) return null;
  const flagged = ld.findIndex((d) => d?.is_root_volume === true);
  if (flagged >= 0) return flagged;
  return ld.some((d) => d?.is_root_volume === false) ? null : 0;
}

/**
 * The md array name the root volume carries: its volume_name, else the one mdadm derives from /dev/md<idx> ("<idx>").
 * After a reboot the array keeps its name but not necessarily its device: mdadm assembles a named array as
 * /dev/md/<name>, i.e. /dev/md127 and down.
 */
export function softwareRaidRootName(node: NodeInfo | null | undefined, idx: number): string {
  const disks = asRecord(node?.target_raid_config)?.logical_disks;
  const name = Array.isArray(disks) ? asRecord(disks[idx])?.volume_name : undefined;
  return typeof name === 'string' && name !== '' ? name : String(idx);
}

/** An md array's name without mdadm's "homehost:" prefix (mdadm --detail --export MD_NAME), or null. */
export async function mdArrayName(md: string): Promise<string | null> {
  try {
    const r = await run('mdadm', ['--detail', '--export', md], { quiet: true, timeoutMs: 30_000 });
    const m = /^MD_NAME=(.*)$/m.exec(r.stdout);
    return m?.[1] ? m[1].replace(/^[^:]*:/, '') : null;
  } catch {
    return null;
  }
}

/**
 * Pure selection over already-listed disks (skip list applied here too): RAID root volume (by array name when
 * `mdNames` maps md device → name, else by /dev/md<idx>), else hints, else the smallest disk of at least
 * `minBytes`. DeviceNotFound (404) when nothing qualifies.
 */
export function selectRootDevice<D extends BlockDevice>(
  all: readonly D[],
  node: NodeInfo | null | undefined,
  minBytes: number,
  mdNames?: ReadonlyMap<string, string>,
): D {
  const skip = skipListDevices(node, all);
  const disks = all.filter((d) => !skip.has(d.name));

  const raidIdx = softwareRaidRootIndex(node);
  if (raidIdx !== null) {
    const wanted = softwareRaidRootName(node, raidIdx);
    const md = (mdNames && disks.find((d) => mdNames.get(d.name) === wanted)) ?? disks.find((d) => d.name === mdDeviceName(raidIdx));
    if (md) return md;
  }

  const hints = rootDeviceHints(node);
  if (hints) {
    let dev: D | null;
    try {
      dev = matchRootDeviceHints(disks, hints);
    } catch (e) {
      if (e instanceof HintError) throw new DeviceNotFound(`Invalid root device hints: ${e.message}`);
      throw e;
    }
    if (!dev) {
      throw new DeviceNotFound(`No suitable device was found for deployment using these hints ${JSON.stringify(hints)}`);
    }
    return dev;
  }

  const pick = disks
    .filter((d) => !d.type.startsWith('raid'))
    .sort((a, b) => a.size - b.size || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .find((d) => d.size >= minBytes);
  if (!pick) {
    throw new DeviceNotFound(
      `No suitable device was found for deployment - root device hints were not provided and all found block devices are smaller than ${minBytes}B.`,
    );
  }
  return pick;
}

/** The chosen BlockDevice among the disks visible now (node: the given one, else the last the conductor sent). */
export async function getOsInstallBlockDevice(node?: NodeInfo | null): Promise<BlockDevice> {
  const n = node === undefined ? hardwareContext().node : node;
  const all = await listBlockDevices();
  let names: Map<string, string> | undefined;
  if (softwareRaidRootIndex(n) !== null) {
    names = new Map();
    for (const d of all.filter((x) => x.type.startsWith('raid'))) {
      const name = await mdArrayName(d.name);
      if (name !== null) names.set(d.name, name);
    }
  }
  return selectRootDevice(all, n, hardwareContext().minRootDeviceBytes, names);
}

/** IPA's get_os_install_device: the chosen device's path (/dev/...). */
export async function getOsInstallDevice(node?: NodeInfo | null): Promise<string> {
  return (await getOsInstallBlockDevice(node)).name;
}
