/**
 * Vendor passthru (node and driver level, sync/async, http_methods, attach, a plugin's methods), inject NMI
 * (ipmitool against ipmi_sim, redfish against the emulator) and the legacy agent routes, over real HTTP with the
 * `baremetal` CLI where it has a command.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { startIpmiSim, type IpmiSim } from '../../lab/ipmi-sim.js';
import { ConductorClient } from '../../agent/conductor-client.js';
import { fakeDeploy } from '../../conductor/drivers/fake.js';
import type { DeployInterface, DriverRegistry } from '../../conductor/drivers/index.js';
import { haveBaremetalCli, startTestConductor, type TestConductor } from '../fixtures/conductor.js';
import { startRedfishEmulator, type RedfishEmulator } from '../fixtures/redfish-emulator.js';

const PLUGIN = fileURLToPath(new URL('../../conductor/drivers/examples/vendor-hello.ts', import.meta.url));
const noCli = (await haveBaremetalCli()) ? false : 'baremetal CLI not installed';

/** A deploy interface that parks the node in `wait call-back`, where agents look up and heartbeat. */
const waitingDeploy: DeployInterface = { ...fakeDeploy, name: 'test-wait', async deploy() { return 'wait'; } };
function testDrivers(reg: DriverRegistry): void {
  reg.registerInterface('deploy', waitingDeploy);
  const fake = reg.registeredHardwareTypes().find((t) => t.name === 'fake-hardware');
  if (fake) reg.registerHardwareType({ ...fake, supported: { ...fake.supported, deploy: ['fake', 'test-wait'] } });
}

let fx: TestConductor;
let sim: IpmiSim;
let emu: RedfishEmulator;
before(async () => {
  fx = await startTestConductor({ config: { vendor_plugins: [PLUGIN], automated_clean: false,
    power: { ipmi_command_retry_timeout: 10, ipmi_min_command_interval: 0 } }, drivers: testDrivers });
  sim = await startIpmiSim();
  emu = await startRedfishEmulator();
});
after(async () => {
  await fx?.close();
  await sim?.stop();
  await emu?.stop();
});

async function createNode(body: Record<string, unknown>): Promise<string> {
  const r = await fx.api('POST', '/v1/nodes', body);
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return (r.body as { uuid: string }).uuid;
}

function fault(body: unknown): string {
  return JSON.parse((body as { error_message: string }).error_message).faultstring as string;
}

test('node vendor passthru: methods, sync GET, async POST under the lock, wrong verb, unknown method', async () => {
  const uuid = await createNode({ driver: 'fake-hardware', name: 'vp-fake' });
  const methods = await fx.api('GET', `/v1/nodes/${uuid}/vendor_passthru/methods`);
  assert.equal(methods.status, 200);
  const m = methods.body as Record<string, { http_methods: string[]; async: boolean; attach: boolean }>;
  assert.deepEqual(m.second_method?.http_methods, ['GET', 'PUT']);
  assert.equal(m.second_method?.async, false);
  assert.equal(m.first_method?.async, true);
  assert.equal(m.third_method_attach?.attach, true);
  assert.ok(m.hello, 'the example plugin added its method');

  const sync = await fx.api('GET', `/v1/nodes/vp-fake/vendor_passthru?method=second_method&x=1`);
  assert.equal(sync.status, 200);
  assert.deepEqual(sync.body, { node: uuid, http_method: 'GET', args: { x: '1' } });

  const asyncCall = await fx.api('POST', `/v1/nodes/${uuid}/vendor_passthru?method=first_method`, { bar: 'baz' });
  assert.equal(asyncCall.status, 202);
  await fx.ctx?.tasks.idle();
  const node = await fx.api('GET', `/v1/nodes/${uuid}`);
  assert.equal((node.body as { driver_internal_info: Record<string, unknown> }).driver_internal_info.fake_vendor_bar, 'baz');

  const missingArg = await fx.api('POST', `/v1/nodes/${uuid}/vendor_passthru?method=first_method`, {});
  assert.equal(missingArg.status, 400);
  assert.match(fault(missingArg.body), /bar/);
  const wrongVerb = await fx.api('DELETE', `/v1/nodes/${uuid}/vendor_passthru?method=second_method`);
  assert.equal(wrongVerb.status, 400);
  assert.match(fault(wrongVerb.body), /does not support HTTP DELETE/);
  const unknown = await fx.api('POST', `/v1/nodes/${uuid}/vendor_passthru?method=nope`, {});
  assert.equal(unknown.status, 400);
  assert.match(fault(unknown.body), /No handler for method nope/);
  const none = await fx.api('POST', `/v1/nodes/${uuid}/vendor_passthru`, {});
  assert.equal(none.status, 400);

  const attach = await fx.fetch(`/v1/nodes/${uuid}/vendor_passthru/third_method_attach`, { headers: fx.headers() });
  assert.equal(attach.status, 200);
  assert.equal(await attach.text(), `node ${uuid}\n`);

  const unauth = await fx.fetch(`/v1/nodes/${uuid}/vendor_passthru?method=second_method`);
  assert.equal(unauth.status, 401);
});

