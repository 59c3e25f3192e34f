/**
 * In-band inspection through the conductor: our agent as a process on the host (one allow-listed loop device,
 * the host's NIC) inspected end to end; the recorded real-IPA-shaped payload on ironic-inspector's
 * POST /v1/continue; bad payloads refused with the node's state unchanged; ramdisk errors, boot failures and
 * timeouts ending in `inspect failed`; discovery enrolling an unknown agent.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestConductor, type TestConductor } from '../fixtures/conductor.js';
import { createLoopDevices } from '../fixtures/loop.js';
import { hostNic, ipaPayload, spawnAgent, waitForNode, type Json } from '../fixtures/inspection.js';
import type { ConfigInput } from '../../conductor/config.js';

const GiB = 2 ** 30;

async function conductor(t: { after(fn: () => Promise<void>): void }, config: ConfigInput = {}): Promise<TestConductor> {
  const c = await startTestConductor({ plain: true, config });
  t.after(() => c.close());
  return c;
}

async function manageableNode(c: TestConductor, body: Record<string, unknown>, macs: { mac: string; pxe: boolean }[] = []):
  Promise<string> {
  const r = await c.api('POST', '/v1/nodes', { driver: 'fake-hardware', inspect_interface: 'agent', ...body });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  const uuid = (r.body as Json).uuid as string;
  for (const m of macs) {
    const p = await c.api('POST', '/v1/ports', { node_uuid: uuid, address: m.mac, pxe_enabled: m.pxe });
    assert.equal(p.status, 201, JSON.stringify(p.body));
  }
  assert.equal((await c.api('PUT', `/v1/nodes/${uuid}/states/provision`, { target: 'manage' })).status, 202);
  await waitForNode(c, uuid, (n) => n.provision_state === 'manageable', 'manageable');
  return uuid;
}

async function inspectWait(c: TestConductor, uuid: string): Promise<void> {
  const r = await c.api('PUT', `/v1/nodes/${uuid}/states/provision`, { target: 'inspect' });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  const n = await waitForNode(c, uuid, (x) => x.provision_state !== 'inspecting', 'inspect wait');
  assert.equal(n.provision_state, 'inspect wait', n.last_error);
}

async function post(c: TestConductor, path: string, body: unknown, headers: Record<string, string> = {}):
  Promise<{ status: number; body: Json }> {
  const res = await c.fetch(path, { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body) });
  const text = await res.text();
  let parsed: Json = text;
  try { parsed = JSON.parse(text); } catch { /* kept as text */ }
  return { status: res.status, body: parsed };
}

