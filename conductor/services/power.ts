/**
 * Power, boot device, maintenance and validation: the node operations that are not provisioning verbs.
 * `nodePowerAction` is the one place a power change is applied and recorded (orchestration uses it too).
 */
import { errorMessage } from '../../common/errors.js';
import type { ConductorContext } from '../context.js';
import { NODE_INTERFACE_KINDS, type NodeTask } from '../drivers/index.js';
import type { BootDevice, PowerTarget } from '../drivers/types.js';
import { InvalidParameterValue, InvalidStateRequested, IronicError, UnsupportedDriverExtension } from '../errors.js';
import { FAILURE_STATES, type ProvisionState } from '../states.js';

/** Keys dropped from driver_internal_info whenever the node is powered off or rebooted. */
const WIPED_ON_POWER_OFF = ['agent_url', 'agent_verify_ca', 'agent_cached_deploy_steps', 'agent_cached_clean_steps',
  'agent_cached_deploy_steps_refreshed', 'agent_cached_clean_steps_refreshed'];

/** Drops the agent token and URL (unless the token was pregenerated, e.g. embedded in virtual media). */
export async function wipeAgentToken(task: NodeTask, extraKeys: readonly string[] = []): Promise<void> {
  const dii = task.node.driver_internal_info;
  const changes: Record<string, unknown> = { agent_url: undefined, agent_verify_ca: undefined };
  if (!dii.agent_secret_token_pregenerated) {
    changes.agent_secret_token = undefined;
    changes.agent_secret_token_pregenerated = undefined;
  }
  for (const k of extraKeys) changes[k] = undefined;
  if (Object.keys(changes).some((k) => k in dii)) await task.updateInternalInfo(changes);
  task.agentGone(dii.agent_verify_ca);
}

function expectedState(target: PowerTarget): 'power on' | 'power off' {
  return target === 'power off' || target === 'soft power off' ? 'power off' : 'power on';
}

/**
 * Applies a power change through the node's power interface and records the outcome: power_state,
 * target_power_state cleared, last_error on failure (then rethrown). Wipes the agent token on off/reboot.
 */
export async function nodePowerAction(task: NodeTask, target: PowerTarget, timeoutS?: number): Promise<void> {
  const power = task.driver.power;
  const want = expectedState(target);
  try {
    if (target === 'power on' || target === 'power off') {
      const current = await power.getPowerState(task.driverNode());
      if (current === want) {
        await task.save({ power_state: current, target_power_state: null });
        if (want === 'power off') await wipeAgentToken(task, WIPED_ON_POWER_OFF);
        return;
      }
    }
    if (task.node.target_power_state !== want) await task.save({ target_power_state: want });
    if (target !== 'power on') await wipeAgentToken(task, WIPED_ON_POWER_OFF);
    await power.setPowerState(task.driverNode(), target, timeoutS);
    await task.save({ power_state: want, target_power_state: null });
  } catch (e) {
    const msg = `Failed to change power state to '${target}' by '${target}'. Error: ${errorMessage(e)}`;
    await task.save({ target_power_state: null, last_error: msg });
    await task.history(msg, 'ERROR', 'power');
    throw e;
  }
}

const POWER_TARGETS: readonly PowerTarget[] = ['power on', 'power off', 'rebooting', 'soft rebooting', 'soft power off'];

/** PUT /v1/nodes/{id}/states/power: validate, set target_power_state synchronously, act in the background. */
export async function changePowerState(ctx: ConductorContext, ident: string, target: string, timeoutS?: number):
  Promise<void> {
  if (!(POWER_TARGETS as readonly string[]).includes(target)) {
    throw new InvalidParameterValue(`Invalid power state ${target} requested`);
  }
  const t = target as PowerTarget;
  await ctx.tasks.withNodeTask(ident, { exclusive: true, purpose: `changing power state to ${t}` }, async (task) => {
    const ps = task.node.provision_state;
    if (ps === 'cleaning' || ps === 'clean wait') {
      throw new InvalidStateRequested(`The requested action "${t}" can not be performed on node ` +
        `"${task.node.uuid}" while it is in state "${ps}".`);
    }
    const power = task.driver.power;
    await power.validate(task.driverNode());
    if (!power.getSupportedPowerStates(task.driverNode()).includes(t)) {
      throw new InvalidParameterValue(`The driver ${task.node.driver} does not support the power state, ${t}`);
    }
    const clearError = !FAILURE_STATES.has(ps as ProvisionState);
    await task.save({ target_power_state: expectedState(t), ...(clearError ? { last_error: null } : {}) });
    task.spawn(async (tk) => {
      await nodePowerAction(tk, t, timeoutS).catch((e: unknown) => {
        ctx.log.warn({ node: tk.node.uuid, err: errorMessage(e) }, 'power action failed');
      });
    });
  });
}