test('a node with no-vendor refuses passthru clearly', async () => {
  const uuid = await createNode({ driver: 'fake-hardware', vendor_interface: 'no-vendor' });
  const r = await fx.api('GET', `/v1/nodes/${uuid}/vendor_passthru/methods`);
  assert.equal(r.status, 400);
  assert.match(fault(r.body), /does not support vendor/);
});

test('driver vendor passthru: methods and a sync call', async () => {
  const methods = await fx.api('GET', '/v1/drivers/fake-hardware/vendor_passthru/methods');
  assert.equal(methods.status, 200);
  assert.ok((methods.body as Record<string, unknown>).driver_method);
  const r = await fx.api('POST', '/v1/drivers/fake-hardware/vendor_passthru?method=driver_method', { a: 1 });
  assert.equal(r.status, 200);
  assert.deepEqual(r.body, { http_method: 'POST', args: { a: 1 } });
  const ipmi = await fx.api('GET', '/v1/drivers/ipmi/vendor_passthru/hello_driver');
  assert.deepEqual(ipmi.body, { vendor_interface: 'ipmitool' });
  const missing = await fx.api('GET', '/v1/drivers/nope/vendor_passthru/methods');
  assert.equal(missing.status, 404);
});

test('ipmitool vendor over the CLI: send_raw drives ipmi_sim, the plugin method answers', { skip: noCli }, async () => {
  const uuid = await createNode({ driver: 'ipmi', name: 'vp-ipmi', driver_info: sim.driverInfo(),
    boot_interface: 'fake', deploy_interface: 'fake' });
  const methods = await fx.cli(['node', 'passthru', 'list', 'vp-ipmi', '-f', 'json']);
  assert.equal(methods.exitCode, 0, methods.stderr);
  const names = (JSON.parse(methods.stdout) as { Name: string }[]).map((r) => r.Name);
  for (const n of ['send_raw', 'bmc_reset', 'hello']) assert.ok(names.includes(n), `${n} in ${names.join(',')}`);

  assert.equal(sim.isOn(), false);
  // Chassis Control (netfn 0x00, cmd 0x02), data 0x01 = power up: the simulated chassis must turn on.
  const raw = await fx.cli(['node', 'passthru', 'call', 'vp-ipmi', 'send_raw', '--arg', 'raw_bytes=0x00 0x02 0x01']);
  assert.equal(raw.exitCode, 0, raw.stderr);
  await fx.ctx?.tasks.idle();
  assert.equal(sim.isOn(), true, `chassis log: ${sim.chassisLog().join(' | ')}`);

  const bad = await fx.cli(['node', 'passthru', 'call', 'vp-ipmi', 'send_raw', '--arg', 'raw_bytes=zz']);
  assert.notEqual(bad.exitCode, 0);
  assert.match(bad.stderr, /Invalid raw bytes/);

  // The CLI drops --arg on GET (python-ironicclient sends no body then): the plugin's default answers.
  const hello = await fx.cli(['node', 'passthru', 'call', '--http-method', 'GET', 'vp-ipmi', 'hello']);
  assert.equal(hello.exitCode, 0, hello.stderr);
  assert.match(hello.stdout, /hello operator/);
  assert.ok(hello.stdout.includes(uuid));
  const named = await fx.api('GET', '/v1/nodes/vp-ipmi/vendor_passthru?method=hello&name=world');
  assert.equal((named.body as { greeting: string }).greeting, 'hello world');
});