test('our agent on the host is inspected end to end: properties, ports, rules, inventory', { timeout: 180_000 }, async (t) => {
  const nic = hostNic();
  if (!nic) return t.skip('no physical NIC on this host');
  const loops = await createLoopDevices(1, 6 * 1024);
  t.after(() => loops.dispose());
  const httpRoot = await mkdtemp(join(tmpdir(), 'bmts-inspect-http-'));
  t.after(() => rm(httpRoot, { recursive: true, force: true }));
  const c = await conductor(t, {
    boot: { http_root: httpRoot, http_url: 'http://192.0.2.10:8080' },
    inspector: { rules: [{
      description: 'tag nodes with memory',
      conditions: [{ op: 'ge', args: { values: ['{inventory[memory][physical_mb]}', 1] } }],
      actions: [{ op: 'add-trait', args: { name: 'CUSTOM_INSPECTED' } },
        { op: 'set-attribute', args: { path: '/extra/vendor', value: '{inventory[system_vendor][manufacturer]}' } }],
    }, {
      conditions: [{ op: 'lt', args: { values: ['{inventory[memory][physical_mb]}', 1] } }],
      actions: [{ op: 'add-trait', args: { name: 'CUSTOM_NEVER' } }],
    }] },
  });
  const uuid = await manageableNode(c, { boot_interface: 'ipxe',
    driver_info: { deploy_kernel: 'http://192.0.2.10:8080/k', deploy_ramdisk: 'http://192.0.2.10:8080/r' } },
  [{ mac: nic.mac, pxe: true }, { mac: '52:54:00:12:34:56', pxe: true }]);
  await inspectWait(c, uuid);
  // The ramdisk is booted with the callback on its command line (Ironic's ipa-inspection-callback-url).
  const script = await readFile(join(httpRoot, uuid, 'config'), 'utf8');
  // (The test conductor's configured port is 0, so the guest-facing URL carries 0: api_url is unset here.)
  assert.match(script, / ipa-inspection-callback-url=http:\/\/127\.0\.0\.1:\d+\/v1\/continue_inspection /);

  const agent = spawnAgent({ 'ipa-inspection-callback-url': `${c.url}/v1/continue_inspection`,
    'ipa-inspection-collectors': 'default,logs,pci-devices,usb-devices', 'ipa-device-allowlist': loops.allowlist,
    BOOTIF: nic.mac, 'ipa-listen-host': '127.0.0.1', 'ipa-listen-port': '0' });
  t.after(() => agent.stop());
  const n = await waitForNode(c, uuid, (x) => x.provision_state !== 'inspect wait', 'end of inspection', 120_000)
    .catch((e: Error) => { throw new Error(`${e.message}\nagent:\n${agent.output().slice(-3000)}`); });
  assert.equal(n.provision_state, 'manageable', `${n.last_error}\n${agent.output().slice(-2000)}`);
  assert.ok(n.inspection_finished_at);

  const inv = await c.api('GET', `/v1/nodes/${uuid}/inventory`);
  assert.equal(inv.status, 200);
  const { inventory, plugin_data: pd } = inv.body as Json;
  // Properties come from the inventory the agent reported.
  assert.equal(n.properties.cpus, inventory.cpu.count);
  assert.ok(n.properties.cpus >= 1);
  assert.equal(n.properties.memory_mb, inventory.memory.physical_mb);
  assert.equal(n.properties.cpu_arch, inventory.cpu.architecture);
  assert.equal(n.properties.local_gb, 5, 'the 6 GiB loop device, minus 1 GiB');
  const mode = existsSync('/sys/firmware/efi') ? 'uefi' : 'bios';
  assert.match(n.properties.capabilities, new RegExp(`boot_mode:${mode}`));
  // Only the allow-listed loop device is listed, at its size.
  assert.deepEqual(inventory.disks.map((d: Json) => [d.name, d.size]), [[loops.devices[0]?.path, 6 * GiB]]);
  assert.equal(pd.root_disk.name, loops.devices[0]?.path);
  assert.ok(Array.isArray(pd.pci_devices) && pd.pci_devices.length > 0, 'pci-devices collector');
  assert.ok(Array.isArray(pd.usb_devices), 'usb-devices collector');
  assert.equal(pd.logs, undefined, 'logs are not kept with the inventory');
  assert.equal(pd.error, null);
  // A port whose MAC did not boot loses pxe_enabled (update_pxe_enabled); keep_ports=all keeps it.
  const ports = (await c.api('GET', `/v1/ports/detail?node=${uuid}`)).body as Json;
  assert.deepEqual(ports.ports.map((p: Json) => [p.address, p.pxe_enabled]).sort(),
    [['52:54:00:12:34:56', false], [nic.mac, true]].sort());
  // The matching rule ran; the other did not.
  assert.deepEqual(n.traits, ['CUSTOM_INSPECTED']);
  assert.equal(n.extra.vendor, inventory.system_vendor.manufacturer);
  assert.equal(n.driver_internal_info.agent_secret_token, undefined);
  // API 1.81 gates the inventory.
  assert.equal((await c.api('GET', `/v1/nodes/${uuid}/inventory`, undefined, { 'X-OpenStack-Ironic-API-Version': '1.80' })).status, 404);
});

