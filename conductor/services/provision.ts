/**
 * Provisioning verbs (PUT /v1/nodes/{id}/states/provision) and the workers behind them. Each verb fires its FSM
 * event synchronously (so target_provision_state is set before the 202, as the CLI's --wait needs), then hands
 * the task to a background worker that calls the driver and fires done/wait/fail.
 *
 * Orchestration finishes agent-driven operations with finishDeploy / failDeploy / finishCleaning /
 * failCleaning / finishRescue from its heartbeat handler.
 */
import { errorMessage } from '../../common/errors.js';
import type { ConductorContext } from '../context.js';
import type { CleanStepRequest, NodeTask } from '../drivers/index.js';
import {
  InvalidParameterValue, InvalidStateRequested, NodeInMaintenance, NodeLocked, NodeProtected, NotAcceptable,
} from '../errors.js';
import { canFire, VERBS } from '../states.js';
import { buildConfigDrive, checkConfigDriveRequest } from './configdrive.js';
import { checkRequestedSteps } from '../drivers/agent-raid.js';
import { cacheBiosSettingsQuietly } from '../drivers/bios.js';
import { hashRescuePassword } from '../drivers/agent-rescue.js';
import { wipeAgentToken } from './power.js';
import { isoTime } from '../time.js';
import { fastTrackAble } from '../fast-track.js';
import { removeNodeAllocation } from './allocations.js';

export interface ProvisionRequest {
  target: string;
  configdrive?: unknown;
  clean_steps?: CleanStepRequest[];
  deploy_steps?: unknown[];
  rescue_password?: string;
  disable_ramdisk?: boolean;
}

/** driver_internal_info keys describing one deploy/clean run; dropped when it ends. */
const DEPLOY_SCRATCH = ['deploy_steps', 'deploy_step_index', 'deployment_reboot', 'deployment_polling',
  'agent_cached_deploy_steps', 'agent_cached_deploy_steps_refreshed', 'steps_validated', 'user_deploy_steps'];
const CLEAN_SCRATCH = ['clean_steps', 'clean_step_index', 'cleaning_reboot', 'cleaning_polling', 'skip_current_clean_step',
  'agent_cached_clean_steps', 'agent_cached_clean_steps_refreshed', 'cleaning_disable_ramdisk', 'manual_clean_steps'];

const CLEAN_STEP_INTERFACES = ['power', 'management', 'deploy', 'bios', 'raid'];

function checkCleanSteps(steps: unknown): CleanStepRequest[] {
  if (!Array.isArray(steps)) throw new InvalidParameterValue('"clean_steps" must be a list of clean steps.');
  return steps.map((s, i) => {
    if (!s || typeof s !== 'object' || Array.isArray(s)) throw new InvalidParameterValue(`Clean step ${i} is not a dict.`);
    const step = s as Record<string, unknown>;
    const extra = Object.keys(step).filter((k) => !['interface', 'step', 'args'].includes(k));
    if (extra.length) throw new InvalidParameterValue(`Additional properties are not allowed (${extra.map((k) => `'${k}'`).join(', ')} ${extra.length > 1 ? 'were' : 'was'} unexpected)`);
    if (typeof step.interface !== 'string' || !CLEAN_STEP_INTERFACES.includes(step.interface)) {
      throw new InvalidParameterValue(`Invalid clean step ${i}: "interface" must be one of ${CLEAN_STEP_INTERFACES.join(', ')}.`);
    }
    if (typeof step.step !== 'string' || !step.step) throw new InvalidParameterValue(`Invalid clean step ${i}: "step" is required.`);
    if (step.args !== undefined && (typeof step.args !== 'object' || step.args === null || Array.isArray(step.args))) {
      throw new InvalidParameterValue(`Invalid clean step ${i}: "args" must be a dict.`);
    }
    return step as unknown as CleanStepRequest;
  });
}

