/**
 * A QEMU node inspected end to end: the deploy ramdisk (our agent) booted with ipa-inspection-callback-url
 * collects its inventory and posts it to our conductor, which sets the node's properties and ports from it.
 * The VM boots the ramdisk directly (-kernel/-initrd; the iPXE path that hands out the same kernel parameter is
 * covered by inspection.test.ts); vCPUs, memory, disk size and MAC must match what QEMU was given.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestConductor } from '../fixtures/conductor.js';
import { waitForNode, type Json } from '../fixtures/inspection.js';
import { bootRamdiskVm, ensureRamdisk, type AgentVm } from '../fixtures/ramdisk.js';
import { GUEST_HOST_ADDR } from '../../lab/qemu.js';

const MAC = '52:54:00:b3:7a:18';
const MEMORY_MIB = 640;
const DISK_GIB = 7;
const SMP = 2;

test('QEMU: the ramdisk inspects the VM; properties, port and inventory match its configuration', { timeout: 15 * 60_000 }, async (t) => {
  const built = await ensureRamdisk();
  if (!built.ok) return t.skip(built.reason);
  const c = await startTestConductor({ plain: true, config: { inspector: { power_off: false } } });
  t.after(() => c.close());
  const created = await c.api('POST', '/v1/nodes', { driver: 'fake-hardware', inspect_interface: 'agent', name: 'inspect-vm' });
  const uuid = (created.body as Json).uuid as string;
  assert.equal((await c.api('POST', '/v1/ports', { node_uuid: uuid, address: MAC })).status, 201);
  await c.api('PUT', `/v1/nodes/${uuid}/states/provision`, { target: 'manage' });
  await waitForNode(c, uuid, (n) => n.provision_state === 'manageable', 'manageable');
  const started = Date.now();
  await c.api('PUT', `/v1/nodes/${uuid}/states/provision`, { target: 'inspect' });
  await waitForNode(c, uuid, (n) => n.provision_state === 'inspect wait', 'inspect wait');

  let avm: AgentVm | undefined;
  t.after(() => avm?.dispose(false));
  avm = await bootRamdiskVm({
    files: built, conductorPort: c.port, mac: MAC, diskMiB: DISK_GIB * 1024, memoryMiB: MEMORY_MIB, vm: { smp: SMP },
    append: [`ipa-inspection-callback-url=http://${GUEST_HOST_ADDR}:${c.port}/v1/continue_inspection`,
      'ipa-inspection-collectors=default,logs,pci-devices,usb-devices', 'ipa-lookup-interval=5'],
  });
  const vm = avm.vm;
  const n = await waitForNode(c, uuid, (x) => x.provision_state !== 'inspect wait' || !vm.running(), 'inspection', 12 * 60_000);
  const seconds = (Date.now() - started) / 1000;
  assert.equal(n.provision_state, 'manageable', `${n.last_error}\nserial:\n${vm.serialLog.slice(-4000)}`);
  t.diagnostic(`inspection bench: inspect request to manageable in ${seconds.toFixed(1)} s (TCG, ${SMP} vCPUs)`);

  const inv = ((await c.api('GET', `/v1/nodes/${uuid}/inventory`)).body as Json).inventory;
  assert.equal(n.properties.cpus, SMP);
  assert.equal(inv.cpu.count, SMP);
  assert.equal(n.properties.cpu_arch, 'x86_64');
  // Firmware and the kernel keep a little of the RAM; physical_mb is what the agent saw as installed.
  assert.equal(n.properties.memory_mb, inv.memory.physical_mb);
  assert.ok(n.properties.memory_mb > MEMORY_MIB * 0.9 && n.properties.memory_mb <= MEMORY_MIB,
    `memory_mb ${n.properties.memory_mb} vs -m ${MEMORY_MIB}`);
  assert.deepEqual(inv.disks.map((d: Json) => d.size), [DISK_GIB * 2 ** 30]);
  assert.equal(n.properties.local_gb, DISK_GIB - 1);
  assert.match(n.properties.capabilities, /boot_mode:bios/);
  const nic = inv.interfaces.find((i: Json) => i.mac_address === MAC);
  assert.ok(nic, `the VM's NIC ${MAC} in ${JSON.stringify(inv.interfaces)}`);
  assert.equal(inv.boot.pxe_interface, MAC);
  const ports = ((await c.api('GET', `/v1/ports/detail?node=${uuid}`)).body as Json).ports;
  assert.deepEqual(ports.map((p: Json) => [p.address, p.pxe_enabled]), [[MAC, true]]);
  const pd = ((await c.api('GET', `/v1/nodes/${uuid}/inventory`)).body as Json).plugin_data;
  assert.ok(pd.pci_devices.some((d: Json) => d.vendor_id === '1af4'), 'virtio devices among the PCI devices');
});