test("a recorded real IPA payload on ironic-inspector's /v1/continue: BMC lookup, PXE port, LLDP, root disk", async (t) => {
  const c = await conductor(t, { inspector: { power_off: false } });
  const uuid = await manageableNode(c, { driver_info: { ipmi_address: '192.0.2.131' }, properties: { capabilities: 'foo:bar' } });
  await inspectWait(c, uuid);
  const r = await post(c, '/v1/continue', ipaPayload());
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(r.body, { uuid });
  const n = await waitForNode(c, uuid, (x) => x.provision_state !== 'inspect wait', 'end of inspection');
  assert.equal(n.provision_state, 'manageable', n.last_error);
  assert.deepEqual(
    { cpus: n.properties.cpus, memory_mb: n.properties.memory_mb, cpu_arch: n.properties.cpu_arch, local_gb: n.properties.local_gb },
    { cpus: 80, memory_mb: 393216, cpu_arch: 'x86_64', local_gb: 445 }); // root_disk 479559942144 B = 446 GiB, minus 1
  assert.equal(n.properties.capabilities, 'foo:bar,boot_mode:uefi');
  const ports = ((await c.api('GET', `/v1/ports/detail?node=${uuid}`)).body as Json).ports;
  assert.equal(ports.length, 1, 'add_ports=pxe: only the PXE NIC');
  assert.equal(ports[0].address, '3c:fd:fe:00:aa:01');
  assert.equal(ports[0].pxe_enabled, true);
  assert.deepEqual(ports[0].local_link_connection,
    { switch_id: '00:11:22:33:44:55', port_id: 'Ethernet1/17', switch_info: 'leaf-sw-01.example.net' });
  const inv = (await c.api('GET', `/v1/nodes/${uuid}/inventory`)).body as Json;
  assert.equal(inv.inventory.system_vendor.product_name, 'PowerEdge R640');
  assert.equal(inv.plugin_data.pci_devices.length, 2);
  assert.deepEqual(Object.keys(inv.plugin_data.valid_interfaces), ['eno1']);
  assert.equal(inv.plugin_data.logs, undefined);
});

test('bad payloads are refused with 4xx and the node stays in inspect wait', async (t) => {
  const c = await conductor(t, { inspector: { max_payload_bytes: 64 * 1024 } });
  const mac = '3c:fd:fe:00:aa:01';
  const uuid = await manageableNode(c, {}, [{ mac, pxe: true }]);
  await inspectWait(c, uuid);
  const good = ipaPayload();
  const state = async (): Promise<Json> => (await c.api('GET', `/v1/nodes/${uuid}`)).body;
  const before = await state();
  const cases: [string, () => Promise<{ status: number; body: Json }>, number][] = [
    ['missing inventory', () => post(c, '/v1/continue_inspection', { root_disk: good.root_disk }), 400],
    ['no interfaces', () => post(c, '/v1/continue_inspection', { inventory: { ...good.inventory, interfaces: [] } }), 400],
    ['interface without MAC', () => post(c, '/v1/continue_inspection', { inventory: { interfaces: [{ name: 'x' }] } }), 400],
    ['not JSON', () => post(c, '/v1/continue_inspection', '{"inventory": '), 400],
    ['a JSON list', () => post(c, '/v1/continue', '[1,2]'), 400],
    ['wrong token', () => post(c, '/v1/continue_inspection', good, { 'X-Agent-Token': 'x'.repeat(43) }), 400],
    ['oversized', () => post(c, '/v1/continue_inspection', { ...good, logs: 'A'.repeat(100 * 1024) }), 413],
    ['API version between 1.2 and 1.83', () => post(c, '/v1/continue_inspection', good,
      { 'X-OpenStack-Ironic-API-Version': '1.82' }), 404],
    ['bad node_uuid', () => post(c, '/v1/continue?node_uuid=nope', good), 400],
    ['unknown MACs (discovery off)', () => post(c, '/v1/continue_inspection', { inventory: { interfaces: [
      { name: 'eth9', mac_address: '52:54:00:99:99:99' }] } }), 404],
  ];
  for (const [what, call, status] of cases) {
    const r = await call();
    assert.equal(r.status, status, `${what}: ${JSON.stringify(r.body)}`);
    assert.ok(typeof r.body.error_message === 'string', `${what}: Ironic's error body`);
    const now = await state();
    assert.equal(now.provision_state, 'inspect wait', what);
    assert.deepEqual(now.properties, before.properties, what);
    assert.equal(now.last_error, before.last_error, what);
  }
  // Once a lookup issued this inspection's token, a callback without it is refused too.
  const lk = await c.api('GET', `/v1/lookup?addresses=${mac}`, undefined, { 'X-OpenStack-Ironic-API-Version': '1.82' });
  assert.equal(lk.status, 200, JSON.stringify(lk.body));
  const token = (lk.body as Json).config.agent_token as string;
  assert.equal((await post(c, '/v1/continue_inspection', good)).status, 400);
  assert.equal((await state()).provision_state, 'inspect wait');
  // ... and with it the data is accepted.
  const ok = await post(c, '/v1/continue_inspection', good, { 'X-Agent-Token': token });
  assert.equal(ok.status, 202, JSON.stringify(ok.body));
  const n = await waitForNode(c, uuid, (x) => x.provision_state === 'manageable', 'manageable');
  assert.equal(n.driver_internal_info.agent_secret_token, undefined, 'the token dies with the inspection');
  // A second post for a node no longer waiting: 404, nothing changes.
  assert.equal((await post(c, '/v1/continue_inspection', good)).status, 404);
});

