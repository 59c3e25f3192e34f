/**
 * Partition-image layout: [ESP (uefi) | BIOS boot (bios+gpt)] [ephemeral]
 * [swap] [configdrive] root-last, on a GPT or MBR table; then the filesystems that are not the image's.
 */
import { run } from '../common/exec.js';
import { getLogger } from '../common/logger.js';
import { DeploymentError, InvalidCommandParamsError } from '../protocol/agent-api.js';
import { listPartitions, partitionTableType, probe, rereadPartitions, wipeEnds } from './disk.js';
import { errorMessage } from '../common/errors.js';

const log = getLogger('image-partition');

export type Role = 'efi system partition' | 'BIOS Boot partition' | 'ephemeral' | 'swap' | 'configdrive' | 'root';

export interface LayoutRequest {
  rootMb: number;
  swapMb: number;
  ephemeralMb: number;
  ephemeralFormat: string | null;
  configdriveMb: number;
  bootMode: 'uefi' | 'bios';
  diskLabel: 'gpt' | 'msdos';
  espMb: number;
  preserveEphemeral: boolean;
  /** Disk size in bytes (to refuse layouts that don't fit before touching the disk). */
  diskBytes: number;
}

export interface PlannedPartition {
  role: Role;
  mb: number;
}

export function planLayout(r: LayoutRequest): PlannedPartition[] {
  const plan: PlannedPartition[] = [];
  if (r.bootMode === 'uefi') plan.push({ role: 'efi system partition', mb: r.espMb });
  else if (r.diskLabel === 'gpt') plan.push({ role: 'BIOS Boot partition', mb: 1 });
  if (r.ephemeralMb > 0) plan.push({ role: 'ephemeral', mb: r.ephemeralMb });
  if (r.swapMb > 0) plan.push({ role: 'swap', mb: r.swapMb });
  if (r.configdriveMb > 0) plan.push({ role: 'configdrive', mb: r.configdriveMb });
  plan.push({ role: 'root', mb: r.rootMb });
  // 1 MiB alignment gap at the start, 1 MiB for the GPT backup (and logical-partition headers on MBR).
  const need = plan.reduce((a, p) => a + p.mb, 0) + 2 + (r.diskLabel === 'msdos' && plan.length > 4 ? plan.length : 0);
  if (need * 1024 * 1024 > r.diskBytes) {
    throw new InvalidCommandParamsError(
      `Root partition is too small for requested image or the disk is too small: the layout needs ${need} MiB, the disk has ${Math.floor(r.diskBytes / 1048576)} MiB`,
    );
  }
  return plan;
}

/** Partition numbers parted assigns: in order on GPT; on MBR the 4th+ go into an extended partition (5, 6, ...). */
function numbering(plan: PlannedPartition[], label: 'gpt' | 'msdos'): number[] {
  if (label === 'gpt' || plan.length <= 4) return plan.map((_, i) => i + 1);
  return plan.map((_, i) => (i < 3 ? i + 1 : i + 2));
}

export interface Layout {
  /** Device path by role, IPA's `partitions` dict. */
  partitions: Partial<Record<Role, string>>;
  root: string;
  rootBytes: number;
}

