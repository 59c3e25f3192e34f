/**
 * The syslinux story for BIOS-mode partition images that carry no GRUB: an image whose root filesystem already
 * holds a syslinux/extlinux VBR (ldlinux.sys) only needs syslinux's MBR boot code on the disk and its partition
 * marked active (msdos) or legacy-bootable (gpt). The MBR code hands the partition's offset to the VBR (DS:SI),
 * so an image built as a bare filesystem (hidden sectors 0) still finds itself wherever the layout put it.
 */
import { existsSync, promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { have, run } from '../../common/exec.js';
import { getLogger } from '../../common/logger.js';
import { CommandExecutionError } from '../../protocol/agent-api.js';
import type { PartitionInfo } from '../../block/disk.js';
import { withMount } from '../../block/mount.js';
import { assertSafeToWrite } from './hw.js';

const log = getLogger('image-syslinux');

/** Debian/Ubuntu, Fedora/RHEL, Arch spellings of syslinux's MBR directory. */
const MBR_DIRS = ['/usr/lib/syslinux/mbr', '/usr/share/syslinux', '/usr/lib/syslinux/bios', '/usr/lib/SYSLINUX'];
const GRUB_PATHS = ['usr/sbin', 'usr/bin', 'sbin', 'bin'].flatMap((d) => [`${d}/grub-install`, `${d}/grub2-install`]);
const LDLINUX_PATHS = ['ldlinux.sys', 'boot/ldlinux.sys', 'boot/syslinux/ldlinux.sys', 'boot/extlinux/ldlinux.sys', 'syslinux/ldlinux.sys', 'extlinux/ldlinux.sys'];
const FAT_TYPES = new Set(['vfat', 'msdos', 'fat']);
/** mtools refuses devices whose size isn't a whole number of "tracks" unless told not to care. */
const MTOOLS_ENV = { MTOOLS_SKIP_CHECK: '1' };
const MBR_CODE_BYTES = 440;

export interface RootInspection {
  /** grub-install / grub2-install path inside the image, if any. */
  grub: string | null;
  /** ldlinux.sys path inside the image, if any. */
  ldlinux: string | null;
  /** How it was looked at: mtools (no mount, no nls modules needed) or a read-only mount. */
  via: 'mtools' | 'mount';
}

async function mtoolsHas(dev: string, path: string): Promise<boolean> {
  // -a: ldlinux.sys is hidden+system and plain mdir skips it.
  const r = await run('mdir', ['-i', dev, '-a', '-b', `::/${path}`], { env: MTOOLS_ENV, okCodes: [0, 1], quiet: true });
  return r.exitCode === 0 && r.stdout.trim() !== '';
}

async function firstPresent(paths: string[], has: (p: string) => Promise<boolean>): Promise<string | null> {
  for (const p of paths) if (await has(p)) return p;
  return null;
}

/**
 * What the deployed root filesystem can boot with. FAT is read with mtools when present: the deploy ramdisk may
 * lack the nls_cp437/nls_iso8859-1 modules a vfat mount needs. Anything else is mounted read-only.
 */
export async function inspectRoot(root: PartitionInfo): Promise<RootInspection> {
  if (FAT_TYPES.has((root.fstype ?? '').toLowerCase()) && (await have('mdir'))) {
    const has = (p: string): Promise<boolean> => mtoolsHas(root.path, p);
    return { grub: await firstPresent(GRUB_PATHS, has), ldlinux: await firstPresent(LDLINUX_PATHS, has), via: 'mtools' };
  }
  return withMount(root.path, async (dir) => {
    const has = async (p: string): Promise<boolean> => existsSync(join(dir, p));
    return { grub: await firstPresent(GRUB_PATHS, has), ldlinux: await firstPresent(LDLINUX_PATHS, has), via: 'mount' };
  }, { options: 'ro' });
}

/** syslinux's MBR code for this table type: mbr.bin (msdos) or gptmbr.bin (gpt), or undefined if not installed. */
export function syslinuxMbrFile(table: 'gpt' | 'dos'): string | undefined {
  const name = table === 'gpt' ? 'gptmbr.bin' : 'mbr.bin';
  return MBR_DIRS.map((d) => join(d, name)).find((p) => existsSync(p));
}

/**
 * Make `disk` boot the syslinux VBR of `root`: boot flag first (parted rewrites sector 0 but keeps the code
 * area), then the first 440 bytes of the MBR code, leaving the disk signature and partition table alone.
 */
export async function installSyslinuxMbr(disk: string, root: PartitionInfo, table: string | null): Promise<string> {
  if (table !== 'gpt' && table !== 'dos') {
    throw new CommandExecutionError(`Cannot install the syslinux MBR on ${disk}: no msdos or GPT partition table (found ${table ?? 'none'})`);
  }
  const mbr = syslinuxMbrFile(table);
  if (!mbr) {
    throw new CommandExecutionError(`Cannot install the syslinux MBR on ${disk}: ${table === 'gpt' ? 'gptmbr.bin' : 'mbr.bin'} not found in ${MBR_DIRS.join(', ')}`);
  }
  const code = (await fsp.readFile(mbr)).subarray(0, MBR_CODE_BYTES);
  if (code.length !== MBR_CODE_BYTES) throw new CommandExecutionError(`${mbr} is shorter than ${MBR_CODE_BYTES} bytes`);
  await assertSafeToWrite(disk);
  const flag = table === 'gpt' ? 'legacy_boot' : 'boot';
  await run('parted', ['-s', disk, 'set', String(root.number), flag, 'on']);
  await run('dd', [`of=${disk}`, `bs=${MBR_CODE_BYTES}`, 'count=1', 'conv=notrunc,fsync', 'status=none'], { input: code });
  await run('sync', []);
  log.info({ disk, root: root.path, mbr, flag }, 'syslinux MBR installed');
  return `syslinux MBR (${mbr}) written to ${disk}, partition ${root.number} (${root.path}) marked ${flag === 'boot' ? 'active' : 'legacy_boot'}`;
}
