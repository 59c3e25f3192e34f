/** Placeholder until the hardware-managers issue lands: the deploy extension's commands. */
import type { ExtensionCommands } from '../commands/types.js';

export const extension = 'deploy';
export const commands: ExtensionCommands = {};
