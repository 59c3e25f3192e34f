/**
 * The bios steps in agent-driven plans (orchestration/bios-steps.ts): offered next to the agent's steps with
 * priority 0 (never in an automated plan), selectable by manual cleaning and deploy_steps with their required
 * `settings` argument, and run out-of-band by the clean and deploy flows.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BIOS_STEPS } from '../../conductor/drivers/bios.js';
import { cleanFlow, deployFlow } from '../../conductor/orchestration/direct.js';
import { automatedSteps, manualSteps, mergeSteps, planDeploySteps, type Step } from '../../conductor/orchestration/steps.js';

const bios: Step[] = BIOS_STEPS.map((s) => ({ ...s, argsinfo: s.argsinfo ? { ...s.argsinfo } : null }));
const agent: Step[] = [{ interface: 'deploy', step: 'erase_devices_metadata', priority: 99, requires_ramdisk: true }];

test('bios steps: manual cleaning picks them with their args; automated plans never include them', () => {
  const settings = [{ name: 'ProcTurboMode', value: 'Disabled' }];
  const plan = manualSteps(mergeSteps(bios, agent), [{ interface: 'bios', step: 'apply_configuration', args: { settings } },
    { interface: 'bios', step: 'factory_reset' }]);
  assert.deepEqual(plan.map((s) => [s.interface, s.step, s.args]), [['bios', 'apply_configuration', { settings }], ['bios', 'factory_reset', {}]]);
  assert.throws(() => manualSteps(mergeSteps(bios, agent), [{ interface: 'bios', step: 'apply_configuration' }]),
    /missing required argument\(s\): settings/);
  assert.throws(() => manualSteps(agent, [{ interface: 'bios', step: 'factory_reset' }]), /not supported by the node's driver or agent/,
    'without a bios interface (no-bios) the step is not offered');
  assert.deepEqual(automatedSteps(mergeSteps(bios, agent)).map((s) => s.step), ['erase_devices_metadata']);
  const deploy = planDeploySteps(mergeSteps(bios, agent), [{ interface: 'bios', step: 'factory_reset', priority: 95 }], []);
  assert.deepEqual(deploy.map((s) => `${s.interface}.${s.step}`), ['deploy.erase_devices_metadata', 'bios.factory_reset']);
});

test('bios steps: both flows run them out-of-band', () => {
  for (const flow of [cleanFlow, deployFlow]) {
    assert.equal(typeof flow.outOfBand['bios.apply_configuration'], 'function');
    assert.equal(typeof flow.outOfBand['bios.factory_reset'], 'function');
  }
});
