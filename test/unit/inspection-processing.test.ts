/** Inspection data processing pieces: LLDP TLVs, root device hints, capabilities, built-in rules. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseLldp } from '../../conductor/inspection/lldp.js';
import { guessRootDisk, matchRootDevice } from '../../conductor/inspection/hints.js';
import { pxeMac, updateCapabilities } from '../../conductor/inspection/hooks.js';
import { applyRules, validateRules } from '../../conductor/inspection/rules.js';
import { InspectionRuleSchema } from '../../conductor/inspection/config.js';

const hex = (b: Buffer): string => b.toString('hex');

test('LLDP: chassis MAC, port id by subtype, system name; malformed TLVs skipped', () => {
  const tlvs = [
    [1, hex(Buffer.from([4, 0xaa, 0xbb, 0xcc, 0, 1, 2]))],
    [2, hex(Buffer.concat([Buffer.from([5]), Buffer.from('Gi0/1')]))],
    [5, hex(Buffer.from('switch-a'))],
    [2, 'zz'],
    ['x', '00'],
  ];
  assert.deepEqual(parseLldp(tlvs), { switch_id: 'aa:bb:cc:00:01:02', port_id: 'Gi0/1', switch_info: 'switch-a' });
  assert.deepEqual(parseLldp([[2, hex(Buffer.from([3, 1, 2, 3, 4, 5, 6]))]]), { port_id: '01:02:03:04:05:06' });
  assert.deepEqual(parseLldp([[2, hex(Buffer.from([4, 1, 192, 0, 2, 7]))]]), { port_id: '192.0.2.7' });
  // A chassis id that is not a MAC (subtype 7, locally assigned) is no switch_id.
  assert.deepEqual(parseLldp([[1, hex(Buffer.concat([Buffer.from([7]), Buffer.from('chassis')]))]]), {});
  assert.deepEqual(parseLldp(null), {});
});

test('root device hints: size in GiB with operators, strings, rotational; IPA guess is smallest >= 4 GiB', () => {
  const G = 2 ** 30;
  const disks = [{ name: '/dev/sda', size: 100 * G, model: 'A', rotational: true, serial: 's1' },
    { name: '/dev/sdb', size: 20 * G, model: 'B', rotational: false, serial: 's2' },
    { name: '/dev/sdc', size: 2 * G, model: 'C', rotational: false, serial: 's3' }];
  assert.equal(matchRootDevice(disks, { size: 20 })?.name, '/dev/sdb');
  assert.equal(matchRootDevice(disks, { size: '>= 50' })?.name, '/dev/sda');
  assert.equal(matchRootDevice(disks, { rotational: false, size: '<= 10' })?.name, '/dev/sdc');
  assert.equal(matchRootDevice(disks, { serial: 's3' })?.name, '/dev/sdc');
  assert.equal(matchRootDevice(disks, { name: 'sdb' })?.name, '/dev/sdb');
  assert.equal(matchRootDevice(disks, { model: '<in> X B' })?.name, '/dev/sdb');
  assert.equal(matchRootDevice(disks, { size: 7 }), undefined);
  assert.throws(() => matchRootDevice(disks, { colour: 'red' }), /unsupported root device hint colour/);
  assert.equal(guessRootDisk(disks)?.name, '/dev/sdb');
});

test('capabilities merge and the PXE MAC in pxelinux form', () => {
  assert.equal(updateCapabilities('a:1,boot_mode:bios', { boot_mode: 'uefi' }), 'a:1,boot_mode:uefi');
  assert.equal(updateCapabilities(undefined, { boot_mode: 'uefi' }), 'boot_mode:uefi');
  assert.equal(pxeMac({ boot: { pxe_interface: '01-AA-bb-cc-dd-ee-ff' } }), 'aa:bb:cc:dd:ee:ff');
  assert.equal(pxeMac({ boot: { pxe_interface: 'aa:bb:cc:dd:ee:ff' } }), 'aa:bb:cc:dd:ee:ff');
  assert.equal(pxeMac({}), undefined);
});

test('rules: conditions (with inversion, missing fields false), actions in priority order, bad ops refused', () => {
  const rules = InspectionRuleSchema.array().parse([
    { priority: 1, conditions: [{ op: 'eq', args: { values: ['{inventory[cpu][architecture]}', 'x86_64'] } }],
      actions: [{ op: 'set-attribute', args: { path: '/properties/arch_seen', value: 'first {inventory[cpu][count]}' } }] },
    { priority: 5, conditions: [{ op: '!is-true', args: { value: '{plugin_data[auto_discovered]}' } },
      { op: 'contains', args: { value: '{inventory[system_vendor][manufacturer]}', regex: '(?i)dell' } }],
    actions: [{ op: 'add-trait', args: { name: 'CUSTOM_DELL' } },
      { op: 'set-attribute', args: { path: '/properties/arch_seen', value: 'second' } },
      { op: 'set-attribute', args: { path: '/driver_info/ipmi_address', value: '{inventory[bmc_address]}' } }] },
    { conditions: [{ op: 'gt', args: { values: ['{inventory[no][such]}', 1] } }],
      actions: [{ op: 'add-trait', args: { name: 'CUSTOM_NEVER' } }] },
    { conditions: [{ op: 'matches', args: { value: '{node.name}', regex: 'rack1-.*' } }],
      actions: [{ op: 'set-capability', args: { name: 'rack', value: '1' } }] },
  ]);
  validateRules(rules);
  const node: Record<string, unknown> = { name: 'rack1-n7', properties: {}, driver_info: {}, traits: [] };
  const matched = applyRules(rules, { node, inventory: { cpu: { architecture: 'x86_64', count: 8 },
    system_vendor: { manufacturer: 'Dell Inc.' }, bmc_address: '192.0.2.3' }, pluginData: {}, log: () => undefined });
  assert.equal(matched, 3);
  assert.deepEqual(node.traits, ['CUSTOM_DELL']);
  // Priority 5 ran before priority 1, whose value (typed from a template string) wins.
  assert.deepEqual(node.properties, { arch_seen: 'first 8', capabilities: 'rack:1' });
  assert.deepEqual(node.driver_info, { ipmi_address: '192.0.2.3' });
  assert.throws(() => validateRules(InspectionRuleSchema.array().parse([{ actions: [{ op: 'rm-rf' }] }])), /unsupported action/);
  assert.throws(() => applyRules(InspectionRuleSchema.array().parse([{ actions: [{ op: 'set-attribute',
    args: { path: '/provision_state', value: 'active' } }] }]), { node, inventory: {}, pluginData: {}, log: () => undefined }),
  /cannot be set/);
  assert.throws(() => applyRules(InspectionRuleSchema.array().parse([{ actions: [{ op: 'set-attribute',
    args: { path: '/extra/__proto__/x', value: 1 } }] }]), { node, inventory: {}, pluginData: {}, log: () => undefined }),
  /invalid path/);
  assert.throws(() => applyRules(InspectionRuleSchema.array().parse([{ actions: [{ op: 'fail', args: { msg: 'no GPUs' } }] }]),
    { node, inventory: {}, pluginData: {}, log: () => undefined }), /no GPUs/);
});
