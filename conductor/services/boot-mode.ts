/**
 * Boot mode and secure boot changes (API 1.76) and hardware indicators (Ironic's change_node_boot_mode,
 * change_node_secure_boot, get_supported_indicators, get/set_indicator_state). Boot mode and secure boot run in
 * the background after the API answered 202: a failure lands in last_error, success in the node's boot_mode /
 * secure_boot fields, exactly as Ironic's conductor/utils.py node_change_boot_mode does.
 */
import { errorMessage } from '../../common/errors.js';
import type { ConductorContext } from '../context.js';
import type { IndicatorState, NodeBootMode, SupportedIndicators } from '../drivers/types.js';
import { Conflict, InvalidParameterValue, UnsupportedDriverExtension } from '../errors.js';
import type { NodeTask } from '../drivers/index.js';

/** Ironic's UNSTABLE_STATES: a boot mode change would interfere with what runs. */
const UNSTABLE = new Set(['deploying', 'wait call-back', 'cleaning', 'clean wait', 'verifying', 'deleting', 'inspecting',
  'inspect wait', 'adopting', 'rescuing', 'rescue wait', 'unrescuing']);

export const BOOT_MODES: readonly NodeBootMode[] = ['bios', 'uefi'];
export const INDICATOR_STATES: readonly IndicatorState[] = ['OFF', 'ON', 'BLINKING', 'UNKNOWN'];

function refuseUnstable(state: string): void {
  if (UNSTABLE.has(state)) {
    throw new Conflict(`Node is in ${state} state. Since node is transitioning, the boot mode will not be set as this ` +
      'may interfere with ongoing changes and result in erroneous modification. Try again later.');
  }
}

function unsupported(task: NodeTask, what: string): UnsupportedDriverExtension {
  return new UnsupportedDriverExtension(`Driver ${task.node.driver} does not support ${what} (disabled or not implemented).`);
}

export async function changeBootMode(ctx: ConductorContext, ident: string, target: NodeBootMode): Promise<void> {
  await ctx.tasks.withNodeTask(ident, { exclusive: true, purpose: 'changing node boot mode' }, async (task) => {
    refuseUnstable(task.node.provision_state);
    const mgmt = task.driver.management;
    await mgmt.validate(task.driverNode());
    await task.save({ last_error: null });
    task.spawn(async (t) => {
      const m = t.driver.management;
      let current: NodeBootMode | null = null;
      try {
        current = m.getBootMode ? await m.getBootMode(t.driverNode()) : null;
      } catch (e) {
        ctx.log.warn({ node: t.node.uuid, err: errorMessage(e) }, 'could not read the boot mode before changing it');
      }
      if (current !== null && current === target) {
        // Ironic changes nothing here, not even the node's field.
        ctx.log.info({ node: t.node.uuid, target }, 'boot mode already as requested');
        return;
      }
      try {
        if (!m.setBootMode) throw unsupported(t, 'set_boot_mode');
        await m.setBootMode(t.driverNode(), target);
      } catch (e) {
        await t.save({ last_error: `Failed to change boot mode to '${target}: ${errorMessage(e)}` });
        return;
      }
      await t.save({ boot_mode: target });
    });
  });
}

export async function changeSecureBoot(ctx: ConductorContext, ident: string, target: boolean): Promise<void> {
  await ctx.tasks.withNodeTask(ident, { exclusive: true, purpose: 'changing node secure' }, async (task) => {
    refuseUnstable(task.node.provision_state);
    await task.driver.management.validate(task.driverNode());
    await task.save({ last_error: null });
    task.spawn(async (t) => {
      const m = t.driver.management;
      let current: boolean | null = null;
      try {
        current = m.getSecureBootState ? await m.getSecureBootState(t.driverNode()) : null;
      } catch (e) {
        ctx.log.warn({ node: t.node.uuid, err: errorMessage(e) }, 'could not read the secure boot state before changing it');
      }
      if (current !== null && current === target) return;
      try {
        if (!m.setSecureBootState) throw unsupported(t, 'set_secure_boot_state');
        await m.setSecureBootState(t.driverNode(), target);
      } catch (e) {
        await t.save({ last_error: `Failed to change secure_boot state to '${target ? 'True' : 'False'}': ${errorMessage(e)}` });
        return;
      }
      await t.save({ secure_boot: target });
    });
  });
}

/** `name@component` (Ironic's IndicatorAtComponent). */
export function splitIndicator(unique: string): { name: string; component: string } {
  const i = unique.indexOf('@');
  if (i < 0) throw new InvalidParameterValue(`Malformed indicator name "${unique}"`);
  return { name: unique.slice(0, i), component: unique.slice(i + 1) };
}

export async function supportedIndicators(ctx: ConductorContext, ident: string): Promise<SupportedIndicators> {
  return ctx.tasks.withNodeTask(ident, { exclusive: false, purpose: 'getting supported indicators' }, async (task) => {
    const m = task.driver.management;
    await m.validate(task.driverNode());
    return m.getSupportedIndicators ? m.getSupportedIndicators(task.driverNode()) : {};
  });
}

export async function getIndicatorState(ctx: ConductorContext, ident: string, unique: string): Promise<IndicatorState> {
  const { name, component } = splitIndicator(unique);
  return ctx.tasks.withNodeTask(ident, { exclusive: false, purpose: 'getting indicator state' }, async (task) => {
    const m = task.driver.management;
    await m.validate(task.driverNode());
    if (!m.getIndicatorState) throw unsupported(task, 'get_indicator_state');
    return m.getIndicatorState(task.driverNode(), component, name);
  });
}

export async function setIndicatorState(ctx: ConductorContext, ident: string, unique: string, state: string): Promise<void> {
  const { name, component } = splitIndicator(unique);
  await ctx.tasks.withNodeTask(ident, { exclusive: true, purpose: 'setting indicator state' }, async (task) => {
    const m = task.driver.management;
    await m.validate(task.driverNode());
    if (!m.setIndicatorState) throw unsupported(task, 'set_indicator_state');
    if (!(INDICATOR_STATES as readonly string[]).includes(state)) {
      throw new InvalidParameterValue(`Invalid indicator state ${state} specified.`);
    }
    await m.setIndicatorState(task.driverNode(), component, name, state as IndicatorState);
  });
}
