/** image.install_bootloader: GRUB for partition images, UEFI entries. */
import { z } from 'zod';
import { hardwareContext } from '../../hardware-managers/context.js';
import { defineCommand } from '../commands/registry.js';
import type { ExtensionCommands } from '../commands/types.js';
import { installBootloader } from '../../hardware-managers/deploy/bootloader.js';
import { rootDevice } from '../../hardware-managers/deploy/hw.js';

export const extension = 'image';

const Params = z.looseObject({
  root_uuid: z.string().nullish(),
  efi_system_part_uuid: z.string().nullish(),
  prep_boot_part_uuid: z.string().nullish(),
  target_boot_mode: z.enum(['bios', 'uefi']).nullish(),
  ignore_bootloader_failure: z.boolean().nullish(),
});

export const commands: ExtensionCommands = {
  install_bootloader: defineCommand({
    async: true,
    params: Params,
    async run(p, ctx) {
      const disk = await rootDevice(hardwareContext().node);
      const done = await installBootloader(disk, p);
      ctx.log.info({ disk, done }, 'install_bootloader finished');
      return null;
    },
  }),
};