/** Validates the verb and its arguments against the API version and the node's current state. */
export async function doProvisionAction(ctx: ConductorContext, ident: string, req: ProvisionRequest, apiMinor: number):
  Promise<void> {
  const verb = VERBS[req.target];
  if (!verb) throw new InvalidParameterValue(`The requested action "${req.target}" is not a valid provision state.`);
  if (apiMinor < verb.minVersion) throw new NotAcceptable();
  const isDeploy = verb.event === 'deploy' || verb.event === 'rebuild';
  checkConfigDriveRequest(req.target, req.configdrive, apiMinor);
  if (req.deploy_steps !== undefined && !isDeploy) {
    throw new InvalidParameterValue('"deploy_steps" can only be used when deploying (setting target to active or rebuild)');
  }
  if (req.deploy_steps !== undefined && apiMinor < 69) throw new NotAcceptable();
  let cleanSteps: CleanStepRequest[] | undefined;
  if (verb.event === 'clean') {
    if (req.clean_steps === undefined) {
      throw new InvalidParameterValue(`"clean_steps" is required when setting target provision state to clean`);
    }
    cleanSteps = checkCleanSteps(req.clean_steps);
  } else if (req.clean_steps !== undefined) {
    throw new InvalidParameterValue(`"clean_steps" is only valid when setting target provision state to clean`);
  }
  if (req.disable_ramdisk !== undefined && verb.event !== 'clean') {
    throw new InvalidParameterValue('"disable_ramdisk" can only be used with the "clean" verb');
  }
  if (verb.event === 'rescue') {
    if (typeof req.rescue_password !== 'string' || !req.rescue_password.trim()) {
      throw new InvalidParameterValue('A non-empty "rescue_password" is required when setting target provision state to rescue');
    }
  } else if (req.rescue_password !== undefined) {
    throw new InvalidParameterValue('"rescue_password" is only valid when setting target provision state to rescue');
  }

  const node = await ctx.tasks.findNode(ident);
  if (isDeploy && node.maintenance) throw new NodeInMaintenance(req.target, node.uuid);
  if (!canFire(node.provision_state, verb.event)) {
    if (node.reservation) throw new NodeLocked(node.uuid, node.reservation);
    throw new InvalidStateRequested(`The requested action "${req.target}" can not be performed on node ` +
      `"${node.uuid}" while it is in state "${node.provision_state}".`);
  }
  if (node.protected && (verb.event === 'delete' || verb.event === 'rebuild')) throw new NodeProtected(node.uuid);

  await ctx.tasks.withNodeTask(node, { exclusive: true, purpose: `provision action ${req.target}` }, async (task) => {
    const n = task.node;
    switch (verb.event) {
      case 'manage':
        if (n.provision_state === 'enroll') {
          await task.fire('manage');
          task.spawn((t) => verifyWorker(ctx, t));
        } else {
          await task.fire('manage');
        }
        return;
      case 'provide':
        if (n.retired) throw new InvalidStateRequested(`Transition provide is not allowed for node ${n.uuid} because it is retired.`);
        await task.driver.power.validate(task.driverNode());
        await task.fire('provide');
        task.spawn((t) => cleanWorker(ctx, t, { manual: false }));
        return;
      case 'clean':
        checkRequestedSteps(n as unknown as Record<string, unknown>, cleanSteps ?? []);
        await task.driver.power.validate(task.driverNode());
        await ctx.fleet.admit(ctx.store, 'cleaning', () => task.fire('clean', { target: 'manageable' }));
        task.spawn((t) => cleanWorker(ctx, t, { manual: true, steps: cleanSteps ?? [],
          disableRamdisk: req.disable_ramdisk ?? false }));
        return;
      case 'deploy':
      case 'rebuild': {
        await task.driver.power.validate(task.driverNode());
        await task.driver.deploy.validate(task.driverNode());
        const info = { ...n.instance_info };
        // Empty (null, '', {}) means no config drive, as Ironic's `if configdrive`.
        if (req.configdrive && (typeof req.configdrive !== 'object' || Object.keys(req.configdrive).length > 0)) {
          info.configdrive = typeof req.configdrive === 'object' && !Array.isArray(req.configdrive)
            ? await buildConfigDrive(req.configdrive as Record<string, unknown>, n) : req.configdrive;
        }
        const dii: Record<string, unknown> = { ...n.driver_internal_info };
        if (Array.isArray(req.deploy_steps)) checkRequestedSteps(n as unknown as Record<string, unknown>, req.deploy_steps as { interface?: unknown }[]);
        if (req.deploy_steps !== undefined) dii.user_deploy_steps = req.deploy_steps;
        await ctx.fleet.admit(ctx.store, 'provisioning', () =>
          task.fire(verb.event, { extra: { instance_info: info, driver_internal_info: dii, deploy_step: {} } }));
        task.spawn((t) => deployWorker(ctx, t));
        return;
      }
      case 'delete':
        await ctx.fleet.admit(ctx.store, 'unprovisioning', () => task.fire('delete'));
        task.spawn((t) => tearDownWorker(ctx, t));
        return;
      case 'inspect':
        await task.driver.get('inspect').validate(task.driverNode());
        await task.fire('inspect', { extra: { inspection_started_at: isoTime(), inspection_finished_at: null } });
        task.spawn((t) => inspectWorker(ctx, t));
        return;
      case 'adopt':
        await task.fire('adopt');
        task.spawn((t) => adoptWorker(ctx, t));
        return;
      case 'rescue': {
        await task.driver.get('rescue').validate(task.driverNode());
        // Only the crypt hash is kept (Ironic keeps the plain text too, until rescue ends): API readers never see it.
        const hashed = await hashRescuePassword(req.rescue_password ?? '', ctx.config.rescue_password_hash_algorithm);
        const { rescue_password: _plain, ...kept } = n.instance_info;
        await task.fire('rescue', { extra: { instance_info: { ...kept, hashed_rescue_password: hashed } } });
        task.spawn((t) => rescueWorker(ctx, t, req.rescue_password ?? ''));
        return;
      }
      case 'unrescue':
        await task.fire('unrescue');
        task.spawn((t) => unrescueWorker(ctx, t));
        return;
      case 'abort':
        await abort(ctx, task);
        return;
      default:
        throw new InvalidParameterValue(`The requested action "${req.target}" is not supported.`);
    }
  });
}

