/**
 * The bios interface's steps inside agent-driven cleaning and deploys (the `direct` deploy interface): offered
 * next to the agent's steps when the node's bios interface has them (priority 0, so only when asked for), and
 * run out-of-band in the conductor (drivers/bios.ts runBiosStep), as Ironic's conductor steps are.
 */
import { BIOS_STEPS, isBiosInterface } from '../drivers/bios.js';
import { runBiosStep } from '../drivers/bios.js';
import type { DriverInterface } from '../drivers/types.js';
import type { NodeTask } from '../drivers/index.js';
import type { OutOfBandStep } from './step-runner.js';
import type { Step } from './steps.js';

/** The bios steps of the node's bios interface (none for no-bios). */
export function driverBiosSteps(task: NodeTask): Step[] {
  const impl: DriverInterface | undefined = task.driver.find('bios');
  if (!isBiosInterface(impl)) return [];
  return BIOS_STEPS.map((s) => ({ ...s, argsinfo: s.argsinfo ? { ...s.argsinfo } : null }));
}

export const BIOS_OUT_OF_BAND: Record<string, OutOfBandStep> = {
  'bios.apply_configuration': async (_ctx, task, step) => { await runBiosStep(task, 'apply_configuration', step.args); },
  'bios.factory_reset': async (_ctx, task, step) => { await runBiosStep(task, 'factory_reset', step.args); },
};