test('bmc_reset: a cold reset reaches ipmi_sim; the warm reset it refuses lands in last_error', async () => {
  const uuid = await createNode({ driver: 'ipmi', driver_info: sim.driverInfo(), boot_interface: 'fake', deploy_interface: 'fake' });
  assert.equal((await fx.api('POST', `/v1/nodes/${uuid}/vendor_passthru?method=bmc_reset`, { warm: false })).status, 202);
  await fx.ctx?.tasks.idle();
  let node = (await fx.api('GET', `/v1/nodes/${uuid}`)).body as { last_error: string | null };
  assert.equal(node.last_error, null);
  assert.equal((await fx.api('POST', `/v1/nodes/${uuid}/vendor_passthru?method=bmc_reset`, {})).status, 202);
  await fx.ctx?.tasks.idle();
  node = (await fx.api('GET', `/v1/nodes/${uuid}`)).body as { last_error: string | null };
  assert.match(node.last_error ?? '', /bmc_reset failed.*warm reset/);
});

test('inject NMI: redfish posts ResetType Nmi; ipmitool sends chassis power diag (ipmi_sim refuses it)', { skip: noCli }, async () => {
  await createNode({ driver: 'redfish', name: 'nmi-rf', boot_interface: 'fake', deploy_interface: 'fake',
    driver_info: { redfish_address: emu.url, redfish_username: emu.username, redfish_password: emu.password } });
  const r = await fx.cli(['node', 'inject', 'nmi', 'nmi-rf']);
  assert.equal(r.exitCode, 0, r.stderr);
  assert.deepEqual(emu.resets.map((x) => x.type), ['Nmi']);

  await createNode({ driver: 'ipmi', name: 'nmi-ipmi', driver_info: sim.driverInfo(), boot_interface: 'fake', deploy_interface: 'fake' });
  const i = await fx.cli(['node', 'inject', 'nmi', 'nmi-ipmi']);
  assert.notEqual(i.exitCode, 0);
  assert.match(i.stderr, /power diag.*(Invalid data field|failed)/);

  await createNode({ driver: 'fake-hardware', name: 'nmi-fake' });
  const f = await fx.api('PUT', '/v1/nodes/nmi-fake/management/inject_nmi', {});
  assert.equal(f.status, 400);
  assert.match(fault(f.body), /does not support inject NMI/);
  const old = await fx.api('PUT', '/v1/nodes/nmi-rf/management/inject_nmi', {}, { 'X-OpenStack-Ironic-API-Version': '1.28' });
  assert.equal(old.status, 406);
  const extra = await fx.api('PUT', '/v1/nodes/nmi-rf/management/inject_nmi', { force: true });
  assert.equal(extra.status, 400);
});