async function guard(ctx: ConductorContext, task: NodeTask, what: string, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (e) {
    const msg = `${what}: ${errorMessage(e)}`;
    ctx.log.warn({ node: task.node.uuid, err: msg }, 'provisioning failed');
    await task.reload().catch(() => undefined); // the node may be gone; the failure is recorded below from what we hold
    if (task.node.provision_state === 'cleaning' || task.node.provision_state === 'clean wait') {
      await failCleaning(task, msg);
    } else if (task.node.provision_state === 'deploying' || task.node.provision_state === 'wait call-back') {
      await failDeploy(task, msg);
    } else if (canFire(task.node.provision_state, 'fail')) {
      await task.fire('fail', { lastError: msg });
      await wipeAgentToken(task).catch(() => undefined);
    }
  }
}

async function verifyWorker(ctx: ConductorContext, task: NodeTask): Promise<void> {
  await guard(ctx, task, `Failed to get power state for node ${task.node.uuid}`, async () => {
    const power = task.driver.power;
    await power.validate(task.driverNode());
    const state = await power.getPowerState(task.driverNode());
    await cacheBiosSettingsQuietly(task, (msg, e) => ctx.log.warn({ node: task.node.uuid, err: errorMessage(e) }, msg));
    await task.fire('done', { extra: { power_state: state } });
  });
}

async function cleanWorker(ctx: ConductorContext, task: NodeTask,
  opts: { manual: boolean; steps?: CleanStepRequest[]; disableRamdisk?: boolean }): Promise<void> {
  await guard(ctx, task, 'Failed to prepare node for cleaning', async () => {
    const enabled = task.node.automated_clean ?? ctx.config.automated_clean;
    if (!opts.manual && !enabled) {
      await finishCleaning(task, ctx);
      return;
    }
    await wipeScratch(ctx, task, CLEAN_SCRATCH);
    if (opts.manual) await task.updateInternalInfo({ manual_clean_steps: opts.steps ?? [],
      cleaning_disable_ramdisk: opts.disableRamdisk || undefined });
    await cacheBiosSettingsQuietly(task, (msg, e) => ctx.log.warn({ node: task.node.uuid, err: errorMessage(e) }, msg));
    const r = await task.driver.deploy.clean(task, opts);
    if (r === 'wait') await task.fire('wait');
    else await finishCleaning(task, ctx);
  });
}

/**
 * Drops a run's scratch keys, and the agent token and URL unless fast-track may reuse the running agent
 * (Ironic's wipe_*_internal_info keep them when the node is fast_track_able).
 */
async function wipeScratch(ctx: ConductorContext | undefined, task: NodeTask, keys: readonly string[]): Promise<void> {
  if (ctx && fastTrackAble(ctx, task.node)) {
    const changes: Record<string, unknown> = {};
    for (const k of keys) if (k in task.node.driver_internal_info) changes[k] = undefined;
    if (Object.keys(changes).length) await task.updateInternalInfo(changes);
    return;
  }
  await wipeAgentToken(task, keys);
}

/**
 * Ends cleaning successfully: `available` (automated) or `manageable` (manual). With `ctx` and fast-track, the
 * agent's token and URL stay (the agent keeps running for the next deploy).
 */
export async function finishCleaning(task: NodeTask, ctx?: ConductorContext): Promise<void> {
  const manual = task.node.target_provision_state === 'manageable';
  await wipeScratch(ctx, task, CLEAN_SCRATCH);
  if (task.node.provision_state === 'clean wait') await task.fire('resume');
  await task.fire(manual ? 'manage' : 'done', { extra: { clean_step: {} } });
}

/** Fails cleaning; a step that was running puts the node in maintenance with fault `clean failure`. */
export async function failCleaning(task: NodeTask, message: string): Promise<void> {
  const stepRunning = Object.keys(task.node.clean_step).length > 0;
  await task.fire('fail', { lastError: message, extra: { clean_step: {},
    ...(stepRunning ? { maintenance: true, maintenance_reason: message, fault: 'clean failure' } : {}) } });
  // The failure is already recorded; a token left behind is replaced at the next ramdisk's lookup.
  await wipeAgentToken(task, CLEAN_SCRATCH).catch(() => undefined);
}

