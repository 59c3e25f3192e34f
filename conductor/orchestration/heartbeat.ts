/**
 * What a heartbeat does: in `wait call-back` it carries the deploy step plan forward, in
 * `clean wait` the cleaning plan. Unlike Ironic, a heartbeat that finds the node busy is not dropped: heartbeats
 * for one node are coalesced into at most one pending run after the current one, and a run that finds the node
 * reserved retries briefly instead of giving up (Ironic 21.4 skipped 86% of heartbeats under load).
 */
import { errorMessage } from '../../common/errors.js';
import type { ConductorContext } from '../context.js';
import { IronicError } from '../errors.js';
import type { NodeTask } from '../drivers/index.js';
import { failCleaning, failDeploy, finishCleaning, finishDeploy } from '../services/provision.js';
import { continueRescue } from './rescue.js';
import { AgentInProgress } from '../agent-client.js';
import { agentClient, agentEndpoint } from './agent-node.js';
import { cleanFlow, deployFlow, powerOffAfterFailure } from './direct.js';
import { iscsiDeployFlow } from './iscsi-deploy.js';
import type { StepFlow } from './step-runner.js';
import type { HeartbeatFacts } from './hooks.js';
import { recordHeartbeat } from '../services/agent.js';
import { continueSteps, plan, refreshAgentSteps, runFrom, StepFailure, stepIndex } from './step-runner.js';
import {
  applyPriorityOverrides, automatedSteps, DIRECT_DEPLOY_STEPS, manualSteps, mergeSteps, planDeploySteps,
  stepKey, type RequestedStep, type Step,
} from './steps.js';
import { collectLogsOnFailure } from './logs.js';
import { deployTemplatesByNames } from '../store/deploy-templates.js';
import { isFastTrack } from '../fast-track.js';
import { driverBiosSteps } from './bios-steps.js';

const LOCK_RETRY_MS = 200;
/** Deploy interfaces whose deploys heartbeats carry forward, with their step flows (cleaning is the same for all). */
const DEPLOY_FLOWS: Readonly<Record<string, StepFlow>> = { direct: deployFlow, iscsi: iscsiDeployFlow };
/** A node reserved longer than this (a long power action, say) is retried on its next heartbeat instead. */
const LOCK_RETRY_LIMIT_MS = 120_000;

export async function handleHeartbeat(nodeUuid: string, ctx: ConductorContext, facts?: HeartbeatFacts): Promise<void> {
  const hub = ctx.heartbeats;
  hub.stats.received++;
  if (facts) {
    hub.stats.deferred++;
    hub.pendingFacts.set(nodeUuid, { ...hub.pendingFacts.get(nodeUuid), ...facts });
  }
  const running = hub.inflight.get(nodeUuid);
  if (running) {
    running.again = true;
    return;
  }
  const slot = { again: true };
  hub.inflight.set(nodeUuid, slot);
  try {
    while (slot.again) {
      slot.again = false;
      hub.stats.runs++;
      await processWithLock(nodeUuid, ctx);
    }
  } finally {
    hub.inflight.delete(nodeUuid);
  }
}

async function processWithLock(nodeUuid: string, ctx: ConductorContext): Promise<void> {
  const deadline = Date.now() + LOCK_RETRY_LIMIT_MS;
  for (;;) {
    try {
      await ctx.tasks.withNodeTask(nodeUuid, { exclusive: true, retry: false, purpose: 'heartbeat processing' },
        async (task) => {
          const facts = ctx.heartbeats.pendingFacts.get(nodeUuid);
          if (facts) {
            ctx.heartbeats.pendingFacts.delete(nodeUuid);
            await recordHeartbeat(task, facts);
            ctx.log.debug({ node: nodeUuid }, 'deferred heartbeat recorded');
          }
          // The slot is taken under the node's lock: a slot holder never waits for a lock, so the pool cannot deadlock.
          await ctx.fleet.workers.run(() => processHeartbeat(ctx, task));
        });
      return;
    } catch (e) {
      if (e instanceof IronicError && e.code === 'NodeLocked' && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, LOCK_RETRY_MS));
        continue;
      }
      throw e;
    }
  }
}

