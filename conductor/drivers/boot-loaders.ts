/**
 * The network boot loaders in tftp_root, from the machine's Debian packages (ipxe, pxelinux, syslinux-common,
 * grub-efi-amd64-bin): undionly.kpxe / snponly.efi / ipxe.efi for the ipxe interface, pxelinux.0 + ldlinux.c32
 * and a GRUB EFI image (bootx64.efi, built with grub-mkimage, prefix (tftp)/) for the pxe interface. A loader
 * whose package is missing is logged and left out: nodes needing it fail to boot, the others are unaffected.
 */
import { copyFile, mkdir, rename, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { have, run } from '../../common/exec.js';
import { getLogger } from '../../common/logger.js';

const log = getLogger('boot-loaders');

/** tftp_root name -> where Debian installs it. */
export const LOADER_SOURCES: Readonly<Record<string, readonly string[]>> = {
  'undionly.kpxe': ['/usr/lib/ipxe/undionly.kpxe'],
  'snponly.efi': ['/usr/lib/ipxe/snponly.efi'],
  'ipxe.efi': ['/usr/lib/ipxe/ipxe.efi'],
  'pxelinux.0': ['/usr/lib/PXELINUX/pxelinux.0'],
  'lpxelinux.0': ['/usr/lib/PXELINUX/lpxelinux.0'],
  'ldlinux.c32': ['/usr/lib/syslinux/modules/bios/ldlinux.c32'],
};

/** GRUB modules of the network EFI image: TFTP over the firmware's NIC, Linux loading, config scripting. */
const GRUB_MODULES = ['tftp', 'efinet', 'net', 'normal', 'linux', 'configfile', 'echo', 'test', 'halt', 'reboot', 'chain',
  'part_gpt', 'part_msdos', 'fat', 'search', 'ls', 'sleep'];

async function exists(p: string): Promise<boolean> {
  return (await stat(p).catch(() => undefined))?.isFile() ?? false;
}

/** Copies (or builds) each loader missing from tftpRoot; returns the names now present. */
export async function installBootLoaders(tftpRoot: string): Promise<string[]> {
  await mkdir(tftpRoot, { recursive: true });
  const present: string[] = [];
  for (const [name, sources] of Object.entries(LOADER_SOURCES)) {
    const dest = join(tftpRoot, name);
    if (await exists(dest)) { present.push(name); continue; }
    let src: string | undefined;
    for (const s of sources) if (await exists(s)) { src = s; break; }
    if (!src) { log.warn({ name, sources }, 'boot loader not installed on this machine; nodes needing it cannot boot'); continue; }
    await copyFile(src, `${dest}.tmp`);
    await rename(`${dest}.tmp`, dest);
    present.push(name);
  }
  const grub = join(tftpRoot, 'bootx64.efi');
  if (await exists(grub)) present.push('bootx64.efi');
  else if (await have('grub-mkimage') && await exists('/usr/lib/grub/x86_64-efi/linux.mod')) {
    await run('grub-mkimage', ['-O', 'x86_64-efi', '-p', '(tftp)/', '-o', `${grub}.tmp`, ...GRUB_MODULES], { timeoutMs: 60_000 });
    await rename(`${grub}.tmp`, grub);
    present.push('bootx64.efi');
  } else {
    log.warn('grub-mkimage or the x86_64-efi GRUB modules are missing: UEFI nodes cannot use the pxe boot interface');
  }
  return present;
}
