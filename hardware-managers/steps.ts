/**
 * Clean/deploy/service steps as the conductor sees them: collection from
 * every manager, de-duplication, per-node priority overrides, the hardware_manager_version check, and execution of
 * one step through dispatch. The clean/deploy (and service) extensions wrap this module
 * (agent/extensions/step-commands.ts).
 */
import {
  AgentError,
  CleaningError,
  DeploymentError,
  VersionMismatch,
  type AgentStep,
  type CommandStatus,
} from '../protocol/agent-api.js';
import { getLogger } from '../common/logger.js';
import { setHardwareContext } from './context.js';
import { dispatchToAll, dispatchToManagers, getCurrentVersions, getManagerSupport } from './dispatch.js';
import type { NodeInfo, PortInfo, StepCall } from './types.js';
import { errorMessage } from '../common/errors.js';

const log = getLogger('steps');

export type StepKind = 'clean' | 'deploy' | 'service';

const GETTER: Record<StepKind, string> = {
  clean: 'getCleanSteps',
  deploy: 'getDeploySteps',
  service: 'getServiceSteps',
};

/**
 * IPA's deduplicate_steps: for each step name the winner is (support desc, priority desc, manager name asc); it
 * stays under its own manager's key, the others are dropped. Managers left with no step do not appear.
 */
export function deduplicateSteps(
  byManager: Record<string, AgentStep[]>,
  support: ReadonlyMap<string, number>,
): Record<string, AgentStep[]> {
  const winners = new Map<string, { manager: string; step: AgentStep }>();
  for (const [manager, steps] of Object.entries(byManager)) {
    for (const step of steps ?? []) {
      const cur = winners.get(step.step);
      if (!cur) {
        winners.set(step.step, { manager, step });
        continue;
      }
      const sa = support.get(manager) ?? 0;
      const sb = support.get(cur.manager) ?? 0;
      const better =
        sa !== sb ? sa > sb : step.priority !== cur.step.priority ? step.priority > cur.step.priority : manager < cur.manager;
      if (better) winners.set(step.step, { manager, step });
    }
  }
  const out: Record<string, AgentStep[]> = {};
  for (const { manager, step } of winners.values()) out[manager] = [...(out[manager] ?? []), step];
  return out;
}

/**
 * Per-node priority overrides: `agent_step_priority_overrides` in driver_internal_info (set by the conductor, e.g.
 * from its [deploy]erase_devices_priority-like config) and in driver_info (set by the operator; wins). Either an
 * object {"erase_devices": 0, "deploy.erase_devices_metadata": 50} or Ironic's config string form
 * "deploy.erase_devices:0,raid.create_configuration:10". "interface.step" beats a bare "step" key.
 */
export function priorityOverrides(node: NodeInfo | null | undefined): Map<string, number> {
  const out = new Map<string, number>();
  const add = (src: unknown): void => {
    if (typeof src === 'string') {
      for (const part of src.split(',')) {
        const i = part.lastIndexOf(':');
        if (i <= 0) continue;
        const n = Number(part.slice(i + 1).trim());
        if (Number.isInteger(n) && n >= 0) out.set(part.slice(0, i).trim(), n);
      }
    } else if (src && typeof src === 'object') {
      for (const [k, v] of Object.entries(src as Record<string, unknown>)) {
        const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
        if (Number.isInteger(n) && n >= 0) out.set(k, n);
      }
    }
  };
  add(node?.driver_internal_info?.agent_step_priority_overrides);
  add(node?.driver_info?.agent_step_priority_overrides);
  return out;
}

export function applyPriorityOverrides(
  steps: Record<string, AgentStep[]>,
  overrides: ReadonlyMap<string, number>,
): Record<string, AgentStep[]> {
  if (overrides.size === 0) return steps;
  const out: Record<string, AgentStep[]> = {};
  for (const [manager, list] of Object.entries(steps)) {
    out[manager] = list.map((s) => {
      const p = overrides.get(`${s.interface}.${s.step}`) ?? overrides.get(s.step);
      return p === undefined ? s : { ...s, priority: p };
    });
  }
  return out;
}

export interface CollectedSteps {
  clean_steps?: Record<string, AgentStep[]>;
  deploy_steps?: Record<string, AgentStep[]>;
  service_steps?: Record<string, AgentStep[]>;
  hardware_manager_version: Record<string, string>;
}