export async function createLayout(dev: string, r: LayoutRequest): Promise<Layout> {
  const plan = planLayout(r);
  const numbers = numbering(plan, r.diskLabel);
  const preserving = r.preserveEphemeral && (await partitionTableType(dev)) !== null;
  if (!preserving) {
    await wipeEnds(dev);
    const args = ['-s', '-a', 'optimal', '--', dev, 'mklabel', r.diskLabel];
    let start = 1;
    const extended = r.diskLabel === 'msdos' && plan.length > 4;
    plan.forEach((p, i) => {
      if (extended && i === 3) {
        args.push('mkpart', 'extended', `${start}MiB`, '-1MiB');
        start += 1;
      }
      const end = start + p.mb;
      const fs = p.role === 'swap' ? 'linux-swap' : p.role === 'efi system partition' ? 'fat32' : 'ext2';
      const kind = r.diskLabel === 'gpt' ? p.role.replace(/ /g, '-') : extended && i >= 3 ? 'logical' : 'primary';
      args.push('mkpart', kind, fs, `${start}MiB`, `${end}MiB`);
      start = end + (extended && i >= 3 ? 1 : 0);
      const n = String(numbers[i]);
      if (p.role === 'efi system partition') args.push('set', n, 'boot', 'on', ...(r.diskLabel === 'gpt' ? ['set', n, 'esp', 'on'] : []));
      if (p.role === 'BIOS Boot partition') args.push('set', n, 'bios_grub', 'on');
      if (p.role === 'root' && r.bootMode === 'bios' && r.diskLabel === 'msdos') args.push('set', n, 'boot', 'on');
    });
    try {
      await run('parted', args);
    } catch (e) {
      throw new DeploymentError(`Failed to create the partition layout on ${dev}: ${errorMessage(e)}`, e);
    }
  }
  await rereadPartitions(dev);
  const parts = await listPartitions(dev);
  const partitions: Partial<Record<Role, string>> = {};
  let rootBytes = 0;
  plan.forEach((p, i) => {
    const found = parts.find((x) => x.number === numbers[i]);
    if (!found) throw new DeploymentError(`Partition ${numbers[i]} (${p.role}) did not appear on ${dev}`);
    partitions[p.role] = found.path;
    if (p.role === 'root') rootBytes = found.size;
  });
  log.info({ dev, partitions }, 'partition layout ready');
  return { partitions, root: partitions.root!, rootBytes };
}

/**
 * Filesystems an ephemeral partition may get (Ironic's [pxe]default_ephemeral_format / instance_info
 * ephemeral_format); the name becomes part of a program name, so nothing outside this list ever reaches exec.
 */
export const EPHEMERAL_FORMATS: readonly string[] = ['ext2', 'ext3', 'ext4', 'xfs', 'vfat', 'fat', 'msdos'];

/** The mkfs program and arguments for an ephemeral filesystem; DeploymentError for a format not allowed. */
export function ephemeralMkfs(format: string | null, partition: string): { program: string; args: string[] } {
  const fmt = format ?? 'ext4';
  if (!EPHEMERAL_FORMATS.includes(fmt)) {
    throw new DeploymentError(
      `Unsupported ephemeral_format ${JSON.stringify(fmt.slice(0, 64))}: expected one of ${EPHEMERAL_FORMATS.join(', ')}`,
    );
  }
  if (fmt === 'vfat' || fmt === 'fat' || fmt === 'msdos') return { program: `mkfs.${fmt}`, args: ['-n', 'EPHEMERAL0', partition] };
  const force = fmt === 'xfs' ? ['-f'] : ['-F'];
  return { program: `mkfs.${fmt}`, args: [...force, '-L', 'ephemeral0', partition] };
}

/** Filesystems of the non-image partitions (IPA: ESP vfat efi-part, swap1, ephemeral0). */
export async function formatAuxiliary(layout: Layout, r: LayoutRequest): Promise<void> {
  const esp = layout.partitions['efi system partition'];
  if (esp) await run('mkfs.vfat', ['-n', 'EFI-PART', esp]);
  const swap = layout.partitions.swap;
  if (swap) await run('mkswap', ['-L', 'swap1', swap]);
  const eph = layout.partitions.ephemeral;
  if (eph && !(r.preserveEphemeral && (await probe(eph)).TYPE)) {
    const mkfs = ephemeralMkfs(r.ephemeralFormat, eph);
    await run(mkfs.program, mkfs.args).catch((e: unknown) => {
      throw new DeploymentError(`Failed to create the ${mkfs.program} ephemeral filesystem: ${errorMessage(e)}`, e);
    });
  }
}
