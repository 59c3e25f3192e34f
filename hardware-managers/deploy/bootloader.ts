/**
 * image.install_bootloader. Partition images: GRUB into the deployed OS through
 * a chroot (i386-pc for BIOS, x86_64-efi with the ESP mounted for UEFI). Whole-disk images (root uuid null or a
 * 0x... disk identifier): only a UEFI NVRAM entry for the loader found on the ESP, nothing in BIOS mode.
 * BIOS-mode partition images without GRUB but with a syslinux VBR get syslinux's MBR code instead (syslinux.ts).
 */
import { existsSync, promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { have, run } from '../../common/exec.js';
import { getLogger } from '../../common/logger.js';
import { inRamdisk } from '../../common/ramdisk.js';
import { CommandExecutionError, DeviceNotFound, InvalidImage } from '../../protocol/agent-api.js';
import { listPartitions, partitionTableType, type PartitionInfo } from '../../block/disk.js';
import { unmount, withMount } from '../../block/mount.js';
import { imageSettings } from '../../image/settings.js';
import { inspectRoot, installSyslinuxMbr, type RootInspection } from './syslinux.js';
import { errorMessage } from '../../common/errors.js';

const log = getLogger('image-bootloader');
const ESP_TYPES = new Set(['c12a7328-f81f-11d2-ba4b-00a0c93ec93b', '0xef']);

export interface BootloaderParams {
  root_uuid?: string | null | undefined;
  efi_system_part_uuid?: string | null | undefined;
  prep_boot_part_uuid?: string | null | undefined;
  target_boot_mode?: string | null | undefined;
  ignore_bootloader_failure?: boolean | null | undefined;
}

const isWholeDisk = (u: string | null | undefined): boolean => !u || /^0x[0-9a-f]+$/i.test(u);

function findEsp(parts: PartitionInfo[], uuid: string | null | undefined): PartitionInfo | undefined {
  if (uuid) return parts.find((p) => p.uuid === uuid || p.partuuid === uuid);
  return parts.find((p) => ESP_TYPES.has((p.parttype ?? '').toLowerCase()));
}

async function findLoaders(espRoot: string): Promise<string[]> {
  const out: string[] = [];
  const efi = join(espRoot, 'EFI');
  for (const vendor of await fsp.readdir(efi).catch(() => [] as string[])) {
    for (const f of await fsp.readdir(join(efi, vendor)).catch(() => [] as string[])) {
      if (/^(shimx64|grubx64|bootx64)\.efi$/i.test(f)) out.push(`\\EFI\\${vendor}\\${f}`);
    }
  }
  // Prefer a vendor's shim/grub over the removable fallback path.
  return out.sort((a, b) => Number(/\\BOOT\\/i.test(a)) - Number(/\\BOOT\\/i.test(b)));
}

async function registerUefiEntry(disk: string, esp: PartitionInfo): Promise<string> {
  if (!inRamdisk()) {
    // On someone's host, efibootmgr would rewrite that machine's own NVRAM boot entries.
    throw new CommandExecutionError('Refusing to change UEFI boot entries outside the deploy ramdisk');
  }
  if (!existsSync('/sys/firmware/efi')) {
    throw new CommandExecutionError('Cannot add a UEFI boot entry: the agent was not booted in UEFI mode (/sys/firmware/efi is missing)');
  }
  if (!(await have('efibootmgr'))) throw new CommandExecutionError('Cannot add a UEFI boot entry: efibootmgr is not installed in the ramdisk');
  const loaders = await withMount(esp.path, findLoaders, { options: 'ro' });
  const loader = loaders[0];
  if (!loader) throw new InvalidImage(`No EFI boot loader (shimx64/grubx64/bootx64.efi) found on ${esp.path}`);
  await run('efibootmgr', ['-v', '-c', '-d', disk, '-p', String(esp.number), '-w', '-L', 'baremetal-ts', '-l', loader]);
  return loader;
}

async function installGrub(disk: string, parts: PartitionInfo[], p: BootloaderParams, uefi: boolean): Promise<void> {
  const root = parts.find((x) => x.uuid === p.root_uuid || x.partuuid === p.root_uuid);
  if (!root) throw new DeviceNotFound(`No partition with root uuid ${p.root_uuid ?? ''} on ${disk}`);
  if (!uefi && !imageSettings().enableBiosBootloaderInstall) {
    throw new InvalidImage('Install of legacy BIOS bootloaders disabled (enable_bios_bootloader_install is false)');
  }
  await withMount(root.path, async (dir) => {
    const grub = ['grub-install', 'grub2-install'].find((g) =>
      ['usr/sbin', 'usr/bin', 'sbin', 'bin'].some((d) => existsSync(join(dir, d, g))),
    );
    if (!grub) {
      throw new InvalidImage(
        `The deployed image on ${root.path} has no grub-install or grub2-install: cannot install a ${uefi ? 'UEFI' : 'BIOS'} boot loader into it`,
      );
    }
    // Mounted under the root's shared mount point (block/mount.ts), so they are shared too.
    const mounted: string[] = [];
    try {
      for (const fs of ['dev', 'proc', 'sys', 'run']) {
        const target = join(dir, fs);
        await fsp.mkdir(target, { recursive: true });
        await run('mount', ['--bind', `/${fs}`, target]);
        mounted.push(target);
      }
      const args = uefi ? ['--target=x86_64-efi', '--efi-directory=/boot/efi', '--bootloader-id=boot', '--removable', '--no-nvram'] : ['--target=i386-pc', disk];
      if (uefi) {
        const esp = findEsp(parts, p.efi_system_part_uuid);
        if (!esp) throw new DeviceNotFound(`No EFI system partition found on ${disk}`);
        const espDir = join(dir, 'boot/efi');
        await fsp.mkdir(espDir, { recursive: true });
        await run('mount', [esp.path, espDir]);
        mounted.push(espDir);
      }
      await run('chroot', [dir, grub, ...args], { timeoutMs: 600_000 });
      const mkconfig = grub === 'grub-install' ? 'grub-mkconfig' : 'grub2-mkconfig';
      const cfg = grub === 'grub-install' ? '/boot/grub/grub.cfg' : '/boot/grub2/grub.cfg';
      await run('chroot', [dir, mkconfig, '-o', cfg], { timeoutMs: 600_000 });
    } finally {
      for (const m of mounted.reverse()) await unmount(m);
    }
  });
}

/** The syslinux path when the root filesystem has ldlinux.sys and no grub-install; undefined to go on with GRUB. */
async function trySyslinux(disk: string, parts: PartitionInfo[], p: BootloaderParams): Promise<string | undefined> {
  const root = parts.find((x) => x.uuid === p.root_uuid || x.partuuid === p.root_uuid);
  if (!root || !imageSettings().enableBiosBootloaderInstall) return undefined; // installGrub reports both
  let found: RootInspection;
  try {
    found = await inspectRoot(root);
  } catch (e) {
    log.warn({ root: root.path, err: errorMessage(e) }, 'could not inspect the root filesystem for syslinux; trying GRUB');
    return undefined;
  }
  log.info({ root: root.path, ...found }, 'root filesystem boot loaders');
  if (found.grub || !found.ldlinux) return undefined;
  return installSyslinuxMbr(disk, root, await partitionTableType(disk));
}

/** Returns what was done (for the log); throws unless ignore_bootloader_failure. */
export async function installBootloader(disk: string, p: BootloaderParams): Promise<string> {
  const uefi = (p.target_boot_mode ?? 'bios') === 'uefi';
  try {
    const parts = await listPartitions(disk);
    if (isWholeDisk(p.root_uuid)) {
      if (!uefi) return 'whole-disk image in BIOS mode: nothing to install';
      if (!existsSync('/sys/firmware/efi') || !inRamdisk()) {
        // As IPA: NVRAM entries can only be written from a UEFI-booted ramdisk; a whole-disk image carries its own
        // boot loader, and Ironic 21.4 asks for this on every UEFI-mode deploy, BIOS-booted or not.
        log.warn({ disk }, 'UEFI boot mode requested but the agent did not boot in UEFI mode: no boot entry written');
        return 'whole-disk image: agent not booted in UEFI mode, boot entry left to the firmware';
      }
      const esp = findEsp(parts, p.efi_system_part_uuid);
      if (!esp) throw new DeviceNotFound(`No EFI system partition found on ${disk}`);
      return `UEFI boot entry for ${await registerUefiEntry(disk, esp)}`;
    }
    if (!uefi) {
      const done = await trySyslinux(disk, parts, p);
      if (done) return done;
    }
    await installGrub(disk, parts, p, uefi);
    if (uefi && existsSync('/sys/firmware/efi')) {
      const esp = findEsp(parts, p.efi_system_part_uuid);
      if (esp) await registerUefiEntry(disk, esp);
    }
    return `GRUB installed for ${uefi ? 'UEFI' : 'BIOS'} on ${disk}`;
  } catch (e) {
    if (p.ignore_bootloader_failure) {
      log.warn({ err: errorMessage(e) }, 'boot loader installation failed; ignored as requested');
      return 'failed (ignored)';
    }
    throw e;
  }
}
