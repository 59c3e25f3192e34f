/** Placeholder until the image-writing issue lands: image.install_bootloader. */
import type { ExtensionCommands } from '../commands/types.js';

export const extension = 'image';
export const commands: ExtensionCommands = {};