async function deployWorker(ctx: ConductorContext, task: NodeTask): Promise<void> {
  await guard(ctx, task, 'Failed to deploy', async () => {
    await wipeScratch(ctx, task, DEPLOY_SCRATCH.filter((k) => k !== 'user_deploy_steps'));
    const r = await task.driver.deploy.deploy(task);
    if (r === 'wait') await task.fire('wait');
    else await finishDeploy(task);
  });
}

/** Ends a deployment successfully: `active`, scratch and token wiped. */
export async function finishDeploy(task: NodeTask): Promise<void> {
  await wipeAgentToken(task, DEPLOY_SCRATCH);
  if (task.node.provision_state === 'wait call-back') await task.fire('resume');
  await task.fire('done', { extra: { deploy_step: {} } });
}

/** Fails a deployment; the agent's token dies with it (a later heartbeat or command must not be accepted). */
export async function failDeploy(task: NodeTask, message: string): Promise<void> {
  await task.fire('fail', { lastError: message, extra: { deploy_step: {} } });
  await wipeAgentToken(task).catch(() => undefined);
}

async function tearDownWorker(ctx: ConductorContext, task: NodeTask): Promise<void> {
  await guard(ctx, task, 'Error while tearing down the node', async () => {
    await task.driver.deploy.tearDown(task);
    await task.save({ instance_info: {}, instance_uuid: null, deploy_step: {} });
    await removeNodeAllocation(ctx, task);
    await wipeAgentToken(task, DEPLOY_SCRATCH);
    await task.fire('clean');
  });
  if (task.node.provision_state === 'cleaning') await cleanWorker(ctx, task, { manual: false });
}

async function inspectWorker(ctx: ConductorContext, task: NodeTask): Promise<void> {
  await guard(ctx, task, 'Failed to inspect hardware', async () => {
    const r = await task.driver.get('inspect').inspectHardware(task);
    if (r === 'wait') await task.fire('wait');
    else await task.fire('done', { extra: { inspection_finished_at: isoTime() } });
  });
}

async function adoptWorker(ctx: ConductorContext, task: NodeTask): Promise<void> {
  await guard(ctx, task, 'Error while attempting to adopt node', async () => {
    await task.driver.power.validate(task.driverNode());
    await task.driver.deploy.validate(task.driverNode());
    await task.driver.deploy.takeOver?.(task);
    await task.fire('done');
  });
}

async function rescueWorker(ctx: ConductorContext, task: NodeTask, password: string): Promise<void> {
  await guard(ctx, task, 'Failed to rescue', async () => {
    await wipeAgentToken(task);
    const r = await task.driver.get('rescue').rescue(task, password);
    if (r === 'wait') await task.fire('wait');
    else await finishRescue(task);
  });
}

export async function finishRescue(task: NodeTask): Promise<void> {
  await wipeAgentToken(task);
  if (task.node.provision_state === 'rescue wait') await task.fire('resume');
  await task.fire('done');
}

async function unrescueWorker(ctx: ConductorContext, task: NodeTask): Promise<void> {
  await guard(ctx, task, 'Failed to unrescue', async () => {
    await task.driver.get('rescue').unrescue(task);
    const { rescue_password: _drop, hashed_rescue_password: _hash, ...info } = task.node.instance_info;
    await task.fire('done', { extra: { instance_info: info } });
  });
}

async function abort(ctx: ConductorContext, task: NodeTask): Promise<void> {
  const n = task.node;
  switch (n.provision_state) {
    case 'clean wait': {
      const step = n.clean_step as { abortable?: boolean; step?: string };
      if (Object.keys(step).length && step.abortable === false) {
        await task.save({ clean_step: { ...step, abort_after: true } });
        return;
      }
      await task.driver.deploy.abortCleaning?.(task);
      await wipeAgentToken(task, CLEAN_SCRATCH);
      await task.fire('abort', { lastError: `Clean operation aborted for node ${n.uuid}` +
        (step.step ? ` during or after the completion of step "${step.step}"` : '') + '.', extra: { clean_step: {} } });
      return;
    }
    case 'inspect wait':
      await task.driver.find('inspect')?.abort?.(task);
      await task.fire('abort', { lastError: 'Inspection was aborted by request.' });
      return;
    case 'rescue wait':
      await wipeAgentToken(task);
      await task.fire('abort', { lastError: 'Rescue operation was aborted by request.' });
      return;
    default:
      ctx.log.info({ node: n.uuid, state: n.provision_state }, 'abort requested');
      await task.fire('abort');
  }
}
