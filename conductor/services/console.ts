/**
 * Console state (Ironic's set_console_mode / get_console_information): PUT /v1/nodes/{n}/states/console starts
 * or stops the node's console in the background under the node's lock and records console_enabled; GET answers
 * console_enabled and, when enabled, the interface's console_info. A node deleted with its console on has it
 * stopped first.
 */
import { errorMessage } from '../../common/errors.js';
import type { ConductorContext } from '../context.js';
import { isConsoleInterface, type ConsoleInfo, type ConsoleInterface } from '../console/interfaces.js';
import { UnsupportedDriverExtension } from '../errors.js';
import type { NodeTask } from '../drivers/index.js';

async function consoleOf(task: NodeTask): Promise<ConsoleInterface> {
  const c = task.driver.get('console');
  if (!isConsoleInterface(c)) {
    // no-console (and fake) answer validate() their own way; anything else has no console to start.
    await c.validate(task.driverNode());
    throw new UnsupportedDriverExtension(`Driver ${task.node.driver} does not support console (disabled or not implemented).`);
  }
  return c;
}

export async function setConsoleMode(ctx: ConductorContext, ident: string, enabled: boolean): Promise<void> {
  await ctx.tasks.withNodeTask(ident, { exclusive: true, purpose: `${enabled ? 'enabling' : 'disabling'} console` }, async (task) => {
    const con = await consoleOf(task);
    await con.validate(task.driverNode());
    task.spawn(async (t) => {
      try {
        if (enabled) await con.startConsole(t);
        else await con.stopConsole(t);
        await t.save({ console_enabled: enabled, last_error: null });
      } catch (e) {
        const msg = `Failed to ${enabled ? 'start' : 'stop'} the console of node ${t.node.uuid}: ${errorMessage(e)}`;
        ctx.log.warn({ node: t.node.uuid, err: msg }, 'console change failed');
        await t.save({ last_error: msg, ...(enabled ? { console_enabled: false } : {}) });
      }
    });
  });
}

export async function getConsoleState(ctx: ConductorContext, ident: string):
  Promise<{ console_enabled: boolean; console_info: ConsoleInfo | null }> {
  return ctx.tasks.withNodeTask(ident, { purpose: 'console information' }, async (task) => {
    const con = await consoleOf(task);
    if (!task.node.console_enabled) return { console_enabled: false, console_info: null };
    return { console_enabled: true, console_info: await con.getConsole(task) };
  });
}

/** For node deletion (exclusive task held): a running console goes with the node. */
export async function stopConsoleOf(task: NodeTask): Promise<void> {
  const con = task.driver.find('console');
  if (task.node.console_enabled && isConsoleInterface(con)) await con.stopConsole(task);
}
