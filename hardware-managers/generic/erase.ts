/**
 * The generic erase clean steps: erase_devices_metadata
 * (prio 99), erase_devices (prio 10, one dispatchable erase_block_device per disk so vendors can override it) and
 * erase_devices_express (prio 0). Skip-listed and protected disks are skipped with a log line; per-disk failures
 * are collected into one BlockDeviceEraseError.
 */
import { AgentError, BlockDeviceEraseError } from '../../protocol/agent-api.js';
import { errorMessage } from '../../common/errors.js';
import { run } from '../../common/exec.js';
import { getLogger } from '../../common/logger.js';
import { dispatchToManagers } from '../redispatch.js';
import type { NodeInfo, StepCall } from '../types.js';
import { assertSafeToWrite, probeSignatures, refreshPartitions, type BlockDevice } from '../../block/devices.js';
import { listCandidateDisks } from './root-device.js';
import { holdersOf } from '../../block/sysfs.js';
import {
  ataSecureErase, destroyMetadata, nvmeSecureErase, overwriteDevice, supportsDiscard, supportsZeroOut, zeroOut,
} from '../../block/wipe.js';

const log = getLogger('erase');

/** A partition or filesystem label that marks a disk as never to be erased. */
export const PROTECTED_LABEL = 'bmts-protected';
/** IBM GPFS and VMware VMFS GPT partition types, and the MBR VMFS type (IPA's guard-special-filesystems). */
const PROTECTED_PART_TYPES = new Set([
  '37affc90-ef7d-4e96-91c3-2d7ae055b174',
  'aa31e02a-400f-11db-9590-000c2911d1b8',
  '0xfb',
]);

function internal(node: NodeInfo | null | undefined): Record<string, unknown> {
  return (node?.driver_internal_info ?? {}) as Record<string, unknown>;
}

function truthy(v: unknown): boolean {
  return v === true || (typeof v === 'string' && ['true', '1', 'yes', 'on'].includes(v.toLowerCase())) || v === 1;
}

/** Why a disk must not be erased (a cluster filesystem or the protective label), or null. */
export async function protectedReason(d: BlockDevice): Promise<string | null> {
  for (const p of [d, ...d.partitions]) {
    const sig = await probeSignatures(p.name);
    const type = (sig.PART_ENTRY_TYPE ?? '').toLowerCase();
    if (PROTECTED_PART_TYPES.has(type)) return `protected partition type ${type} on ${p.name}`;
    if ((sig.TYPE ?? '').toLowerCase() === 'gfs2') return `gfs2 filesystem on ${p.name}`;
    if (sig.LABEL === PROTECTED_LABEL || sig.PART_ENTRY_NAME === PROTECTED_LABEL) {
      return `label ${PROTECTED_LABEL} on ${p.name}`;
    }
  }
  return null;
}

interface Targets {
  disks: BlockDevice[];
  results: Record<string, string>;
}

/** Disks an erase step works on: candidates (skip list already applied) minus md arrays and protected disks. */
async function erasable(call: StepCall, step: string): Promise<Targets> {
  const results: Record<string, string> = {};
  const disks: BlockDevice[] = [];
  for (const d of await listCandidateDisks(call.node)) {
    // Arrays are removed through their members (and delete_configuration), never erased as a unit.
    if (d.type.startsWith('raid')) continue;
    const why = await protectedReason(d);
    if (why) {
      log.warn({ dev: d.name, step, reason: why }, 'protected device skipped');
      results[d.name] = `skipped: ${why}`;
      continue;
    }
    disks.push(d);
  }
  return { disks, results };
}

/** Stop md arrays assembled on the disk so its members can be wiped (refused if an array is in use). */
async function releaseArrays(d: BlockDevice): Promise<void> {
  const arrays = new Set([d.kname, ...d.partitions.map((p) => p.kname)].flatMap(holdersOf).filter((h) => h.startsWith('md')));
  for (const md of arrays) {
    await assertSafeToWrite(`/dev/${md}`);
    await run('mdadm', ['--stop', `/dev/${md}`], { timeoutMs: 60_000 });
  }
}

async function forEachDisk(
  disks: BlockDevice[],
  concurrency: number,
  results: Record<string, string>,
  work: (d: BlockDevice) => Promise<string>,
): Promise<void> {
  const errors: string[] = [];
  const queue = [...disks];
  const worker = async (): Promise<void> => {
    for (let d = queue.shift(); d; d = queue.shift()) {
      try {
        await assertSafeToWrite(d.name);
        await releaseArrays(d);
        results[d.name] = await work(d);
      } catch (e) {
        const msg = e instanceof AgentError ? e.details : errorMessage(e);
        log.error({ dev: d.name, err: msg }, 'erase failed');
        errors.push(`${d.name}: ${msg}`);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, disks.length)) }, worker));
  if (errors.length > 0) throw new BlockDeviceEraseError(`Failed to erase devices: ${errors.sort().join('; ')}`);
}

