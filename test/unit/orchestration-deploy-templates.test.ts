/**
 * Deploy templates folded into the deploy steps as Ironic's _get_all_deployment_steps: a template step overrides
 * the driver step's priority and args, priority 0 disables it, the user's deploy_steps win over a template, and a
 * template naming a step nobody offers is refused.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  deployStepsWithUser, DIRECT_DEPLOY_STEPS, mergeSteps, planDeploySteps, stepKey, withTemplateSteps, type Step,
} from '../../conductor/orchestration/steps.js';
import { validateTemplate } from '../../conductor/services/deploy-templates.js';

const agent: Step[] = [
  { interface: 'deploy', step: 'erase_devices_metadata', priority: 0 },
  { interface: 'raid', step: 'apply_configuration', priority: 0, argsinfo: { raid_config: { description: 'x', required: true } } },
  { interface: 'deploy', step: 'write_image', priority: 80 },
];
const available = mergeSteps(DIRECT_DEPLOY_STEPS, agent);

test('template steps: enable a disabled step with its args and priority, disable a default one with priority 0', () => {
  const templates = [
    { steps: [{ interface: 'raid', step: 'apply_configuration', args: { raid_config: { logical_disks: [] } }, priority: 90 }] },
    { steps: [{ interface: 'deploy', step: 'boot_instance', args: {}, priority: 0 }] },
  ];
  const steps = deployStepsWithUser(available, withTemplateSteps([], templates));
  const keys = steps.map(stepKey);
  assert.deepEqual(keys, ['deploy.deploy', 'raid.apply_configuration', 'deploy.write_image', 'deploy.prepare_instance_boot',
    'deploy.tear_down_agent', 'deploy.switch_to_tenant_network']);
  const raid = steps.find((s) => s.step === 'apply_configuration');
  assert.deepEqual(raid?.args, { raid_config: { logical_disks: [] } });
  assert.equal(raid?.priority, 90);
});

test("the user's deploy_steps win over a template naming the same step; other template steps still apply", () => {
  const templates = [{ steps: [
    { interface: 'deploy', step: 'erase_devices_metadata', args: {}, priority: 95 },
    { interface: 'deploy', step: 'tear_down_agent', args: {}, priority: 0 },
  ] }];
  const user = [{ interface: 'deploy', step: 'erase_devices_metadata', args: {}, priority: 0 }];
  const merged = withTemplateSteps(user, templates);
  assert.deepEqual(merged.map((s) => `${stepKey(s)}:${String(s.priority)}`), ['deploy.erase_devices_metadata:0', 'deploy.tear_down_agent:0']);
  const keys = deployStepsWithUser(available, merged).map(stepKey);
  assert.equal(keys.includes('deploy.erase_devices_metadata'), false, 'the user disabled it');
  assert.equal(keys.includes('deploy.tear_down_agent'), false, 'the template disabled it');
});

test('a template step that no interface offers, or that lacks a required argument, fails the deploy plan', () => {
  assert.throws(() => deployStepsWithUser(available, withTemplateSteps([], [{ steps: [{ interface: 'bios', step: 'nope', args: {}, priority: 1 }] }])),
    /bios\.nope is not supported/);
  assert.throws(() => deployStepsWithUser(available, withTemplateSteps([], [{ steps: [{ interface: 'raid', step: 'apply_configuration', args: {}, priority: 1 }] }])),
    /missing required argument\(s\): raid_config/);
  assert.throws(() => planDeploySteps(available, [], [{ name: 'CUSTOM_BAD', steps: [{ interface: 'bios', step: 'nope', args: {}, priority: 1 }] }]),
    /Validation of deploy steps from deploy templates matching this node's instance traits failed\. Matching deploy templates: CUSTOM_BAD\. Errors: Deploy step bios\.nope is not supported/);
  assert.deepEqual(planDeploySteps(available, [], []).map(stepKey), deployStepsWithUser(available, []).map(stepKey));
});

test('template validation: trait name, step schema, duplicates (Ironic texts)', () => {
  const step = { interface: 'deploy', step: 'write_image', args: {}, priority: 10 };
  assert.equal(validateTemplate({ name: 'CUSTOM_OK', steps: [{ ...step, priority: '20' }] }).steps[0]?.priority, 20);
  assert.throws(() => validateTemplate({ name: 'not_a_trait', steps: [step] }), /Schema error for template: "not_a_trait" is not valid/);
  assert.throws(() => validateTemplate({ name: 'CUSTOM_A', steps: [] }), /\[\] is too short/);
  assert.throws(() => validateTemplate({ name: 'CUSTOM_A', steps: [{ ...step, interface: 'boot' }] }), /is not one of/);
  assert.throws(() => validateTemplate({ name: 'CUSTOM_A', steps: [{ ...step, priority: -1 }] }), /not valid under any of the given schemas/);
  assert.throws(() => validateTemplate({ name: 'CUSTOM_A', steps: [{ interface: 'deploy', step: 'x', priority: 1 }] }), /'args' is a required property/);
  assert.throws(() => validateTemplate({ name: 'CUSTOM_A', steps: [step, { ...step, priority: 5 }] }),
    /Duplicate deploy steps\. .*Duplicates: interface: deploy, step: write_image/);
  assert.throws(() => validateTemplate({ name: 'CUSTOM_A', steps: [step], bogus: 1 }), /Additional properties are not allowed \('bogus' was unexpected\)/);
});
