/**
 * Issue 21 (bios): BIOS settings (1.40/1.74) filled by the fake bios interface's clean steps, boot mode and
 * secure boot (1.76), and management indicators, through the real `baremetal` CLI (node clean with bios steps,
 * node bios setting list/show, node boot mode set, node secure boot on/off; indicators are raw HTTP only:
 * python3-ironicclient 5.0.1 has no indicator command) and raw HTTP for gates and bad input, with Ironic 21.4's
 * status codes and texts. Further cleanings go through the API: the CLI's --wait polls every 2 s.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { haveBaremetalCli, startTestConductor, type TestConductor } from '../fixtures/conductor.js';

const reason = (await haveBaremetalCli()) ? undefined : 'the baremetal CLI (python3-ironicclient) is not installed';

interface NodeView { uuid: string; provision_state: string; boot_mode: string | null; secure_boot: boolean | null; last_error: string | null }

describe('bios settings, boot mode, secure boot, indicators', { skip: reason ?? false }, () => {
  let fx: TestConductor;
  let uuid: string;
  const v = (minor: number): Record<string, string> => ({ 'X-OpenStack-Ironic-API-Version': `1.${minor}` });
  const cli = async (args: string[]): Promise<string> => {
    const r = await fx.cli(args, { timeoutMs: 60_000 });
    assert.equal(r.exitCode, 0, `baremetal ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const node = async (): Promise<NodeView> => (await fx.api('GET', `/v1/nodes/${uuid}`, undefined, v(82))).body as NodeView;
  const errText = (body: unknown): string =>
    (JSON.parse((body as { error_message: string }).error_message) as { faultstring: string }).faultstring;
  /** Waits until the spawned worker has released the node (the field changes are saved before the release). */
  const settled = async (): Promise<NodeView> => {
    for (let i = 0; i < 200; i++) {
      const r = await fx.api('GET', `/v1/nodes/${uuid}?fields=reservation`, undefined, v(82));
      if ((r.body as { reservation: string | null }).reservation === null) return node();
      await new Promise((res) => setTimeout(res, 25));
    }
    throw new Error('node still reserved');
  };

  /** Manual cleaning through the API (the CLI's --wait polls every 2 s), until the node has settled. */
  const cleanApi = async (steps: unknown[]): Promise<NodeView> => {
    const r = await fx.api('PUT', `/v1/nodes/${uuid}/states/provision`, { target: 'clean', clean_steps: steps }, v(82));
    assert.equal(r.status, 202, JSON.stringify(r.body));
    for (let i = 0; i < 400; i++) {
      const n = await settled();
      if (n.provision_state !== 'cleaning' && n.provision_state !== 'clean wait') return n;
      await new Promise((res) => setTimeout(res, 25));
    }
    throw new Error('cleaning did not end');
  };

  before(async () => {
    fx = await startTestConductor();
    uuid = (JSON.parse(await cli(['node', 'create', '--driver', 'fake-hardware', '--name', 'bios-node', '-f', 'json'])) as
      { uuid: string }).uuid;
    assert.equal((await fx.api('PUT', `/v1/nodes/${uuid}/states/provision`, { target: 'manage' })).status, 202);
    assert.equal((await settled()).provision_state, 'manageable');
  });
  after(async () => { await fx?.close(); });

  test('bios: the CLI runs bios.apply_configuration by manual cleaning, then lists and shows the cached settings', async () => {
    const steps = [{ interface: 'bios', step: 'apply_configuration',
      args: { settings: [{ name: 'ProcTurboMode', value: 'Disabled' }, { name: 'NumaEnabled', value: true }, { name: 'Slots', value: 4 }] } }];
    await cli(['node', 'clean', uuid, '--clean-steps', JSON.stringify(steps), '--wait', '30']);
    assert.equal((await node()).provision_state, 'manageable');
    const listed = JSON.parse(await cli(['node', 'bios', 'setting', 'list', 'bios-node', '-f', 'json'])) as
      { 'BIOS setting name': string; 'BIOS setting value': string }[];
    assert.deepEqual(listed.map((s) => [s['BIOS setting name'], s['BIOS setting value']]),
      [['NumaEnabled', 'True'], ['ProcTurboMode', 'Disabled'], ['Slots', '4']]);
    const shown = JSON.parse(await cli(['node', 'bios', 'setting', 'show', uuid, 'ProcTurboMode', '-f', 'json'])) as Record<string, unknown>;
    assert.equal(shown.name, 'ProcTurboMode');
    assert.equal(shown.value, 'Disabled');
    const long = JSON.parse(await cli(['node', 'bios', 'setting', 'list', uuid, '--long', '-f', 'json'])) as Record<string, unknown>[];
    assert.ok('Read Only' in (long[0] ?? {}) || 'read_only' in (long[0] ?? {}), JSON.stringify(long[0]));

    // A second configuration replaces the set (Ironic's fake bios syncs the table to what it applied).
    const again = [{ interface: 'bios', step: 'apply_configuration', args: { settings: [{ name: 'ProcTurboMode', value: 'Enabled' }] } }];
    assert.equal((await cleanApi(again)).provision_state, 'manageable');
    let r = await fx.api('GET', `/v1/nodes/${uuid}/bios`, undefined, v(40));
    assert.equal(r.status, 200);
    const items = (r.body as { bios: Record<string, unknown>[] }).bios;
    assert.deepEqual(items.map((s) => [s.name, s.value]), [['ProcTurboMode', 'Enabled']]);
    assert.deepEqual(Object.keys(items[0]!).sort(), ['created_at', 'links', 'name', 'updated_at', 'value']);
    assert.notEqual(items[0]!.updated_at, null, 'a changed value gets updated_at');
    assert.equal((items[0]!.links as { href: string }[])[0]!.href, `${fx.url}/v1/nodes/${uuid}/bios/ProcTurboMode`);

    assert.equal((await cleanApi([{ interface: 'bios', step: 'factory_reset' }])).provision_state, 'manageable');
    r = await fx.api('GET', `/v1/nodes/${uuid}/bios`, undefined, v(40));
    assert.deepEqual(r.body, { bios: [] });
  });

  test('bios: microversion gates, detail/fields, unknown settings and bad input', async () => {
    const steps = [{ interface: 'bios', step: 'apply_configuration', args: { settings: [{ name: 'A', value: '1' }, { name: 'B', value: '2' }] } }];
    assert.equal((await cleanApi(steps)).provision_state, 'manageable');
    let r = await fx.api('GET', `/v1/nodes/${uuid}/bios`, undefined, v(39));
    assert.equal(r.status, 404, 'bios is 1.40');
    assert.equal((await fx.api('GET', `/v1/nodes/${uuid}/bios/A`, undefined, v(39))).status, 404);
    r = await fx.api('GET', `/v1/nodes/${uuid}/bios?detail=true`, undefined, v(73));
    assert.equal(r.status, 400);
    assert.equal(errText(r.body), 'Invalid query parameter ?detail=true received.');
    r = await fx.api('GET', `/v1/nodes/${uuid}/bios?detail=true`, undefined, v(74));
    assert.equal(r.status, 200);
    const detailed = (r.body as { bios: Record<string, unknown>[] }).bios[0]!;
    for (const k of ['attribute_type', 'allowable_values', 'lower_bound', 'max_length', 'min_length', 'read_only', 'reset_required',
      'unique', 'upper_bound']) assert.ok(k in detailed, k);
    r = await fx.api('GET', `/v1/nodes/${uuid}/bios?fields=name`, undefined, v(74));
    assert.deepEqual((r.body as { bios: Record<string, unknown>[] }).bios.map((s) => s.name), ['A', 'B']);
    assert.ok(!('value' in (r.body as { bios: Record<string, unknown>[] }).bios[0]!));
    r = await fx.api('GET', `/v1/nodes/${uuid}/bios?fields=name&detail=true`, undefined, v(74));
    assert.equal(errText(r.body), 'Can not specify ?detail=True and fields in the same request.');
    r = await fx.api('GET', `/v1/nodes/${uuid}/bios/A`, undefined, v(73));
    assert.deepEqual(Object.keys((r.body as Record<string, Record<string, unknown>>).A!).sort(),
      ['created_at', 'links', 'name', 'updated_at', 'value']);
    r = await fx.api('GET', `/v1/nodes/${uuid}/bios/A`, undefined, v(74));
    assert.ok('reset_required' in (r.body as Record<string, Record<string, unknown>>).A!);
    r = await fx.api('GET', `/v1/nodes/${uuid}/bios/Nope`, undefined, v(82));
    assert.equal(r.status, 404);
    assert.equal(errText(r.body), `Node ${uuid} doesn't have a BIOS setting 'Nope'`);
    r = await fx.api('GET', '/v1/nodes/no-such-node/bios', undefined, v(82));
    assert.equal(r.status, 404);

    // apply_configuration without settings fails the cleaning (the step's error in last_error), changing nothing.
    const n = await cleanApi([{ interface: 'bios', step: 'apply_configuration', args: {} }]);
    assert.equal(n.provision_state, 'clean failed');
    assert.match(n.last_error ?? '', /requires the argument "settings"/);
    r = await fx.api('GET', `/v1/nodes/${uuid}/bios`, undefined, v(82));
    assert.deepEqual((r.body as { bios: { name: string }[] }).bios.map((s) => s.name), ['A', 'B']);
    assert.equal((await fx.api('DELETE', `/v1/nodes/${uuid}/maintenance`, undefined, v(82))).status, 202);
    assert.equal((await fx.api('PUT', `/v1/nodes/${uuid}/states/provision`, { target: 'manage' }, v(82))).status, 202);
    assert.equal((await settled()).provision_state, 'manageable');
  });

  test('boot mode and secure boot: the CLI sets them (202, fields updated); gates, bad targets', async () => {
    await cli(['node', 'boot', 'mode', 'set', uuid, 'uefi']);
    assert.equal((await settled()).boot_mode, 'uefi');
    await cli(['node', 'secure', 'boot', 'on', uuid]);
    assert.equal((await settled()).secure_boot, true);
    await cli(['node', 'secure', 'boot', 'off', uuid]);
    assert.equal((await settled()).secure_boot, false);

    let r = await fx.api('PUT', `/v1/nodes/${uuid}/states/boot_mode`, { target: 'bios' }, v(76));
    assert.equal(r.status, 202);
    assert.equal(r.headers.get('location'), `${fx.url}/v1/nodes/${uuid}/states`);
    assert.equal((await settled()).boot_mode, 'bios');
    r = await fx.api('PUT', `/v1/nodes/${uuid}/states/boot_mode`, { target: 'uefi' }, v(75));
    assert.equal(r.status, 404);
    assert.equal(errText(r.body), 'This endpoint is supported starting with the API version 1.76');
    r = await fx.api('PUT', `/v1/nodes/${uuid}/states/secure_boot`, { target: true }, v(75));
    assert.equal(r.status, 404);
    r = await fx.api('PUT', `/v1/nodes/${uuid}/states/boot_mode`, { target: 'legacy' }, v(76));
    assert.equal(r.status, 400);
    assert.equal(errText(r.body), 'Invalid boot mode legacy requested for node. Allowed boot modes are: bios, uefi');
    r = await fx.api('PUT', `/v1/nodes/${uuid}/states/boot_mode`, {}, v(76));
    assert.equal(r.status, 400);
    r = await fx.api('PUT', `/v1/nodes/${uuid}/states/secure_boot`, { target: 'maybe' }, v(76));
    assert.equal(r.status, 400);
    assert.equal(errText(r.body), 'Expected boolean for target: maybe');
    r = await fx.api('PUT', `/v1/nodes/${uuid}/states/secure_boot`, { target: null }, v(76));
    assert.equal(r.status, 400);
    r = await fx.api('PUT', '/v1/nodes/no-such-node/states/boot_mode', { target: 'uefi' }, v(76));
    assert.equal(r.status, 404);
    const n = await settled();
    assert.equal(n.boot_mode, 'bios', 'refused requests changed nothing');
    assert.equal(n.secure_boot, false);
  });

  test('indicators: list with links, get a state, set refused by the fake management (as Ironic), bad names', async () => {
    let r = await fx.api('GET', `/v1/nodes/${uuid}/management/indicators`, undefined, v(63));
    assert.equal(r.status, 200);
    const list = (r.body as { indicators: Record<string, unknown>[] }).indicators;
    assert.deepEqual(list.map((i) => [i.name, i.component, i.readonly, i.states]), [
      ['led-0@chassis', 'chassis', true, ['OFF', 'ON']], ['led@system', 'system', false, ['BLINKING', 'OFF', 'ON']]]);
    assert.equal((list[0]!.links as { href: string }[])[0]!.href, `${fx.url}/v1/nodes/${uuid}/management/indicators/led-0@chassis`);
    r = await fx.api('GET', `/v1/nodes/${uuid}/management/indicators/led@system`, undefined, v(63));
    assert.deepEqual(r.body, { state: 'ON' });
    r = await fx.api('GET', `/v1/nodes/${uuid}/management/indicators/led@disk`, undefined, v(63));
    assert.equal(r.status, 400);
    assert.equal(errText(r.body), 'Invalid component disk specified.');
    r = await fx.api('GET', `/v1/nodes/${uuid}/management/indicators/led`, undefined, v(63));
    assert.equal(r.status, 400);
    assert.equal(errText(r.body), 'Malformed indicator name "led"');
    r = await fx.api('PUT', `/v1/nodes/${uuid}/management/indicators/led@system`, { state: 'BLINKING' }, v(63));
    assert.equal(r.status, 400);
    assert.match(errText(r.body), /does not support set_indicator_state/);
  });
});
