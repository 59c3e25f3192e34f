/**
 * Step lists for deploy and cleaning: the driver's out-of-band steps merged with the
 * agent's in-band steps, priorities overridden by config or the user, sorted by priority then interface priority.
 * Pure functions: no I/O, no state.
 */
import type { AgentStep, StepsResult } from '../../protocol/agent-api.js';
import { InvalidParameterValue } from '../errors.js';

export type StepKind = 'clean' | 'deploy' | 'service';

export interface Step {
  interface: string;
  step: string;
  priority: number;
  args?: Record<string, unknown>;
  abortable?: boolean;
  reboot_requested?: boolean;
  requires_ramdisk?: boolean;
  argsinfo?: Record<string, { description: string; required?: boolean }> | null;
}

/** A step the user asks for (manual cleaning, deploy_steps, deploy templates). */
export interface RequestedStep {
  interface: string;
  step: string;
  args?: Record<string, unknown>;
  priority?: number;
}

/** Ties in priority run power first, then management, deploy, bios, raid (Ironic's order). */
export const INTERFACE_PRIORITY: Record<string, number> = { power: 5, management: 4, deploy: 3, bios: 2, raid: 1 };

export const stepKey = (s: { interface: string; step: string }): string => `${s.interface}.${s.step}`;

export function sortSteps<T extends Step>(steps: T[]): T[] {
  return [...steps].sort(
    (a, b) => b.priority - a.priority || (INTERFACE_PRIORITY[b.interface] ?? 0) - (INTERFACE_PRIORITY[a.interface] ?? 0),
  );
}

/** Flatten an agent's get_*_steps result (grouped by manager) into steps; clean steps require the ramdisk. */
export function agentSteps(result: StepsResult, kind: StepKind): Step[] {
  const grouped = result[`${kind}_steps`] ?? {};
  const out: Step[] = [];
  for (const steps of Object.values(grouped)) {
    for (const s of steps as AgentStep[]) {
      out.push({
        interface: s.interface,
        step: s.step,
        priority: s.priority,
        abortable: s.abortable ?? false,
        reboot_requested: s.reboot_requested ?? false,
        argsinfo: s.argsinfo ?? null,
        ...(kind === 'clean' ? { requires_ramdisk: true } : {}),
      });
    }
  }
  return out;
}

/** Out-of-band (driver) steps win over in-band duplicates with the same interface and name. */
export function mergeSteps(driverSteps: Step[], inband: Step[]): Step[] {
  const seen = new Set(driverSteps.map(stepKey));
  return [...driverSteps, ...inband.filter((s) => !seen.has(stepKey(s)))];
}

/** Config priority overrides, e.g. {'deploy.erase_devices': 0} from [deploy]erase_devices_priority. */
export function applyPriorityOverrides(steps: Step[], overrides: Record<string, number>): Step[] {
  return steps.map((s) => {
    const p = overrides[stepKey(s)] ?? overrides[s.step];
    return p === undefined ? s : { ...s, priority: p };
  });
}

/** Automated cleaning / default deploy: every step with priority > 0, ordered. */
export function automatedSteps(all: Step[]): Step[] {
  return sortSteps(all.filter((s) => s.priority > 0));
}

function findStep(available: Step[], req: RequestedStep, kind: StepKind): Step {
  if (!req || typeof req.interface !== 'string' || typeof req.step !== 'string') {
    throw new InvalidParameterValue(`Invalid ${kind} step ${JSON.stringify(req)}: "interface" and "step" are required`);
  }
  const found = available.find((s) => s.interface === req.interface && s.step === req.step);
  if (!found) {
    throw new InvalidParameterValue(
      `${kind[0]!.toUpperCase()}${kind.slice(1)} step ${stepKey(req)} is not supported by the node's driver or agent. ` +
        `Available: ${available.map(stepKey).sort().join(', ') || 'none'}`,
    );
  }
  const required = Object.entries(found.argsinfo ?? {}).filter(([, v]) => v.required).map(([k]) => k);
  const missing = required.filter((k) => !(req.args && k in req.args));
  if (missing.length) {
    throw new InvalidParameterValue(`${kind} step ${stepKey(req)} is missing required argument(s): ${missing.join(', ')}`);
  }
  return found;
}