export async function processHeartbeat(ctx: ConductorContext, task: NodeTask): Promise<void> {
  const state = task.node.provision_state;
  if (task.node.maintenance) {
    ctx.log.info({ node: task.node.uuid, state }, 'heartbeat: node in maintenance, not acting');
    return;
  }
  if (state === 'rescue wait') {
    await continueRescue(ctx, task);
    return;
  }
  const deployInterface = task.node.deploy_interface ?? task.driver.deploy.name;
  const flow = Object.hasOwn(DEPLOY_FLOWS, deployInterface) ? DEPLOY_FLOWS[deployInterface] : undefined;
  if (!flow) return;
  try {
    if (state === 'wait call-back') await continueDeploy(ctx, task, flow);
    else if (state === 'clean wait') await continueCleaning(ctx, task);
  } catch (e) {
    if (e instanceof AgentInProgress) {
      ctx.log.info({ node: task.node.uuid }, 'agent busy; continuing on the next heartbeat');
      return;
    }
    await failOperation(ctx, task, e);
  }
}

async function failOperation(ctx: ConductorContext, task: NodeTask, e: unknown): Promise<void> {
  const msg = e instanceof StepFailure ? e.message : `${task.node.provision_state === 'clean wait' || task.node.provision_state === 'cleaning'
    ? 'Cleaning' : 'Deploy'} failed on node ${task.node.uuid}: ${errorMessage(e)}`;
  ctx.log.warn({ node: task.node.uuid, err: msg }, 'operation failed');
  await collectLogsOnFailure(ctx, task).catch(() => undefined); // logs.ts logs its own failures; the operation fails regardless
  const s = task.node.provision_state;
  if (s === 'cleaning' || s === 'clean wait') {
    await failCleaning(task, msg);
    await powerOffAfterFailure(ctx, task);
    await cleanUpRamdiskAfterFailure(ctx, task);
  } else if (s === 'deploying' || s === 'wait call-back') {
    await failDeploy(task, msg);
    if (ctx.config.deploy.power_off_on_deploy_failure) await powerOffAfterFailure(ctx, task);
    await cleanUpRamdiskAfterFailure(ctx, task);
  }
}

/** Removes the ramdisk boot files after a failure; a leftover is logged, the failure itself is what counts. */
async function cleanUpRamdiskAfterFailure(ctx: ConductorContext, task: NodeTask): Promise<void> {
  await task.driver.boot.cleanUpRamdisk(task.driverNode()).catch((e: unknown) =>
    ctx.log.warn({ node: task.node.uuid, err: errorMessage(e) }, 'could not remove the ramdisk boot files'));
}

async function resumeFrom(task: NodeTask, waitState: string): Promise<void> {
  if (task.node.provision_state === waitState) await task.fire('resume');
}

async function continueDeploy(ctx: ConductorContext, task: NodeTask, flow: StepFlow): Promise<void> {
  if (!Array.isArray(task.node.driver_internal_info.agent_cached_deploy_steps)) {
    // First heartbeat of this ramdisk boot: learn the agent's steps and fold them (and the user's) into the plan.
    const current = plan(task, 'deploy')[stepIndex(task, 'deploy')];
    const agent = await refreshAgentSteps(ctx, task, 'deploy');
    const user = (task.node.driver_internal_info.user_deploy_steps ?? []) as RequestedStep[];
    const traits = task.node.instance_info.traits;
    const templates = Array.isArray(traits) ? await deployTemplatesByNames(ctx.store.sql, traits.filter((t) => typeof t === 'string')) : [];
    const full = planDeploySteps(mergeSteps([...DIRECT_DEPLOY_STEPS, ...driverBiosSteps(task)], agent), user, templates);
    const index = current ? full.findIndex((s) => stepKey(s) === stepKey(current)) : -1;
    await task.updateInternalInfo({ deploy_steps: full, deploy_step_index: index });
  }
  const outcome = await continueSteps(ctx, task, flow, () => resumeFrom(task, 'wait call-back'));
  if (outcome === 'wait') {
    if (task.node.provision_state === 'deploying') await task.fire('wait');
  } else if (outcome === 'done') {
    await collectLogsIfAlways(ctx, task);
    await finishDeploy(task);
  }
}

