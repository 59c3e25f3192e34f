/**
 * Runs a node's deploy or clean step plan (Ironic's do_next_deploy_step / do_next_clean_step and
 * process_next_step). All progress lives in the node record
 * (`<kind>_steps`, `<kind>_step_index`, `<kind>_pending` in driver_internal_info; deploy_step/clean_step), so a
 * conductor restart resumes from the next heartbeat.
 *
 * A step either runs here (out-of-band: the step table of the deploy interface) or on the agent
 * (`execute_<kind>_step`). A step that has to wait records what it waits for:
 *   pending 'agent' — a command of ours runs on the agent; the next heartbeat reads the agent's command list;
 *   pending 'boot'  — the node is (re)booting into the ramdisk; the next heartbeat starts the following step.
 */
import { isoTime } from '../time.js';
import type { CommandResult } from '../../protocol/agent-api.js';
import { errorMessage } from '../../common/errors.js';
import { AgentClient, commandErrorText } from '../agent-client.js';
import type { ConductorContext } from '../context.js';
import type { NodeTask } from '../drivers/index.js';
import { agentClient, agentEndpoint, agentNodeDict, agentPortDicts } from './agent-node.js';
import { agentSteps, stepKey, type Step, type StepKind } from './steps.js';
import { agentStepAllowed, recordRaidResult } from '../drivers/agent-raid.js';

export type StepOutcome = 'wait' | 'done';
export type Pending = 'agent' | 'boot';

/** An out-of-band step: runs in the conductor; returns 'wait' (with what it waits for) or nothing. */
export type OutOfBandStep = (ctx: ConductorContext, task: NodeTask, step: Step) => Promise<Pending | void>;

export interface StepFlow {
  kind: Exclude<StepKind, 'service'>;
  /** Out-of-band steps by `interface.step`. */
  outOfBand: Record<string, OutOfBandStep>;
  /** Boots the node into the ramdisk again (a step asked for a reboot). */
  reboot(ctx: ConductorContext, task: NodeTask): Promise<void>;
}

const stepField = (kind: StepFlow['kind']) => (kind === 'deploy' ? 'deploy_step' : 'clean_step') as 'deploy_step' | 'clean_step';
const capital = (k: string): string => k[0]!.toUpperCase() + k.slice(1);

export class StepFailure extends Error {}

export function plan(task: NodeTask, kind: StepFlow['kind']): Step[] {
  const p = task.node.driver_internal_info[`${kind}_steps`];
  return Array.isArray(p) ? (p as Step[]) : [];
}

export function stepIndex(task: NodeTask, kind: StepFlow['kind']): number {
  const i = task.node.driver_internal_info[`${kind}_step_index`];
  return typeof i === 'number' ? i : -1;
}

/** Fetches and caches the agent's steps (with the hardware_manager_version to send back). */
export async function refreshAgentSteps(ctx: ConductorContext, task: NodeTask, kind: StepFlow['kind']): Promise<Step[]> {
  const client = agentClient(ctx);
  const ep = agentEndpoint(task);
  const res = kind === 'deploy'
    ? await client.getDeploySteps(ep, agentNodeDict(task), agentPortDicts(task))
    : await client.getCleanSteps(ep, agentNodeDict(task), agentPortDicts(task));
  if (res.command_status === 'FAILED') throw new StepFailure(`Agent failed to return ${kind} steps: ${commandErrorText(res)}`);
  const result = AgentClient.stepsFrom(res, kind);
  // An agent offers steps for interfaces the node may not have through it (raid with no-raid): never run those.
  const steps = agentSteps(result, kind).filter((s) => agentStepAllowed(task.node as unknown as Record<string, unknown>, s.interface));
  await task.updateInternalInfo({
    [`agent_cached_${kind}_steps`]: steps,
    [`agent_cached_${kind}_steps_refreshed`]: isoTime(),
    hardware_manager_version: result.hardware_manager_version,
  });
  return steps;
}

async function sendToAgent(ctx: ConductorContext, task: NodeTask, flow: StepFlow, step: Step): Promise<void> {
  const client = agentClient(ctx);
  const ep = agentEndpoint(task);
  const version = task.node.driver_internal_info.hardware_manager_version as Record<string, string> | undefined;
  const stepDict = { interface: step.interface, step: step.step, args: step.args ?? {}, priority: step.priority,
    ...(step.reboot_requested !== undefined ? { reboot_requested: step.reboot_requested } : {}),
    ...(step.abortable !== undefined ? { abortable: step.abortable } : {}) };
  const res = flow.kind === 'deploy'
    ? await client.executeDeployStep(ep, stepDict, agentNodeDict(task, true), agentPortDicts(task), version)
    : await client.executeCleanStep(ep, stepDict, agentNodeDict(task), agentPortDicts(task), version);
  if (res.command_status === 'FAILED') throw new StepFailure(commandErrorText(res));
}

/**
 * Runs steps from `from` on: out-of-band ones inline, agent ones by command. Stops at the first step that waits.
 * The node must be in the active state of the operation (deploying / cleaning).
 */
