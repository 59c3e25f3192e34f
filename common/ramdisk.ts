import { existsSync } from 'node:fs';

/** Written by ramdisk-build into the initramfs. Its absence means "on someone's host": never power it off. */
export const RAMDISK_MARKER = '/etc/baremetal-ts-ramdisk';

export function inRamdisk(): boolean {
  return existsSync(RAMDISK_MARKER);
}
