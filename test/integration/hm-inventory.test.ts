/**
 * The inventory on this machine, in IPA's list_hardware_info shape, with and without the tools it prefers
 * (a minimal ramdisk may lack lsblk and ip: /sys and /proc must still give a usable answer).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import { setHardwareContext } from '../../hardware-managers/context.js';
import { dispatchToManagers, loadManagers, resetManagers } from '../../hardware-managers/dispatch.js';
import type { HardwareInventory } from '../../hardware-managers/generic/inventory.js';
import { parseHdparmSecurity } from '../../block/wipe.js';
import { createLoopDevices, type LoopSet } from '../fixtures/loop.js';

const isRoot = process.getuid?.() === 0;
let loops: LoopSet | undefined;

before(async () => {
  if (isRoot) loops = await createLoopDevices(1, 48);
  setHardwareContext({ deviceAllowlist: loops ? [loops.devices[0]?.path ?? ''] : [], bootif: '01-52-54-00-12-34-56' });
  resetManagers();
  await loadManagers();
});

after(async () => {
  setHardwareContext({ deviceAllowlist: null, bootif: null });
  resetManagers();
  await loops?.dispose();
});

function checkShape(inv: HardwareInventory): void {
  assert.deepEqual(Object.keys(inv).sort(), [
    'bmc_address', 'bmc_v6address', 'boot', 'cpu', 'disks', 'hostname', 'interfaces', 'memory', 'system_vendor',
  ]);
  assert.equal(inv.hostname, os.hostname());
  assert.equal(inv.cpu.count, os.cpus().length);
  assert.equal(inv.cpu.architecture, os.machine());
  assert.ok(Array.isArray(inv.cpu.flags));
  assert.ok(inv.cpu.socket_count >= 1);
  assert.equal(inv.memory.total, os.totalmem());
  assert.ok(inv.memory.physical_mb >= Math.floor(os.totalmem() / 2 ** 20));
  assert.match(inv.boot.current_boot_mode, /^(bios|uefi)$/);
  assert.equal(inv.boot.pxe_interface, '01-52-54-00-12-34-56');
  for (const k of ['product_name', 'serial_number', 'manufacturer'] as const) assert.equal(typeof inv.system_vendor[k], 'string');
  assert.equal(typeof inv.system_vendor.firmware.version, 'string');
  for (const i of inv.interfaces) {
    assert.match(i.mac_address, /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
    assert.notEqual(i.name, 'lo');
    assert.equal(typeof i.has_carrier, 'boolean');
  }
  // No /dev/ipmi* on a test host: no BMC probing at all.
  assert.equal(inv.bmc_address, null);
}

test('list_hardware_info has IPA\'s shape and this machine\'s facts', async () => {
  const inv = await dispatchToManagers<HardwareInventory>('listHardwareInfo');
  checkShape(inv);
  const nets = os.networkInterfaces();
  for (const i of inv.interfaces) {
    const v4 = (nets[i.name] ?? []).find((a) => a.family === 'IPv4')?.address ?? null;
    assert.equal(i.ipv4_address, v4, `IPv4 of ${i.name}`);
  }
  if (loops) {
    const d = loops.devices[0]?.path;
    assert.deepEqual(inv.disks.map((x) => [x.name, x.size]), [[d, 48 * 2 ** 20]]);
    assert.equal(typeof inv.disks[0]?.rotational, 'boolean');
  }
});

test('without lsblk and ip on PATH the inventory falls back to /sys and /proc', async () => {
  const path = process.env.PATH;
  process.env.PATH = '/nonexistent';
  try {
    const inv = await dispatchToManagers<HardwareInventory>('listHardwareInfo');
    checkShape(inv);
    if (loops) assert.deepEqual(inv.disks.map((x) => [x.name, x.size]), [[loops.devices[0]?.path, 48 * 2 ** 20]]);
  } finally {
    process.env.PATH = path;
  }
});

test('hdparm security parsing decides whether ATA secure erase is possible', () => {
  const text = [
    'Security: ',
    '\tMaster password revision code = 65534',
    '\t\tsupported',
    '\tnot\tenabled',
    '\tnot\tlocked',
    '\t\tfrozen',
    '\tnot\texpired: security count',
    '\t\tsupported: enhanced erase',
    '\t2min for SECURITY ERASE UNIT. 2min for ENHANCED SECURITY ERASE UNIT.',
    'Logical Unit WWN Device Identifier: 5002538e40a0b1c2',
  ].join('\n');
  assert.deepEqual(parseHdparmSecurity(text), { supported: true, enabled: false, locked: false, frozen: true, enhanced: true });
  assert.equal(parseHdparmSecurity('no security section'), null);
});
