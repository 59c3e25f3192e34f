/**
 * Issue 21 (bios): the redfish bios interface and the redfish boot mode, secure boot and indicator methods
 * against the lab's Redfish emulator (Bios + Bios/Settings + #Bios.ResetBios + attribute registry, SecureBoot,
 * IndicatorLED), driven through a conductor's API and the real `baremetal` CLI (manual cleaning with bios steps,
 * bios setting list, boot mode set, secure boot on).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { haveBaremetalCli, startTestConductor, type TestConductor } from '../fixtures/conductor.js';
import { DEFAULT_BIOS_ATTRIBUTES, startRedfishEmulator, type RedfishEmulator } from '../fixtures/redfish-emulator.js';

const reason = (await haveBaremetalCli()) ? undefined : 'the baremetal CLI (python3-ironicclient) is not installed';
type Json = Record<string, unknown>;

describe('redfish bios, boot mode, secure boot, indicators (emulator)', { skip: reason ?? false }, () => {
  let fx: TestConductor;
  let emu: RedfishEmulator;
  let uuid: string;
  const sys = () => emu.systems.get('437XR1138R2')!;
  const cli = async (args: string[]): Promise<string> => {
    const r = await fx.cli(args, { timeoutMs: 60_000 });
    assert.equal(r.exitCode, 0, `baremetal ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const node = async (): Promise<Json> => (await fx.api('GET', `/v1/nodes/${uuid}`)).body as Json;
  const settled = async (): Promise<Json> => {
    for (let i = 0; i < 400; i++) {
      const n = await node();
      if (n.reservation === null) return n;
      await new Promise((res) => setTimeout(res, 25));
    }
    throw new Error('node still reserved');
  };
  /** Manual cleaning through the API (the CLI's --wait polls every 2 s), until the node has settled. */
  const cleanApi = async (steps: unknown[]): Promise<Json> => {
    const r = await fx.api('PUT', `/v1/nodes/${uuid}/states/provision`, { target: 'clean', clean_steps: steps });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    for (let i = 0; i < 800; i++) {
      const n = await settled();
      if (n.provision_state !== 'cleaning' && n.provision_state !== 'clean wait') return n;
      await new Promise((res) => setTimeout(res, 25));
    }
    throw new Error('cleaning did not end');
  };

  before(async () => {
    emu = await startRedfishEmulator();
    fx = await startTestConductor({ plain: true });
    const r = await fx.api('POST', '/v1/nodes', { driver: 'redfish', deploy_interface: 'fake', boot_interface: 'fake', name: 'rf-bios',
      driver_info: { redfish_address: emu.url, redfish_username: emu.username, redfish_password: emu.password } });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    uuid = (r.body as Json).uuid as string;
    assert.equal((r.body as Json).bios_interface, 'redfish', "redfish is the redfish type's default bios interface, as in Ironic");
    assert.equal((await fx.api('PUT', `/v1/nodes/${uuid}/states/provision`, { target: 'manage' })).status, 202);
    assert.equal((await settled()).provision_state, 'manageable');
  });
  after(async () => {
    await fx?.close();
    await emu?.stop();
  });

  test("verify (manage) caches the BMC's settings, as Ironic's node_cache_bios_settings", async () => {
    const cached = ((await fx.api('GET', `/v1/nodes/${uuid}/bios`)).body as { bios: Json[] }).bios;
    assert.deepEqual(Object.fromEntries(cached.map((s) => [s.name, s.value])),
      Object.fromEntries(Object.entries(DEFAULT_BIOS_ATTRIBUTES).map(([k, v]) => [k, String(v)])));
  });

  test('apply_configuration PATCHes Bios/Settings, reboots, verifies, caches every attribute with registry fields', async () => {
    const resetsBefore = emu.resets.length;
    const steps = [{ interface: 'bios', step: 'apply_configuration',
      args: { settings: [{ name: 'ProcTurboMode', value: 'Disabled' }, { name: 'NicBootRetries', value: 5 }] } }];
    await cli(['node', 'clean', uuid, '--clean-steps', JSON.stringify(steps), '--wait', '60']);
    assert.equal((await node()).provision_state, 'manageable', String((await node()).last_error));
    assert.equal(sys().bios.ProcTurboMode, 'Disabled');
    assert.equal(sys().bios.NicBootRetries, 5, 'the JSON number reached the BMC as a number');
    assert.ok(emu.requests.some((q) => q.method === 'PATCH' && q.path.endsWith('/Bios/Settings')));
    assert.ok(emu.resets.length > resetsBefore, 'the node was reset to apply the pending settings');

    const listed = JSON.parse(await cli(['node', 'bios', 'setting', 'list', 'rf-bios', '-f', 'json'])) as
      { 'BIOS setting name': string; 'BIOS setting value': string }[];
    const want = { ...DEFAULT_BIOS_ATTRIBUTES, ProcTurboMode: 'Disabled', NicBootRetries: '5' };
    assert.deepEqual(Object.fromEntries(listed.map((s) => [s['BIOS setting name'], s['BIOS setting value']])),
      Object.fromEntries(Object.entries(want).map(([k, v]) => [k, String(v)])));
    const serial = ((await fx.api('GET', `/v1/nodes/${uuid}/bios/SerialNumber`)).body as Record<string, Json>).SerialNumber!;
    assert.deepEqual([serial.attribute_type, serial.read_only, serial.unique, serial.max_length], ['String', true, true, 16]);
    const mode = ((await fx.api('GET', `/v1/nodes/${uuid}/bios/BootMode`)).body as Record<string, Json>).BootMode!;
    assert.deepEqual([mode.attribute_type, mode.allowable_values, mode.reset_required], ['Enumeration', ['Bios', 'Uefi'], true]);
    const retries = ((await fx.api('GET', `/v1/nodes/${uuid}/bios/NicBootRetries`)).body as Record<string, Json>).NicBootRetries!;
    assert.deepEqual([retries.lower_bound, retries.upper_bound], [0, 10]);
  });

  test('a setting the BMC refuses fails the cleaning with its error; factory_reset restores the defaults', async () => {
    let n = await cleanApi([{ interface: 'bios', step: 'apply_configuration', args: { settings: [{ name: 'SerialNumber', value: 'X' }] } }]);
    assert.equal(n.provision_state, 'clean failed');
    assert.match(String(n.last_error), /Redfish BIOS apply configuration failed .*SerialNumber is a read only property/);
    assert.equal((await fx.api('DELETE', `/v1/nodes/${uuid}/maintenance`)).status, 202);
    assert.equal((await fx.api('PUT', `/v1/nodes/${uuid}/states/provision`, { target: 'manage' })).status, 202);
    assert.equal((await settled()).provision_state, 'manageable');

    n = await cleanApi([{ interface: 'bios', step: 'factory_reset' }]);
    assert.equal(n.provision_state, 'manageable', String(n.last_error));
    assert.deepEqual(sys().bios, DEFAULT_BIOS_ATTRIBUTES);
    const cached = ((await fx.api('GET', `/v1/nodes/${uuid}/bios`)).body as { bios: Json[] }).bios;
    assert.equal(cached.find((s) => s.name === 'ProcTurboMode')?.value, 'Enabled');
  });

  test('boot mode and secure boot go to the BMC and into the node; indicators read and set the IndicatorLED', async () => {
    await cli(['node', 'boot', 'mode', 'set', uuid, 'uefi']);
    assert.equal((await settled()).boot_mode, 'uefi');
    assert.equal(sys().Boot.BootSourceOverrideMode, 'UEFI');
    await cli(['node', 'secure', 'boot', 'on', uuid]);
    let n = await settled();
    assert.equal(n.secure_boot, true, String(n.last_error));
    assert.equal(sys().secureBoot, true);

    // The emulator refuses secure boot in legacy mode: the failure lands in last_error, the field stays.
    sys().secureBoot = false;
    sys().Boot.BootSourceOverrideMode = 'Legacy';
    await cli(['node', 'secure', 'boot', 'on', uuid]);
    n = await settled();
    assert.match(String(n.last_error), /Failed to change secure_boot state to 'True'.*requires UEFI/);
    assert.equal(n.secure_boot, true, 'the field is left as it was');

    const ind = ((await fx.api('GET', `/v1/nodes/${uuid}/management/indicators`)).body as { indicators: Json[] }).indicators;
    assert.deepEqual(ind.map((i) => [i.name, i.component, i.readonly]), [['437XR1138R2@system', 'system', false]]);
    assert.equal((await fx.api('PUT', `/v1/nodes/${uuid}/management/indicators/437XR1138R2@system`, { state: 'BLINKING' })).status, 204);
    assert.equal(sys().IndicatorLED, 'Blinking');
    assert.deepEqual((await fx.api('GET', `/v1/nodes/${uuid}/management/indicators/437XR1138R2@system`)).body, { state: 'BLINKING' });
    const bad = await fx.api('PUT', `/v1/nodes/${uuid}/management/indicators/437XR1138R2@system`, { state: 'GLOWING' });
    assert.equal(bad.status, 400);
  });
});