/** Partitions (last first) then the disk itself. */
async function wipeMetadata(d: BlockDevice): Promise<void> {
  for (const p of [...d.partitions].reverse()) {
    await assertSafeToWrite(p.name);
    await destroyMetadata(p.name, p.size, false);
  }
  await destroyMetadata(d.name, d.size, true);
}

export async function eraseDevicesMetadata(call: StepCall): Promise<Record<string, string>> {
  const { disks, results } = await erasable(call, 'erase_devices_metadata');
  await forEachDisk(disks, 1, results, async (d) => {
    call.progress?.({ device: d.name, step: 'erase_devices_metadata' });
    await wipeMetadata(d);
    return 'metadata erased';
  });
  return results;
}

/**
 * One disk, the best way it supports: NVMe format / ATA secure erase, else a kernel zero-out (WRITE ZEROES) when
 * only zeros are wanted, else an overwrite with agent_erase_devices_iterations random passes (default 0 here:
 * zeros only) and a final zero pass when agent_erase_devices_zeroize (default true).
 */
export async function eraseBlockDevice(call: StepCall, d: BlockDevice): Promise<string> {
  const opts = internal(call.node);
  if (d.readOnly) {
    if (truthy(opts.agent_erase_skip_read_only)) return 'skipped: read-only';
    throw new Error(`${d.name} is read-only`);
  }
  const continueOnFailure =
    truthy(opts.agent_continue_if_secure_erase_failed) || truthy(opts.agent_continue_if_ata_erase_failed);
  const secure = async (how: () => Promise<string | null>): Promise<string | null> => {
    try {
      return await how();
    } catch (e) {
      if (!continueOnFailure) throw e;
      log.warn({ dev: d.name, err: errorMessage(e) }, 'secure erase failed; falling back to overwrite');
      return null;
    }
  };
  if (d.kname.startsWith('nvme') && opts.agent_enable_nvme_secure_erase !== false) {
    const r = await secure(() => nvmeSecureErase(d.name));
    if (r) return r;
  }
  const ataLike = d.tran === 'sata' || d.tran === 'ata' || (d.tran === null && /^sd[a-z]+$/.test(d.kname));
  if (ataLike && opts.agent_enable_ata_secure_erase !== false) {
    const r = await secure(() => ataSecureErase(d.name));
    if (r) return r;
  }
  const iterations = Math.max(0, Math.trunc(Number(opts.agent_erase_devices_iterations ?? 0)) || 0);
  const zeroize = opts.agent_erase_devices_zeroize === undefined ? true : truthy(opts.agent_erase_devices_zeroize);
  if (iterations === 0 && supportsZeroOut(d.name)) {
    try {
      call.progress?.({ device: d.name, method: 'blkdiscard --zeroout', bytes_total: d.size });
      await zeroOut(d.name, d.size);
      call.progress?.({ device: d.name, method: 'blkdiscard --zeroout', bytes_done: d.size, bytes_total: d.size });
      return 'blkdiscard --zeroout';
    } catch (e) {
      log.warn({ dev: d.name, err: errorMessage(e) }, 'zero-out offload failed; overwriting');
    }
  }
  return overwriteDevice(d.name, d.size, {
    randomPasses: iterations, zeroize, ...(call.progress ? { progress: call.progress } : {}),
    ...(call.signal ? { signal: call.signal } : {}),
  });
}

export async function eraseDevices(call: StepCall): Promise<Record<string, string>> {
  const { disks, results } = await erasable(call, 'erase_devices');
  const concurrency = Math.max(1, Math.trunc(Number(internal(call.node).disk_erasure_concurrency ?? 1)) || 1);
  await forEachDisk(disks, concurrency, results, async (d) => {
    const how = await dispatchToManagers<string>('erase_block_device', call, d);
    // The partitions the kernel still lists are gone from the disk now.
    await refreshPartitions(d.name);
    return how;
  });
  return results;
}

/** Fast clean: NVMe format, else discard + metadata wipe where the device discards, else the metadata wipe. */
export async function eraseDevicesExpress(call: StepCall): Promise<Record<string, string>> {
  const { disks, results } = await erasable(call, 'erase_devices_express');
  await forEachDisk(disks, 1, results, async (d) => {
    if (d.kname.startsWith('nvme')) {
      try {
        return await nvmeSecureErase(d.name);
      } catch (e) {
        log.warn({ dev: d.name, err: errorMessage(e) }, 'nvme format failed; falling back');
      }
    }
    let how = 'metadata erased';
    if (supportsDiscard(d.name)) {
      await run('blkdiscard', [d.name], { timeoutMs: 3600_000 });
      how = 'blkdiscard + metadata erased';
    }
    await wipeMetadata(d);
    return how;
  });
  return results;
}