test('inspect failed: a ramdisk error, a boot that cannot start, a timeout', async (t) => {
  const c = await conductor(t, { inspect_wait_timeout: 1, periodic: { check_provision_state_interval: 0.5 } });
  const a = await manageableNode(c, {}, [{ mac: '3c:fd:fe:00:aa:01', pxe: true }]);
  await inspectWait(c, a);
  const bad = { ...ipaPayload(), error: 'collector default failed: disk on fire' };
  assert.equal((await post(c, '/v1/continue_inspection', bad)).status, 202);
  let n = await waitForNode(c, a, (x) => x.provision_state === 'inspect failed', 'inspect failed');
  assert.match(n.last_error, /Failed to finish inspection: Ramdisk reported error: collector default failed: disk on fire/);
  // ipxe without deploy_kernel/deploy_ramdisk: the ramdisk cannot be booted.
  const b = await manageableNode(c, { boot_interface: 'ipxe' });
  assert.equal((await c.api('PUT', `/v1/nodes/${b}/states/provision`, { target: 'inspect' })).status, 202);
  n = await waitForNode(c, b, (x) => x.provision_state === 'inspect failed', 'inspect failed');
  assert.match(n.last_error, /Failed to inspect hardware/);
  // Nobody calls back: the periodic check times the inspection out.
  const d = await manageableNode(c, {});
  await c.api('PUT', `/v1/nodes/${d}/states/provision`, { target: 'inspect' });
  n = await waitForNode(c, d, (x) => x.provision_state === 'inspect failed', 'timeout', 30_000);
  assert.match(n.last_error, /Timeout waiting for node inspection/);
});

