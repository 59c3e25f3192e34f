import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  agentSteps, applyPriorityOverrides, automatedSteps, deployStepsWithUser, DIRECT_DEPLOY_STEPS, manualSteps,
  mergeSteps, sortSteps, type Step,
} from '../../conductor/orchestration/steps.js';
import type { StepsResult } from '../../protocol/agent-api.js';

const agentClean: StepsResult = {
  clean_steps: {
    GenericHardwareManager: [
      { step: 'erase_devices', priority: 10, interface: 'deploy', reboot_requested: false, abortable: true },
      { step: 'erase_devices_metadata', priority: 99, interface: 'deploy', reboot_requested: false, abortable: true },
      { step: 'delete_configuration', priority: 0, interface: 'raid', reboot_requested: false, abortable: true },
      { step: 'create_configuration', priority: 0, interface: 'raid', reboot_requested: false, abortable: true,
        argsinfo: { create_root_volume: { description: 'x', required: false } } },
    ],
    AcmeManager: [{ step: 'acme_reset', priority: 50, interface: 'management', reboot_requested: true }],
  },
  hardware_manager_version: { generic_hardware_manager: '1.2' },
};

test('agent steps are flattened and clean steps require the ramdisk', () => {
  const s = agentSteps(agentClean, 'clean');
  assert.equal(s.length, 5);
  assert.ok(s.every((x) => x.requires_ramdisk === true));
  assert.equal(s.find((x) => x.step === 'acme_reset')?.reboot_requested, true);
});

test('automated cleaning keeps priority > 0, sorted by priority', () => {
  const s = automatedSteps(agentSteps(agentClean, 'clean'));
  assert.deepEqual(s.map((x) => x.step), ['erase_devices_metadata', 'acme_reset', 'erase_devices']);
});

test('priority overrides disable or reorder steps', () => {
  const s = automatedSteps(applyPriorityOverrides(agentSteps(agentClean, 'clean'), { erase_devices: 0, 'deploy.erase_devices_metadata': 5 }));
  assert.deepEqual(s.map((x) => x.step), ['acme_reset', 'erase_devices_metadata']);
});

test('ties are broken by interface priority (power > management > deploy > bios > raid)', () => {
  const steps: Step[] = [
    { interface: 'raid', step: 'a', priority: 10 },
    { interface: 'deploy', step: 'b', priority: 10 },
    { interface: 'power', step: 'c', priority: 10 },
    { interface: 'bios', step: 'd', priority: 10 },
    { interface: 'management', step: 'e', priority: 10 },
  ];
  assert.deepEqual(sortSteps(steps).map((x) => x.interface), ['power', 'management', 'deploy', 'bios', 'raid']);
});

test('out-of-band steps win over in-band duplicates', () => {
  const inband: Step[] = [{ interface: 'deploy', step: 'write_image', priority: 0 }, { interface: 'deploy', step: 'erase_devices_metadata', priority: 0 }];
  const merged = mergeSteps(DIRECT_DEPLOY_STEPS, inband);
  assert.equal(merged.filter((s) => s.step === 'write_image').length, 1);
  assert.equal(merged.find((s) => s.step === 'write_image')?.priority, 80);
  assert.deepEqual(automatedSteps(merged).map((s) => s.step),
    ['deploy', 'write_image', 'prepare_instance_boot', 'tear_down_agent', 'switch_to_tenant_network', 'boot_instance']);
});

test('manual steps keep the given order and args and are validated', () => {
  const avail = agentSteps(agentClean, 'clean');
  const s = manualSteps(avail, [
    { interface: 'raid', step: 'create_configuration', args: { create_root_volume: true } },
    { interface: 'deploy', step: 'erase_devices_metadata' },
  ]);
  assert.deepEqual(s.map((x) => x.step), ['create_configuration', 'erase_devices_metadata']);
  assert.deepEqual(s[0]!.args, { create_root_volume: true });
  assert.throws(() => manualSteps(avail, [{ interface: 'deploy', step: 'nope' }]), /deploy\.nope is not supported/);
  assert.throws(() => manualSteps(avail, []), /non-empty/);
  assert.throws(() => manualSteps(avail, [{ step: 'x' } as never]), /"interface" and "step" are required/);
});

test('required step arguments are enforced', () => {
  const avail: Step[] = [{ interface: 'raid', step: 'apply_configuration', priority: 0, argsinfo: { raid_config: { description: 'cfg', required: true } } }];
  assert.throws(() => manualSteps(avail, [{ interface: 'raid', step: 'apply_configuration' }], 'deploy'), /raid_config/);
  assert.equal(manualSteps(avail, [{ interface: 'raid', step: 'apply_configuration', args: { raid_config: {} } }], 'deploy').length, 1);
});

test('user deploy steps enable priority-0 steps and can disable others', () => {
  const avail = mergeSteps(DIRECT_DEPLOY_STEPS, [{ interface: 'deploy', step: 'erase_devices_metadata', priority: 0 }]);
  const s = deployStepsWithUser(avail, [
    { interface: 'deploy', step: 'erase_devices_metadata', priority: 90, args: {} },
    { interface: 'deploy', step: 'switch_to_tenant_network', priority: 0 },
  ]);
  assert.deepEqual(s.map((x) => x.step), ['deploy', 'erase_devices_metadata', 'write_image', 'prepare_instance_boot', 'tear_down_agent', 'boot_instance']);
  assert.throws(() => deployStepsWithUser(avail, [{ interface: 'deploy', step: 'erase_devices_metadata' }]), /priority/);
});
