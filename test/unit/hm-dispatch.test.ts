import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  CleaningError, DeploymentError, HardwareManagerMethodNotFound, HardwareManagerNotFound,
  IncompatibleHardwareMethodError, VersionMismatch, type AgentStep,
} from '../../protocol/agent-api.js';
import { commands as cleanCommands } from '../../agent/extensions/clean.js';
import { commands as deployCommands } from '../../agent/extensions/deploy.js';
import { hardwareContext } from '../../hardware-managers/context.js';
import {
  dispatchToAll, dispatchToManagers, getCurrentVersions, getManagers, loadManagers, resetManagers,
} from '../../hardware-managers/dispatch.js';
import {
  StepVersionMismatch, applyPriorityOverrides, collectSteps, deduplicateSteps, executeStep, priorityOverrides,
} from '../../hardware-managers/steps.js';
import { HardwareSupport, type HardwareManager, type StepCall } from '../../hardware-managers/types.js';

afterEach(() => resetManagers());

const step = (name: string, priority: number, iface = 'deploy'): AgentStep => ({
  step: name, priority, interface: iface, reboot_requested: false, abortable: true,
});

function mgr(name: string, support: number, extra: Record<string, unknown> = {}): HardwareManager {
  return { name, versionName: name.toLowerCase(), version: '1.0', evaluateHardwareSupport: () => support, ...extra };
}

const ctx = { progress: () => undefined, signal: new AbortController().signal };

test('managers are sorted by support (stable), NONE and throwing ones dropped, initialize called in order', async () => {
  const inits: string[] = [];
  const init = (n: string) => async () => void inits.push(n);
  await loadManagers({
    builtins: [
      mgr('Generic', HardwareSupport.GENERIC, { initialize: init('Generic') }),
      mgr('None', HardwareSupport.NONE),
      mgr('Broken', 2, { evaluateHardwareSupport: () => { throw new Error('boom'); } }),
      mgr('VendorA', HardwareSupport.MAINLINE, { initialize: init('VendorA') }),
      mgr('Operator', HardwareSupport.SERVICE_PROVIDER, { initialize: init('Operator') }),
      mgr('VendorB', HardwareSupport.MAINLINE, { initialize: init('VendorB') }),
      mgr('BadInit', 5, { initialize: async () => { throw new Error('no'); } }),
    ],
  });
  const names = (await getManagers()).map((m) => m.name);
  assert.deepEqual(names, ['Operator', 'VendorA', 'VendorB', 'Generic']);
  assert.deepEqual(inits, ['Operator', 'VendorA', 'VendorB', 'Generic']);
  assert.deepEqual(await getCurrentVersions(), { operator: '1.0', vendora: '1.0', vendorb: '1.0', generic: '1.0' });
  // cached: a second load with other options changes nothing until reset
  await loadManagers({ builtins: [mgr('Other', 1)] });
  assert.equal((await getManagers()).length, 4);
});

test('no applicable manager → HardwareManagerNotFound', async () => {
  await assert.rejects(loadManagers({ builtins: [mgr('None', 0)] }), HardwareManagerNotFound);
});

test('dispatchToManagers: missing method and incompatible pass on, other errors stop, none → MethodNotFound', async () => {
  const calls: string[] = [];
  await loadManagers({
    builtins: [
      mgr('Generic', 1, {
        work: (x: number) => { calls.push('Generic'); return `generic ${x}`; },
        fails: () => { throw new Error('generic should not be reached'); },
      }),
      mgr('Vendor', 2, {
        work: () => { calls.push('Vendor'); throw new IncompatibleHardwareMethodError('not mine'); },
        fails: () => { throw new Error('vendor broke'); },
      }),
      mgr('Plugin', 3, {
        // plugins that cannot import our class signal with the code alone
        work: () => { calls.push('Plugin'); throw Object.assign(new Error('no'), { code: 'IncompatibleHardwareMethodError' }); },
      }),
    ],
  });
  assert.equal(await dispatchToManagers('work', 7), 'generic 7');
  assert.deepEqual(calls, ['Plugin', 'Vendor', 'Generic']);
  await assert.rejects(dispatchToManagers('fails'), /vendor broke/);
  await assert.rejects(dispatchToManagers('nothing'), (e: unknown) =>
    e instanceof HardwareManagerMethodNotFound && e.details === 'Could not find method: nothing');
});