export async function getBootDevice(ctx: ConductorContext, ident: string):
  Promise<{ boot_device: BootDevice | null; persistent: boolean | null }> {
  return ctx.tasks.withNodeTask(ident, { purpose: 'getting boot device' }, async (task) => {
    const m = task.driver.management;
    await m.validate(task.driverNode());
    return m.getBootDevice(task.driverNode());
  });
}

export async function getSupportedBootDevices(ctx: ConductorContext, ident: string): Promise<BootDevice[]> {
  return ctx.tasks.withNodeTask(ident, { purpose: 'getting supported boot devices' }, async (task) =>
    task.driver.management.getSupportedBootDevices(task.driverNode()));
}

export async function setBootDevice(ctx: ConductorContext, ident: string, device: string, persistent: boolean):
  Promise<void> {
  await ctx.tasks.withNodeTask(ident, { exclusive: true, purpose: 'setting boot device' }, async (task) => {
    const m = task.driver.management;
    await m.validate(task.driverNode());
    const supported = m.getSupportedBootDevices(task.driverNode());
    if (!(supported as string[]).includes(device)) {
      throw new InvalidParameterValue(`Invalid boot device ${device} specified.`);
    }
    await m.setBootDevice(task.driverNode(), device as BootDevice, persistent);
  });
}

/** PUT /v1/nodes/{n}/management/inject_nmi (Ironic's inject_nmi): exclusive, the management interface's NMI. */
export async function injectNmi(ctx: ConductorContext, ident: string): Promise<void> {
  await ctx.tasks.withNodeTask(ident, { exclusive: true, purpose: 'inject NMI' }, async (task) => {
    const mgmt = task.driver.management;
    await mgmt.validate(task.driverNode());
    if (!mgmt.injectNmi) {
      throw new UnsupportedDriverExtension(`Driver ${task.node.driver} (management interface ${mgmt.name}) does not support inject NMI.`);
    }
    await mgmt.injectNmi(task.driverNode());
  });
}

export async function setMaintenance(ctx: ConductorContext, ident: string, on: boolean, reason?: string | null):
  Promise<void> {
  await ctx.tasks.withNodeTask(ident, { exclusive: true, purpose: 'setting maintenance' }, async (task) => {
    await task.save(on ? { maintenance: true, maintenance_reason: reason ?? null }
      : { maintenance: false, maintenance_reason: null, fault: null });
  });
}

export interface ValidationResult { result: boolean | null; reason: string | null }

/** GET /v1/nodes/{id}/validate: every non-vendor interface, under a shared lock. */
export async function validateNode(ctx: ConductorContext, ident: string): Promise<Record<string, ValidationResult>> {
  return ctx.tasks.withNodeTask(ident, { purpose: 'validate' }, async (task) => {
    const out: Record<string, ValidationResult> = {};
    for (const kind of NODE_INTERFACE_KINDS) {
      if (kind === 'vendor') continue;
      try {
        await task.driver.get(kind).validate(task.driverNode());
        out[kind] = { result: true, reason: null };
      } catch (e) {
        const known = e instanceof IronicError && e.status < 500;
        out[kind] = { result: false, reason: known ? errorMessage(e) : `Unexpected exception, traceback saved into ` +
          `log by ironic conductor service that is running on ${ctx.host}: ${errorMessage(e)}` };
      }
    }
    return out;
  });
}