/** get_{kind}_steps' command_result: steps by manager (deduplicated, overrides applied) and the version map. */
export async function collectSteps(kind: StepKind, node: NodeInfo, ports: PortInfo[]): Promise<CollectedSteps> {
  const raw = await dispatchToAll<AgentStep[] | null | undefined>(GETTER[kind], node, ports);
  const lists: Record<string, AgentStep[]> = {};
  for (const [m, v] of Object.entries(raw)) lists[m] = Array.isArray(v) ? v : [];
  const deduped = deduplicateSteps(lists, await getManagerSupport());
  const steps = applyPriorityOverrides(deduped, priorityOverrides(node));
  return { [`${kind}_steps`]: steps, hardware_manager_version: await getCurrentVersions() };
}

/** Python's repr of a str→str dict, so VersionMismatch details read exactly like IPA's. */
function pyRepr(v: unknown): string {
  if (v === null || v === undefined) return 'None';
  if (typeof v === 'string') return `'${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
  if (typeof v === 'number' || typeof v === 'boolean') return typeof v === 'boolean' ? (v ? 'True' : 'False') : String(v);
  if (Array.isArray(v)) return `[${v.map(pyRepr).join(', ')}]`;
  if (typeof v === 'object') {
    return `{${Object.entries(v as Record<string, unknown>).map(([k, x]) => `${pyRepr(k)}: ${pyRepr(x)}`).join(', ')}}`;
  }
  return String(v);
}

/**
 * The error the executor turns into command_status CLEAN_VERSION_MISMATCH (IPA uses that status for every step
 * kind). Its wire type stays "VersionMismatch" (code 409); `commandStatus` tells the executor which status to set.
 */
export class StepVersionMismatch extends VersionMismatch {
  readonly commandStatus: CommandStatus = 'CLEAN_VERSION_MISMATCH';
}

function sameVersions(a: Record<string, unknown>, b: Record<string, string>): boolean {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => Object.hasOwn(b, k) && a[k] === b[k]);
}

/** IPA's check_versions: a non-empty version map from the conductor must equal ours exactly. */
export async function checkVersions(provided: unknown): Promise<void> {
  if (provided === null || provided === undefined || provided === '') return;
  if (typeof provided === 'object' && !Array.isArray(provided) && Object.keys(provided).length === 0) return;
  const current = await getCurrentVersions();
  const ok = typeof provided === 'object' && !Array.isArray(provided) && sameVersions(provided as Record<string, unknown>, current);
  if (!ok) {
    throw new StepVersionMismatch(
      `Current versions: ${pyRepr(current)}, versions used by ironic: ${pyRepr(provided)}`,
    );
  }
}

const ERROR_FOR: Record<StepKind, (details: string, cause?: unknown) => AgentError> = {
  clean: (d, c) => new CleaningError(d, c),
  deploy: (d, c) => new DeploymentError(d, c),
  // ServicingError is not in protocol/agent-api.ts; same four-key shape built here.
  service: (d, c) => new AgentError('ServicingError', 500, 'Service step failed', d, c),
};

export interface ExecuteParams {
  step: Record<string, unknown>;
  node?: NodeInfo;
  ports?: PortInfo[];
  [key: string]: unknown;
}

/**
 * execute_{kind}_step: cache the node, check versions, merge step.args over the extra kwargs, dispatch the step by
 * name. Agent (REST) errors pass through as they are; anything else becomes CleaningError/DeploymentError/
 * ServicingError with IPA's "Unexpected exception performing <kind> step <name>. <Class>: <msg>" details.
 */
export async function executeStep(
  kind: StepKind,
  params: ExecuteParams,
  ctx: Pick<StepCall, 'progress' | 'signal'>,
): Promise<Record<string, unknown>> {
  const { step, node: rawNode, ports: rawPorts, [`${kind}_version`]: version, ...extra } = params;
  const node: NodeInfo = rawNode ?? {};
  const ports: PortInfo[] = rawPorts ?? [];
  setHardwareContext({ node });
  await checkVersions(version);
  const name = step.step;
  if (typeof name !== 'string' || name === '') {
    throw ERROR_FOR[kind](`Malformed ${kind}_step, no "step" key: ${JSON.stringify(step)}`);
  }
  const stepArgs = step.args && typeof step.args === 'object' ? (step.args as Record<string, unknown>) : {};
  const call: StepCall = { node, ports, args: { ...extra, ...stepArgs }, progress: ctx.progress, signal: ctx.signal };
  log.info({ kind, step: name, args: Object.keys(call.args) }, 'executing step');
  let result: unknown;
  try {
    result = await dispatchToManagers(name, call);
  } catch (e) {
    if (e instanceof AgentError) throw e;
    const cls = e instanceof Error ? e.constructor.name : typeof e;
    const msg = errorMessage(e);
    throw ERROR_FOR[kind](`Unexpected exception performing ${kind} step ${name}. ${cls}: ${msg}`, e);
  }
  return { [`${kind}_result`]: result === undefined ? null : result, [`${kind}_step`]: step };
}
