/** Placeholder until the image-writing issue lands: standby's image commands (prepare_image, cache_image, ...). */
import type { ExtensionCommands } from '../commands/types.js';

export const extension = 'standby';
export const commands: ExtensionCommands = {};
