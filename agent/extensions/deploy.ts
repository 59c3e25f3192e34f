/**
 * The `deploy` extension: get_deploy_steps (sync) and execute_deploy_step (async),
 * both over the hardware managers (hardware-managers/steps.ts). write_image is a generic-manager deploy step.
 */
import type { ExtensionCommands } from '../commands/types.js';
import { stepCommands } from './step-commands.js';

export const extension = 'deploy';
export const commands: ExtensionCommands = stepCommands('deploy');
