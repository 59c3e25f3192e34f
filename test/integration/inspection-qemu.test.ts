/**
 * A QEMU node inspected end to end: the deploy ramdisk (our agent) booted with ipa-inspection-callback-url
 * collects its inventory and posts it to our conductor, which sets the node's properties and ports from it.
 * The VM boots the ramdisk directly (-kernel/-initrd; the iPXE path that hands out the same kernel parameter is
 * covered by inspection.test.ts); vCPUs, memory, disk size and MAC must match what QEMU was given. Its second NIC
 * is a TAP on a switch port where Debian's lldpd advertises LLDP (test/fixtures/lldp-switch.ts): the agent's lldp
 * collector hears it and that NIC's port gets local_link_connection from it.
 * Discovery: a second VM whose MAC the conductor does not know PXE-boots (QEMU's iPXE ROM -> boot.ipxe ->
 * pxelinux.cfg/default, the discovery boot configuration) the same ramdisk, which inspects itself and makes the
 * conductor enroll it. Both scenarios share one conductor, whose guest-facing API and boot server sit behind
 * guestfwd rules at 10.0.2.100.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, startTestConductor, type TestConductor } from '../fixtures/conductor.js';
import { waitForNode, type Json } from '../fixtures/inspection.js';
import { bootRamdiskVm, ensureRamdisk, type AgentVm, type RamdiskFiles } from '../fixtures/ramdisk.js';
import { createLldpSwitch, lldpSwitchUnavailable, type LldpSwitch } from '../fixtures/lldp-switch.js';
import { GUEST_HOST_ADDR, startVm, type Vm } from '../../lab/qemu.js';

const MAC = '52:54:00:b3:7a:18';
const MEMORY_MIB = 640;
const DISK_GIB = 7;
const SMP = 2;
/** The VM's second NIC, on the LLDP switch port. */
const LLDP_NIC_MAC = '52:54:00:b3:7a:1a';
const SWITCH = { chassisMac: '02:00:5e:10:00:01', portId: 'Ethernet1/7', sysName: 'rack-switch-1' };

const DISCOVERY_MAC = '52:54:00:b3:7a:19';
const DISCOVERY_DISK_GIB = 5;

/** Built (or checked) once per file: the check alone stages the rootfs, ~20 s. */
let ramdisk: ReturnType<typeof ensureRamdisk> | undefined;
const builtRamdisk = (): ReturnType<typeof ensureRamdisk> => (ramdisk ??= ensureRamdisk());

