/** Placeholder until the hardware-managers issue lands: the clean extension's commands. */
import type { ExtensionCommands } from '../commands/types.js';

export const extension = 'clean';
export const commands: ExtensionCommands = {};
