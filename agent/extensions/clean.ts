/**
 * The `clean` extension: get_clean_steps (sync) and execute_clean_step (async),
 * both over the hardware managers (hardware-managers/steps.ts).
 */
import type { ExtensionCommands } from '../commands/types.js';
import { stepCommands } from './step-commands.js';

export const extension = 'clean';
export const commands: ExtensionCommands = stepCommands('clean');