test('dispatchToAll: a result per manager, incompatible skipped, empty → MethodNotFound', async () => {
  await loadManagers({
    builtins: [
      mgr('Generic', 1, { info: () => 'g' }),
      mgr('Vendor', 2, { info: async () => 'v' }),
      mgr('Picky', 3, { info: () => { throw new IncompatibleHardwareMethodError(); } }),
    ],
  });
  assert.deepEqual(await dispatchToAll('info'), { Vendor: 'v', Generic: 'g' });
  await assert.rejects(dispatchToAll('nothing'), HardwareManagerMethodNotFound);
});

test('deduplicateSteps: support desc, then priority desc, then manager name asc', () => {
  const support = new Map([['Generic', 1], ['VendorA', 2], ['VendorB', 2]]);
  const out = deduplicateSteps(
    {
      Generic: [step('erase_devices', 10), step('erase_devices_metadata', 99), step('only_generic', 0)],
      VendorA: [step('erase_devices', 5), step('tie', 3)],
      VendorB: [step('erase_devices', 50), step('tie', 3), step('erase_devices_metadata', 1)],
    },
    support,
  );
  assert.deepEqual(out, {
    Generic: [step('only_generic', 0)],
    VendorB: [step('erase_devices', 50), step('erase_devices_metadata', 1)],
    VendorA: [step('tie', 3)],
  });
});

test('priority overrides from driver_info beat driver_internal_info; interface.step beats step', () => {
  const node = {
    driver_internal_info: { agent_step_priority_overrides: 'deploy.erase_devices:0,erase_devices_metadata:42' },
    driver_info: { agent_step_priority_overrides: { erase_devices_metadata: '7', 'raid.create_configuration': 20, bad: -1 } },
  };
  const o = priorityOverrides(node);
  assert.deepEqual(Object.fromEntries(o), { 'deploy.erase_devices': 0, erase_devices_metadata: 7, 'raid.create_configuration': 20 });
  const out = applyPriorityOverrides(
    { G: [step('erase_devices', 10), step('erase_devices_metadata', 99), step('create_configuration', 0, 'raid')] },
    o,
  );
  assert.deepEqual(out.G?.map((s) => s.priority), [0, 7, 20]);
});

test('collectSteps returns IPA get_*_steps shape with versions', async () => {
  await loadManagers({
    builtins: [
      mgr('GenericHardwareManager', 1, { getCleanSteps: () => [step('erase_devices', 10)], getDeploySteps: () => [step('write_image', 0)] }),
      mgr('AcmeHardwareManager', 2, { getCleanSteps: () => [step('erase_devices', 10), step('acme_reset', 30)] }),
    ],
  });
  const node = { driver_info: { agent_step_priority_overrides: { acme_reset: 0 } } };
  assert.deepEqual(await collectSteps('clean', node, []), {
    clean_steps: { AcmeHardwareManager: [step('erase_devices', 10), step('acme_reset', 0)] },
    hardware_manager_version: { generichardwaremanager: '1.0', acmehardwaremanager: '1.0' },
  });
  const deploy = await collectSteps('deploy', {}, []);
  assert.deepEqual(deploy.deploy_steps, { GenericHardwareManager: [step('write_image', 0)] });
});

