/**
 * Out-of-band inspection through the `redfish` inspect interface against the Redfish emulator: CPU count and
 * architecture, memory, local_gb from SimpleStorage/Storage, boot mode, one port per NIC, stored inventory.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestConductor } from '../fixtures/conductor.js';
import { startRedfishEmulator } from '../fixtures/redfish-emulator.js';
import { waitForNode, type Json } from '../fixtures/inspection.js';

test('redfish inspection: properties, ports and inventory from the BMC; manageable without booting anything', async (t) => {
  const emu = await startRedfishEmulator({ hardware: { cpus: 16, instructionSet: 'x86-64', memoryGiB: 64 } });
  t.after(() => emu.stop());
  const c = await startTestConductor({ plain: true, config: { inspector: { rules: [{
    conditions: [{ op: 'ge', args: { values: ['{inventory[cpu][count]}', 8] } }],
    actions: [{ op: 'set-capability', args: { name: 'big', value: 'yes' } }],
  }] } } });
  t.after(() => c.close());
  const r = await c.api('POST', '/v1/nodes', { driver: 'redfish', deploy_interface: 'fake', boot_interface: 'fake',
    driver_info: { redfish_address: emu.url, redfish_username: emu.username, redfish_password: emu.password } });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  const node = r.body as Json;
  assert.equal(node.inspect_interface, 'redfish', "redfish is the redfish type's default inspect interface, as in Ironic");
  await c.api('PUT', `/v1/nodes/${node.uuid}/states/provision`, { target: 'manage' });
  await waitForNode(c, node.uuid, (n) => n.provision_state === 'manageable', 'manageable');
  assert.equal((await c.api('PUT', `/v1/nodes/${node.uuid}/states/provision`, { target: 'inspect' })).status, 202);
  const n = await waitForNode(c, node.uuid, (x) => x.provision_state !== 'inspecting', 'inspection end');
  assert.equal(n.provision_state, 'manageable', n.last_error);
  assert.equal(n.properties.cpus, 16);
  assert.equal(n.properties.cpu_arch, 'x86_64');
  assert.equal(n.properties.memory_mb, 64 * 1024);
  // SimpleStorage: the first device of at least 4 GiB is 40 GiB; Storage drives: 100 GiB; the larger, minus 1.
  assert.equal(n.properties.local_gb, 99);
  assert.equal(n.properties.capabilities, 'boot_mode:bios,big:yes');
  const ports = ((await c.api('GET', `/v1/ports/detail?node=${node.uuid}`)).body as Json).ports;
  assert.deepEqual(ports.map((p: Json) => p.address).sort(), ['52:54:00:aa:bb:01', '52:54:00:aa:bb:02']);
  const inv = (await c.api('GET', `/v1/nodes/${node.uuid}/inventory`)).body as Json;
  assert.equal(inv.inventory.cpu.count, 16);
  assert.deepEqual(inv.inventory.disks.map((d: Json) => d.size), [2 * 2 ** 30, 40 * 2 ** 30, 100 * 2 ** 30]);
  assert.equal(inv.inventory.boot.current_boot_mode, 'bios');
  assert.equal(emu.resets.length, 0, 'out-of-band: the system was never power-cycled');
  assert.ok(emu.requests.some((q) => q.path.endsWith('/Storage/1/Drives/0')));

  // A BMC without memory facts fails the inspection with Ironic's message.
  const bare = await startRedfishEmulator({ hardware: { memoryGiB: 0 } });
  t.after(() => bare.stop());
  const r2 = await c.api('POST', '/v1/nodes', { driver: 'redfish', deploy_interface: 'fake', boot_interface: 'fake',
    driver_info: { redfish_address: bare.url, redfish_username: bare.username, redfish_password: bare.password } });
  const u2 = (r2.body as Json).uuid;
  await c.api('PUT', `/v1/nodes/${u2}/states/provision`, { target: 'manage' });
  await waitForNode(c, u2, (x) => x.provision_state === 'manageable', 'manageable');
  await c.api('PUT', `/v1/nodes/${u2}/states/provision`, { target: 'inspect' });
  const f = await waitForNode(c, u2, (x) => x.provision_state === 'inspect failed', 'inspect failed');
  assert.match(f.last_error, /Failed to discover the following properties: memory_mb/);
});