function cleaningOverrides(ctx: ConductorContext): Record<string, number> {
  const o: Record<string, number> = {};
  const d = ctx.config.deploy;
  if (d.erase_devices_priority !== null) o['deploy.erase_devices'] = d.erase_devices_priority;
  if (d.erase_devices_metadata_priority !== null) o['deploy.erase_devices_metadata'] = d.erase_devices_metadata_priority;
  return o;
}

async function continueCleaning(ctx: ConductorContext, task: NodeTask): Promise<void> {
  const dii = task.node.driver_internal_info;
  const step = task.node.clean_step as Partial<Step> & { abort_after?: boolean };
  let outcome: 'still-waiting' | 'wait' | 'done';
  if (!Array.isArray(dii.clean_steps)) {
    // The ramdisk just booted for cleaning: build the plan from the agent's steps and start it.
    await resumeFrom(task, 'clean wait');
    const agent = await refreshAgentSteps(ctx, task, 'clean');
    const manual = dii.manual_clean_steps as RequestedStep[] | undefined;
    const steps = manual && manual.length ? manualSteps(mergeSteps(driverBiosSteps(task), agent), manual, 'clean')
      : automatedSteps(applyPriorityOverrides(agent, cleaningOverrides(ctx)));
    await task.updateInternalInfo({ clean_steps: steps, clean_step_index: -1, clean_pending: undefined });
    ctx.log.info({ node: task.node.uuid, steps: steps.map(stepKey) }, 'cleaning plan');
    outcome = await runFrom(ctx, task, cleanFlow, 0);
  } else {
    outcome = await continueSteps(ctx, task, cleanFlow, () => resumeFrom(task, 'clean wait'));
    if (step.abort_after && outcome !== 'still-waiting') {
      // An abort arrived while a non-abortable step ran: honour it now that the step is over.
      await powerOffAfterFailure(ctx, task);
      await cleanUpRamdiskAfterFailure(ctx, task);
      if (task.node.provision_state === 'cleaning') await task.fire('wait');
      await task.fire('abort', { lastError: `Clean operation aborted for node ${task.node.uuid} after the completion of step "${step.step}".`,
        extra: { clean_step: {} } });
      return;
    }
  }
  if (outcome === 'wait') {
    if (task.node.provision_state === 'cleaning') await task.fire('wait');
  } else if (outcome === 'done') {
    await collectLogsIfAlways(ctx, task);
    await tearDownCleaning(ctx, task);
    await finishCleaning(task, ctx);
  }
}

/**
 * Cleaning done: the node powers off and its ramdisk boot files go (Ironic's tear_down_cleaning). Under fast-track
 * the agent stays up, powered on and heartbeating, for the next deploy.
 */
async function tearDownCleaning(ctx: ConductorContext, task: NodeTask): Promise<void> {
  if (await isFastTrack(ctx, task)) {
    ctx.log.info({ node: task.node.uuid }, 'fast-track: the agent stays up after cleaning');
    await task.driver.boot.cleanUpRamdisk(task.driverNode());
    return;
  }
  try {
    await agentClient(ctx).powerOff(agentEndpoint(task));
  } catch (e) {
    ctx.log.debug({ node: task.node.uuid, err: errorMessage(e) }, 'agent power-off at the end of cleaning failed');
  }
  await powerOffAfterFailure(ctx, task);
  await task.driver.boot.cleanUpRamdisk(task.driverNode());
}

async function collectLogsIfAlways(ctx: ConductorContext, task: NodeTask): Promise<void> {
  // logs.ts logs its own failures; missing logs never fail a finished operation.
  if (ctx.config.agent.deploy_logs_collect === 'always') await collectLogsOnFailure(ctx, task, true).catch(() => undefined);
}