test('executeStep dispatches with node, ports, merged args and returns IPA result shape', async () => {
  let seen: StepCall | undefined;
  await loadManagers({
    builtins: [mgr('G', 1, { do_it: async (c: StepCall) => { seen = c; return { ok: true }; }, nothing: async () => undefined })],
  });
  const node = { uuid: 'n1' };
  const st = { step: 'do_it', priority: 10, interface: 'deploy', args: { a: 1, b: 2 } };
  const r = await executeStep('clean', { step: st, node, ports: [{ address: 'aa' }], b: 'extra', c: 3, clean_version: null }, ctx);
  assert.deepEqual(r, { clean_result: { ok: true }, clean_step: st });
  assert.deepEqual(seen?.args, { b: 2, c: 3, a: 1 });
  assert.deepEqual(seen?.ports, [{ address: 'aa' }]);
  assert.equal(hardwareContext().node, node);
  assert.deepEqual(await executeStep('deploy', { step: { step: 'nothing' } }, ctx), { deploy_result: null, deploy_step: { step: 'nothing' } });
});

test('executeStep: version mismatch is VersionMismatch (409) carrying CLEAN_VERSION_MISMATCH', async () => {
  await loadManagers({ builtins: [mgr('G', 1, { do_it: () => 'ran' })] });
  const st = { step: 'do_it' };
  assert.deepEqual(await executeStep('clean', { step: st, clean_version: { g: '1.0' } }, ctx), { clean_result: 'ran', clean_step: st });
  await assert.rejects(executeStep('clean', { step: st, clean_version: { g: '0.9' } }, ctx), (e: unknown) => {
    assert.ok(e instanceof VersionMismatch && e instanceof StepVersionMismatch);
    assert.equal(e.commandStatus, 'CLEAN_VERSION_MISMATCH');
    assert.deepEqual(e.serialize(), {
      type: 'VersionMismatch', code: 409,
      message: 'Hardware managers version mismatch, reload agent with correct version',
      details: "Current versions: {'g': '1.0'}, versions used by ironic: {'g': '0.9'}",
    });
    return true;
  });
  await assert.rejects(executeStep('deploy', { step: st, deploy_version: { g: '1.0', other: '2' } }, ctx), VersionMismatch);
});

test('executeStep: agent errors pass through, others are wrapped as Cleaning/DeploymentError', async () => {
  await loadManagers({
    builtins: [mgr('G', 1, {
      rest: () => { throw new HardwareManagerNotFound('rest error'); },
      plain: () => { throw new TypeError('bad thing'); },
    })],
  });
  await assert.rejects(executeStep('clean', { step: { step: 'rest' } }, ctx), HardwareManagerNotFound);
  await assert.rejects(executeStep('clean', { step: { step: 'plain' } }, ctx), (e: unknown) =>
    e instanceof CleaningError && e.details === 'Unexpected exception performing clean step plain. TypeError: bad thing');
  await assert.rejects(executeStep('deploy', { step: { step: 'plain' } }, ctx), DeploymentError);
  await assert.rejects(executeStep('clean', { step: { step: 'missing' } }, ctx), HardwareManagerMethodNotFound);
  await assert.rejects(executeStep('clean', { step: { priority: 1 } }, ctx), /Malformed clean_step/);
});

test('clean and deploy extensions expose IPA commands (sync get, async execute) with validated params', async () => {
  await loadManagers({
    builtins: [mgr('G', 1, { getCleanSteps: () => [step('s', 1)], getDeploySteps: () => [], s: () => 42 })],
  });
  const get = cleanCommands.get_clean_steps;
  const exec = cleanCommands.execute_clean_step;
  assert.ok(get && exec && deployCommands.get_deploy_steps && deployCommands.execute_deploy_step);
  assert.equal(get.async, false);
  assert.equal(exec.async, true);
  assert.equal(exec.params?.safeParse({ node: {}, ports: [] }).success, false);
  const params = exec.params?.parse({ step: { step: 's' }, node: {}, ports: [], clean_version: { g: '1.0' } });
  const run = exec.run as (p: unknown, c: unknown) => Promise<unknown>;
  assert.deepEqual(await run(params, ctx), { clean_result: 42, clean_step: { step: 's' } });
  const getRun = get.run as (p: unknown, c: unknown) => Promise<unknown>;
  assert.deepEqual(await getRun({ node: {}, ports: [] }, ctx), {
    clean_steps: { G: [step('s', 1)] }, hardware_manager_version: { g: '1.0' },
  });
});