export async function runFrom(ctx: ConductorContext, task: NodeTask, flow: StepFlow, from: number): Promise<StepOutcome> {
  const steps = plan(task, flow.kind);
  for (let i = from; i < steps.length; i++) {
    const step = steps[i]!;
    await task.save({ [stepField(flow.kind)]: step as unknown as Record<string, unknown> });
    await task.updateInternalInfo({ [`${flow.kind}_step_index`]: i, [`${flow.kind}_pending`]: undefined });
    ctx.log.info({ node: task.node.uuid, step: stepKey(step), index: i, of: steps.length }, `${flow.kind} step starting`);
    let pending: Pending | void;
    try {
      const oob = flow.outOfBand[stepKey(step)];
      if (oob) {
        pending = await oob(ctx, task, step);
      } else {
        await sendToAgent(ctx, task, flow, step);
        pending = 'agent';
      }
    } catch (e) {
      throw new StepFailure(`${capital(flow.kind)} step ${stepKey(step)} failed on node ${task.node.uuid}. ${errorMessage(e)}`);
    }
    if (pending) {
      await task.updateInternalInfo({ [`${flow.kind}_pending`]: pending });
      return 'wait';
    }
    await task.history(`${capital(flow.kind)} step ${stepKey(step)} done`, 'INFO', flow.kind === 'deploy' ? 'deploying' : 'cleaning');
  }
  await task.save({ [stepField(flow.kind)]: {} });
  return 'done';
}

export type HeartbeatVerdict =
  | { action: 'nothing'; why: string }
  | { action: 'run'; from: number }
  | { action: 'fail'; message: string }
  | { action: 'resend' }
  | { action: 'refresh-and-resend' };

/** The agent's view of the current step, from its command list (process_next_step). */
export function judgeAgentStep(commands: CommandResult[], kind: StepFlow['kind'], current: Step, index: number): HeartbeatVerdict {
  const name = `execute_${kind}_step`;
  const relevant = commands.filter((c) => c.command_name === name);
  if (relevant.length === 0) return { action: 'resend' };
  const last = commands.at(-1)!;
  if (last.command_name !== name) return { action: 'nothing', why: `last agent command is ${last.command_name}` };
  if (last.command_status === 'RUNNING') return { action: 'nothing', why: 'step still running on the agent' };
  if (last.command_status === 'FAILED') {
    return { action: 'fail', message: `${capital(kind)} step ${stepKey(current)} failed: ${commandErrorText(last)}` };
  }
  if (last.command_status === 'CLEAN_VERSION_MISMATCH' || (last.command_status as string) === 'VERSION_MISMATCH') {
    return { action: 'refresh-and-resend' };
  }
  const echoed = (last.command_result ?? {})[`${kind}_step`] as { interface?: string; step?: string } | undefined;
  if (!echoed || echoed.interface !== current.interface || echoed.step !== current.step) {
    return { action: 'nothing', why: 'last succeeded command is for another step' };
  }
  return { action: 'run', from: index + 1 };
}

/**
 * On a heartbeat in the wait state: decide what the pending step's state means and continue. Returns 'wait'
 * (still waiting: stay in the wait state), 'done' (all steps ran) or 'resumed-wait' (steps ran and a new one waits).
 * Throws StepFailure when the operation must fail.
 */
export async function continueSteps(ctx: ConductorContext, task: NodeTask, flow: StepFlow,
  resume: () => Promise<void>): Promise<'still-waiting' | StepOutcome> {
  const steps = plan(task, flow.kind);
  const index = stepIndex(task, flow.kind);
  const pending = task.node.driver_internal_info[`${flow.kind}_pending`] as Pending | undefined;
  const current = steps[index];
  if (!current || !pending) {
    await resume();
    return runFrom(ctx, task, flow, Math.max(0, index + 1));
  }
  if (pending === 'boot') {
    await resume();
    return runFrom(ctx, task, flow, index + 1);
  }
  const commands = await agentClient(ctx).listCommands(agentEndpoint(task));
  const verdict = judgeAgentStep(commands, flow.kind, current, index);
  switch (verdict.action) {
    case 'nothing':
      ctx.log.debug({ node: task.node.uuid, why: verdict.why }, 'heartbeat: waiting');
      return 'still-waiting';
    case 'fail':
      throw new StepFailure(verdict.message);
    case 'refresh-and-resend':
      await refreshAgentSteps(ctx, task, flow.kind);
      await resume();
      return runFrom(ctx, task, flow, index);
    case 'resend':
      await resume();
      return runFrom(ctx, task, flow, index);
    case 'run':
      await recordRaidResult(task, current, commands.at(-1)?.command_result, flow.kind);
      await task.history(`${capital(flow.kind)} step ${stepKey(current)} done`, 'INFO', flow.kind === 'deploy' ? 'deploying' : 'cleaning');
      if (current.reboot_requested) {
        // The agent asked for a reboot after this step: boot the ramdisk again and go on when it calls back.
        await resume();
        await task.updateInternalInfo({ [`${flow.kind}_pending`]: 'boot', [`${flow.kind === 'deploy' ? 'deployment' : 'cleaning'}_reboot`]: true });
        await flow.reboot(ctx, task);
        return 'wait';
      }
      await resume();
      return runFrom(ctx, task, flow, verdict.from);
  }
}