interface Lab { c: TestConductor; httpUrl: string; bootPort: number; tftpRoot: string; files: RamdiskFiles }
let lab: Promise<Lab> | undefined;
let workDir: string | undefined;
after(async () => {
  const l = await lab?.catch(() => undefined);
  await l?.c.close();
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

/**
 * One conductor for both scenarios: guest-facing API URL and boot server (http_root with the ramdisk copied in,
 * tftp_root for QEMU's built-in TFTP), discovery on with the boot server's copy of the ramdisk.
 */
function sharedLab(files: RamdiskFiles): Promise<Lab> {
  lab ??= (async () => {
    workDir = await mkdtemp(join(tmpdir(), 'bmts-inspect-qemu-'));
    const httpRoot = join(workDir, 'http');
    const tftpRoot = join(workDir, 'tftp');
    await mkdir(join(httpRoot, 'discovery'), { recursive: true });
    await mkdir(tftpRoot);
    await copyFile(files.kernel, join(httpRoot, 'discovery', 'vmlinuz'));
    await copyFile(files.initramfs, join(httpRoot, 'discovery', 'initramfs'));
    const [port, bootPort] = [await freePort(), await freePort()];
    const httpUrl = `http://${GUEST_HOST_ADDR}:${bootPort}`;
    const c = await startTestConductor({ plain: true, config: {
      port, api_url: `http://${GUEST_HOST_ADDR}:${port}`,
      boot: { http_root: httpRoot, http_url: httpUrl, tftp_root: tftpRoot, listen_port: bootPort,
        kernel_append_params: 'console=ttyS0' },
      inspector: { power_off: false, extra_kernel_params: 'ipa-inspection-collectors=default,logs,pci-devices',
        discovery: { enabled: true, driver: 'ipmi', driver_info: { ipmi_username: 'discovered' },
          deploy_kernel: `${httpUrl}/discovery/vmlinuz`, deploy_ramdisk: `${httpUrl}/discovery/initramfs` } },
    } });
    return { c, httpUrl, bootPort, tftpRoot, files };
  })();
  return lab;
}

test('QEMU: the ramdisk inspects the VM; properties, port and inventory match its configuration', { timeout: 15 * 60_000 }, async (t) => {
  const built = await builtRamdisk();
  if (!built.ok) return t.skip(built.reason);
  const { c } = await sharedLab(built);
  const created = await c.api('POST', '/v1/nodes', { driver: 'fake-hardware', inspect_interface: 'agent', name: 'inspect-vm' });
  const uuid = (created.body as Json).uuid as string;
  assert.equal((await c.api('POST', '/v1/ports', { node_uuid: uuid, address: MAC })).status, 201);
  // LLDP needs root, ip netns and lldpd; without them the scenario runs without the second NIC (and says so).
  const noLldp = await lldpSwitchUnavailable();
  let sw: LldpSwitch | undefined;
  if (noLldp) {
    // CI installs lldpd (scripts/setup-system.sh): there its absence is a failure, not a smaller test.
    if (process.env.CI === 'true') assert.fail(`no LLDP switch in CI: ${noLldp}`);
    t.diagnostic(`no LLDP switch: ${noLldp}`);
  } else {
    sw = await createLldpSwitch(SWITCH);
    const s = sw;
    t.after(() => s.close());
    assert.equal((await c.api('POST', '/v1/ports', { node_uuid: uuid, address: LLDP_NIC_MAC, pxe_enabled: false })).status, 201);
  }
  await c.api('PUT', `/v1/nodes/${uuid}/states/provision`, { target: 'manage' });
  await waitForNode(c, uuid, (n) => n.provision_state === 'manageable', 'manageable');
  const started = Date.now();
  await c.api('PUT', `/v1/nodes/${uuid}/states/provision`, { target: 'inspect' });
  await waitForNode(c, uuid, (n) => n.provision_state === 'inspect wait', 'inspect wait');

  let avm: AgentVm | undefined;
  t.after(() => avm?.dispose(false));
  avm = await bootRamdiskVm({
    files: built, conductorPort: c.port, mac: MAC, diskMiB: DISK_GIB * 1024, memoryMiB: MEMORY_MIB,
    append: [`ipa-inspection-callback-url=http://${GUEST_HOST_ADDR}:${c.port}/v1/continue_inspection`,
      `ipa-inspection-collectors=default,logs,pci-devices,usb-devices${sw ? ',lldp' : ''}`, 'ipa-lookup-interval=5',
      // The user-network NIC never hears LLDP: the collector listens this long on it (all NICs at once); lldpd
      // sends every second, and its TAP is attached while the VM still boots.
      'ipa-lldp-timeout=10'],
    vm: { smp: SMP, ...(sw ? { extraArgs: sw.qemuArgs(LLDP_NIC_MAC) } : {}) },
  });
  const vm = avm.vm;
  await sw?.attachTap(vm.pid);
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
  const pd = ((await c.api('GET', `/v1/nodes/${uuid}/inventory`)).body as Json).plugin_data;
  assert.ok(pd.pci_devices.some((d: Json) => d.vendor_id === '1af4'), 'virtio devices among the PCI devices');
  if (!sw) {
    assert.deepEqual(ports.map((p: Json) => [p.address, p.pxe_enabled]), [[MAC, true]]);
    return;
  }
  const byMac = new Map<string, Json>(ports.map((p: Json) => [p.address, p]));
  assert.deepEqual([...byMac.keys()].sort(), [MAC, LLDP_NIC_MAC].sort());
  assert.equal(byMac.get(MAC).pxe_enabled, true);
  assert.equal(byMac.get(MAC).local_link_connection.switch_id, undefined, 'no LLDP on the user network');
  const lldpNic = inv.interfaces.find((i: Json) => i.mac_address === LLDP_NIC_MAC);
  assert.ok(lldpNic, `the LLDP NIC in ${JSON.stringify(inv.interfaces)}`);
  assert.ok(Array.isArray(pd.lldp_raw?.[lldpNic.name]),
    `lldp_raw for ${lldpNic.name}: ${JSON.stringify(pd.lldp_raw)}\n${await sw.report()}\nserial:\n${vm.serialLog.slice(-3000)}`);
  assert.deepEqual(byMac.get(LLDP_NIC_MAC).local_link_connection,
    { switch_id: SWITCH.chassisMac, port_id: SWITCH.portId, switch_info: SWITCH.sysName });
});

test('QEMU discovery: an unknown VM PXE-boots the discovery ramdisk and is enrolled with its MAC, disk size, CPUs, memory', { timeout: 15 * 60_000 }, async (t) => {
  const built = await builtRamdisk();
  if (!built.ok) return t.skip(built.reason);
  const { c, bootPort, tftpRoot } = await sharedLab(built);
  const known = new Set(((await c.api('GET', '/v1/nodes')).body as Json).nodes.map((n: Json) => n.uuid));
  assert.equal(((await c.api('GET', `/v1/ports?address=${DISCOVERY_MAC}`)).body as Json).ports.length, 0);

  const dir = await mkdtemp(join(tmpdir(), 'bmts-discovery-vm-'));
  const disk = join(dir, 'disk.img');
  await writeFile(disk, '');
  await truncate(disk, DISCOVERY_DISK_GIB * 2 ** 30);
  let vm: Vm | undefined;
  let keep = true;
  t.after(async () => {
    await vm?.stop();
    await rm(disk, { force: true });
    if (!keep) await rm(dir, { recursive: true, force: true });
    else t.diagnostic(`kept: ${dir}`);
  });
  const started = Date.now();
  // No kernel, no BOOTIF, no URLs of ours: the VM only has its NIC's PXE ROM, slirp's DHCP/TFTP (boot.ipxe) and
  // the guestfwd rules to the API and the boot server.
  vm = await startVm({
    dir, name: 'discovery', boot: 'network', mac: DISCOVERY_MAC, memoryMiB: MEMORY_MIB, smp: SMP, disks: [disk],
    tftp: tftpRoot, bootfile: 'boot.ipxe', guestfwd: [{ guestPort: c.port }, { guestPort: bootPort }],
  });
  const v = vm;
  let port: Json;
  const until = Date.now() + 12 * 60_000;
  while (!port && Date.now() < until && v.running()) {
    port = ((await c.api('GET', `/v1/ports/detail?address=${DISCOVERY_MAC}`)).body as Json).ports[0];
    if (!port) await new Promise((r) => setTimeout(r, 1000));
  }
  assert.ok(port, `no port for ${DISCOVERY_MAC}\nserial:\n${v.readSerial().slice(-4000)}`);
  const n = await waitForNode(c, port.node_uuid, (x) => x.reservation === null && x.properties.local_gb !== undefined,
    'discovery processed');
  const seconds = (Date.now() - started) / 1000;
  t.diagnostic(`discovery bench: VM power-on (PXE) to enrolled node in ${seconds.toFixed(1)} s (TCG, ${SMP} vCPUs)`);
  const serial = v.readSerial();
  assert.match(serial, /pxelinux\.cfg\/default/, 'the VM came through the discovery boot configuration');

  assert.equal(known.has(n.uuid), false, 'a new node');
  assert.equal(n.provision_state, 'enroll');
  assert.equal(n.driver, 'ipmi', 'the configured default driver');
  assert.equal(n.inspect_interface, 'agent');
  assert.deepEqual(n.driver_info, { ipmi_username: 'discovered' }, 'no BMC in the VM: no ipmi_address');
  assert.equal(n.driver_internal_info.auto_discovered, true);
  assert.equal(n.last_error, null);
  assert.equal(n.properties.local_gb, DISCOVERY_DISK_GIB - 1);
  assert.equal(n.properties.cpus, SMP);
  assert.equal(n.properties.cpu_arch, 'x86_64');
  assert.ok(n.properties.memory_mb > MEMORY_MIB * 0.9 && n.properties.memory_mb <= MEMORY_MIB,
    `memory_mb ${n.properties.memory_mb} vs -m ${MEMORY_MIB}`);
  const ports = ((await c.api('GET', `/v1/ports/detail?node=${n.uuid}`)).body as Json).ports;
  assert.deepEqual(ports.map((p: Json) => [p.address, p.pxe_enabled]), [[DISCOVERY_MAC, true]]);
  const data = (await c.api('GET', `/v1/nodes/${n.uuid}/inventory`)).body as Json;
  assert.deepEqual(data.inventory.disks.map((d: Json) => d.size), [DISCOVERY_DISK_GIB * 2 ** 30]);
  assert.equal(data.inventory.boot.pxe_interface, DISCOVERY_MAC);
  assert.equal(data.plugin_data.auto_discovered, true);
  assert.ok(data.plugin_data.pci_devices.some((d: Json) => d.vendor_id === '1af4'), 'the collectors from extra_kernel_params ran');
  keep = false;
});