/** Manual cleaning: exactly the requested steps, in the given order, validated against what is available. */
export function manualSteps(available: Step[], requested: RequestedStep[], kind: StepKind = 'clean'): Step[] {
  if (!Array.isArray(requested) || requested.length === 0) {
    throw new InvalidParameterValue(`A non-empty list of ${kind} steps is required`);
  }
  return requested.map((r) => {
    const found = findStep(available, r, kind);
    return { ...found, args: r.args ?? {} };
  });
}

/**
 * Deploy: the automated list with user deploy_steps/templates applied: a requested step overrides priority and
 * args of the matching step (a priority-0 step becomes enabled); priority 0 from the user disables it.
 */
export function deployStepsWithUser(available: Step[], requested: RequestedStep[]): Step[] {
  const byKey = new Map(available.map((s) => [stepKey(s), s] as const));
  for (const r of requested) {
    const found = findStep(available, r, 'deploy');
    if (typeof r.priority !== 'number' || r.priority < 0) {
      throw new InvalidParameterValue(`Deploy step ${stepKey(r)} needs a non-negative integer "priority"`);
    }
    byKey.set(stepKey(found), { ...found, priority: r.priority, args: r.args ?? {} });
  }
  return automatedSteps([...byKey.values()]);
}

/**
 * Ironic's _get_all_deployment_steps, the requested half: the user's deploy_steps first, then the steps of the
 * deploy templates matching the node's instance traits that the user did not name (the user wins over a template).
 * deployStepsWithUser then lets these override the driver's steps (priority, args) and drops those with priority 0.
 */
export function withTemplateSteps(user: readonly RequestedStep[], templates: readonly { steps: readonly RequestedStep[] }[]):
  RequestedStep[] {
  const named = new Set(user.map(stepKey));
  const fromTemplates = templates.flatMap((t) => t.steps.map((s) => ({ interface: s.interface, step: s.step,
    args: s.args ?? {}, ...(s.priority !== undefined ? { priority: s.priority } : {}) })));
  return [...user, ...fromTemplates.filter((s) => !named.has(stepKey(s)))];
}

/**
 * The deploy plan from the available steps, the user's deploy_steps and the matching deploy templates. Template
 * steps are validated on their own first so that a bad one is reported as Ironic does (naming the templates).
 */
export function planDeploySteps(available: Step[], user: readonly RequestedStep[],
  templates: readonly { name: string; steps: readonly RequestedStep[] }[]): Step[] {
  if (templates.length) {
    try {
      deployStepsWithUser(available, withTemplateSteps([], templates));
    } catch (e) {
      throw new InvalidParameterValue('Validation of deploy steps from deploy templates matching this node\'s instance ' +
        `traits failed. Matching deploy templates: ${templates.map((t) => t.name).join(',')}. Errors: ${(e as Error).message}`);
    }
  }
  return deployStepsWithUser(available, withTemplateSteps(user, templates));
}

/** The direct deploy interface's out-of-band steps (Ironic's priorities). */
export const DIRECT_DEPLOY_STEPS: Step[] = [
  { interface: 'deploy', step: 'deploy', priority: 100 },
  { interface: 'deploy', step: 'write_image', priority: 80 },
  { interface: 'deploy', step: 'prepare_instance_boot', priority: 60 },
  { interface: 'deploy', step: 'tear_down_agent', priority: 40 },
  { interface: 'deploy', step: 'switch_to_tenant_network', priority: 30 },
  { interface: 'deploy', step: 'boot_instance', priority: 20 },
];