test('discovery: an unknown agent on the host enrolls a node with its ports, properties and BMC address', { timeout: 120_000 }, async (t) => {
  const nic = hostNic();
  if (!nic) return t.skip('no physical NIC on this host');
  const loops = await createLoopDevices(1, 5 * 1024);
  t.after(() => loops.dispose());
  const off = await conductor(t);
  // Discovery is off by default: the same data is a 404.
  assert.equal((await post(off, '/v1/continue_inspection', { inventory: { interfaces: [{ name: nic.name, mac_address: nic.mac }] } })).status, 404);
  assert.equal(((await off.api('GET', '/v1/nodes')).body as Json).nodes.length, 0);

  const c = await conductor(t, { inspector: { add_ports: 'all', discovery: { enabled: true, driver: 'ipmi',
    driver_info: { ipmi_username: 'admin' } } } });
  // The recorded payload's BMC address becomes ipmi_address.
  const r = await post(c, '/v1/continue_inspection', ipaPayload());
  assert.equal(r.status, 202, JSON.stringify(r.body));
  const viaPayload = await waitForNode(c, r.body.uuid, (x) => x.reservation === null && x.properties.cpus !== undefined, 'processed');
  assert.equal(viaPayload.provision_state, 'enroll');
  assert.equal(viaPayload.driver, 'ipmi');
  assert.deepEqual(viaPayload.driver_info, { ipmi_username: 'admin', ipmi_address: '192.0.2.131' });
  assert.equal(viaPayload.driver_internal_info.auto_discovered, true);
  assert.equal(viaPayload.inspect_interface, 'agent');

  // Our agent process, unknown to the conductor.
  const agent = spawnAgent({ 'ipa-inspection-callback-url': `${c.url}/v1/continue_inspection`,
    'ipa-device-allowlist': loops.allowlist, BOOTIF: nic.mac, 'ipa-listen-host': '127.0.0.1', 'ipa-listen-port': '0' });
  t.after(() => agent.stop());
  const until = Date.now() + 90_000;
  let found: Json;
  while (!found && Date.now() < until) {
    const port = await c.api('GET', `/v1/ports/detail?address=${nic.mac}`);
    found = ((port.body as Json).ports ?? [])[0];
    if (!found) await new Promise((res) => setTimeout(res, 200));
  }
  assert.ok(found, `no port for ${nic.mac}\n${agent.output().slice(-3000)}`);
  const n = await waitForNode(c, found.node_uuid, (x) => x.reservation === null && x.properties.local_gb !== undefined, 'processed');
  assert.equal(n.provision_state, 'enroll');
  assert.equal(n.driver_internal_info.auto_discovered, true);
  assert.equal(n.properties.local_gb, 4, 'the 5 GiB loop device, minus 1 GiB');
  const inv = (await c.api('GET', `/v1/nodes/${n.uuid}/inventory`)).body as Json;
  assert.equal(inv.plugin_data.auto_discovered, true);
  assert.equal(found.pxe_enabled, true);
});

test('discovery boot: unknown MACs chain pxelinux.cfg/default, which boots the ramdisk with the callback', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'bmts-disc-http-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const c = await conductor(t, { api_url: 'http://192.0.2.1:6385', boot: { http_root: root, http_url: 'http://192.0.2.1:8080' },
    inspector: { discovery: { enabled: true, deploy_kernel: 'http://192.0.2.1:8080/vmlinuz',
      deploy_ramdisk: 'http://192.0.2.1:8080/initramfs' } } });
  const bs = c.ctx?.bootServer;
  assert.ok(bs);
  const chain = await (await fetch(`${bs.localUrl}/boot.ipxe`)).text();
  assert.match(chain, /chain --autofree http:\/\/192\.0\.2\.1:8080\/pxelinux\.cfg\/default \|\|/);
  const res = await fetch(`${bs.localUrl}/pxelinux.cfg/default`);
  assert.equal(res.status, 200);
  const script = await res.text();
  assert.match(script, /kernel --name deploy_kernel http:\/\/192\.0\.2\.1:8080\/vmlinuz .*ipa-inspection-callback-url=http:\/\/192\.0\.2\.1:6385\/v1\/continue_inspection/);
  assert.doesNotMatch(script, /ipa-api-url/);
  await c.close();
  // Discovery off (the default): the same boot server has no default config.
  const off = await conductor(t, { boot: { http_root: root, http_url: 'http://192.0.2.1:8080' } });
  assert.equal(existsSync(join(root, 'pxelinux.cfg', 'default')), false);
  void off;
});
