/**
 * Every extension module of the agent, registered into a registry in one place. Each module exports its
 * `extension` name and its `commands`; several may share a name (standby.ts and standby-image.ts).
 */
import { CommandRegistry, registry as defaultRegistry } from '../commands/registry.js';
import type { ExtensionCommands } from '../commands/types.js';
import { NotImplementedCommand } from '../../protocol/agent-api.js';
import * as clean from './clean.js';
import * as deploy from './deploy.js';
import * as image from './image.js';
import * as iscsi from './iscsi.js';
import * as log from './log.js';
import * as poll from './poll.js';
import * as rescue from './rescue.js';
import * as standby from './standby.js';
import * as standbyImage from './standby-image.js';
import * as system from './system.js';

export const EXTENSION_MODULES: readonly { extension: string; commands: ExtensionCommands }[] = [
  standby,
  standbyImage,
  clean,
  deploy,
  image,
  log,
  system,
  poll,
  rescue,
  iscsi,
];

/** IPA commands Ironic may send, with IPA's sync/async mode: any nobody implements answers NotImplemented. */
const IPA_COMMANDS: [string, string, boolean][] = [
  ['standby', 'prepare_image', true],
  ['standby', 'get_partition_uuids', false],
  ['standby', 'power_off', true],
  ['standby', 'run_image', true],
  ['standby', 'sync', false],
  ['clean', 'get_clean_steps', false],
  ['clean', 'execute_clean_step', true],
  ['deploy', 'get_deploy_steps', false],
  ['deploy', 'execute_deploy_step', true],
  ['image', 'install_bootloader', true],
  ['log', 'collect_system_logs', false],
  ['system', 'lockdown', false],
  ['poll', 'get_hardware_info', false],
  ['rescue', 'finalize_rescue', false],
];

const done = new WeakSet<CommandRegistry>();

/** Register every built-in extension (once per registry). */
export function registerBuiltinExtensions(registry: CommandRegistry = defaultRegistry): CommandRegistry {
  if (done.has(registry)) return registry;
  for (const m of EXTENSION_MODULES) registry.register(m.extension, m.commands);
  // Every stock extension name exists even before a module contributes commands, so an unknown command in it is
  // IPA's 400 "Unknown command", not a 404 for the whole extension.
  for (const name of ['standby', 'clean', 'deploy', 'image', 'log', 'system', 'poll']) registry.register(name, {});
  for (const [ext, cmd, async] of IPA_COMMANDS) {
    if (registry.has(ext, cmd)) continue;
    registry.register(ext, {
      [cmd]: {
        async,
        run: () => Promise.reject(new NotImplementedCommand(`${ext}.${cmd} is not implemented by this agent yet`)),
      },
    });
  }
  done.add(registry);
  return registry;
}