async function until(what: string, fn: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('legacy agent routes: vendor_passthru lookup issues the token once, heartbeat requires it; the agent flag uses them', async () => {
  const MAC = '52:54:00:19:19:01';
  const uuid = await createNode({ driver: 'fake-hardware', name: 'legacy', deploy_interface: 'test-wait' });
  assert.equal((await fx.api('POST', '/v1/ports', { node_uuid: uuid, address: MAC })).status, 201);
  for (const [verb, st] of [['manage', 'manageable'], ['provide', 'available'], ['active', 'wait call-back']]) {
    assert.equal((await fx.api('PUT', `/v1/nodes/${uuid}/states/provision`, { target: verb })).status, 202);
    await until(st as string, async () => {
      const n = (await fx.api('GET', `/v1/nodes/${uuid}`)).body as { provision_state: string; reservation: string | null };
      return n.provision_state === st && n.reservation === null;
    });
  }
  const noAuth = { Authorization: '' };
  const body = { version: '2', inventory: { interfaces: [{ name: 'eth0', mac_address: MAC }] } };
  const first = await fx.api('POST', '/v1/drivers/agent_ipmitool/vendor_passthru/lookup', body, noAuth);
  assert.equal(first.status, 200, JSON.stringify(first.body));
  const fb = first.body as { node: { uuid: string }; heartbeat_timeout: number; config: { agent_token: string } };
  assert.equal(fb.node.uuid, uuid);
  assert.equal(typeof fb.heartbeat_timeout, 'number');
  assert.ok(fb.config.agent_token.length >= 32);
  const second = await fx.api('POST', '/v1/drivers/agent_ipmitool/vendor_passthru/lookup',
    { hardware: [{ type: 'mac_address', id: MAC }] }, noAuth);
  assert.equal((second.body as { config: { agent_token: string } }).config.agent_token, '******');
  const unknownMac = await fx.api('POST', '/v1/drivers/x/vendor_passthru/lookup',
    { version: '2', inventory: { interfaces: [{ mac_address: '52:54:00:00:00:99' }] } }, noAuth);
  assert.equal(unknownMac.status, 404);
  const badVersion = await fx.api('POST', '/v1/drivers/x/vendor_passthru/lookup', { version: '7' }, noAuth);
  assert.equal(badVersion.status, 400);

  const hbNoToken = await fx.api('POST', `/v1/nodes/${uuid}/vendor_passthru/heartbeat`,
    { agent_url: 'https://127.0.0.1:9999' }, noAuth);
  assert.equal(hbNoToken.status, 400);
  assert.match(fault(hbNoToken.body), /token/i);
  const hbBad = await fx.api('POST', `/v1/nodes/${uuid}/vendor_passthru/heartbeat`,
    { agent_url: 'https://127.0.0.1:9999', agent_token: 'x'.repeat(43) }, noAuth);
  assert.equal(hbBad.status, 400);
  const hb = await fx.api('POST', `/v1/nodes/${uuid}/vendor_passthru/heartbeat`,
    { agent_url: 'https://127.0.0.1:9999', agent_token: fb.config.agent_token }, noAuth);
  assert.equal(hb.status, 202, JSON.stringify(hb.body));
  const node = (await fx.api('GET', `/v1/nodes/${uuid}`)).body as { driver_internal_info: Record<string, unknown> };
  assert.equal(node.driver_internal_info.agent_url, 'https://127.0.0.1:9999');
  // Public for POST only: any other verb on the same path still needs credentials.
  const getHb = await fx.fetch(`/v1/nodes/${uuid}/vendor_passthru/heartbeat`);
  assert.equal(getHb.status, 401);

  // The agent's own client with the legacy flag (ipa-legacy-vendor-passthru): a fresh token after the wipe.
  await fx.ctx?.tasks.withNodeTask(uuid, { exclusive: true, purpose: 'test: new ramdisk boot' }, async (t) => {
    await t.updateInternalInfo({ agent_secret_token: undefined, agent_url: undefined });
  });
  const client = new ConductorClient({ apiUrls: [fx.url], cafile: fx.caFile ?? null, legacy: { driverName: 'ipmi' } });
  const found = await client.lookup({ macs: [MAC], timeoutS: 5, intervalS: 0.1 });
  assert.equal(found.node.uuid, uuid);
  assert.ok(found.token && found.token.length >= 32);
  await client.heartbeat(uuid, { callbackUrl: 'https://127.0.0.1:9998', token: found.token });
  const after = (await fx.api('GET', `/v1/nodes/${uuid}`)).body as { driver_internal_info: Record<string, unknown> };
  assert.equal(after.driver_internal_info.agent_url, 'https://127.0.0.1:9998');
  await assert.rejects(client.heartbeat(uuid, { callbackUrl: 'https://127.0.0.1:9998', token: 'y'.repeat(43) }), /token/i);
});
