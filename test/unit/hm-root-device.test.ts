import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DeviceNotFound } from '../../protocol/agent-api.js';
import type { BlockDevice } from '../../block/devices.js';
import {
  HintError, findDevicesByHints, parseRootDeviceHints, parseSpec, pyQuote, specMatch,
} from '../../hardware-managers/generic/hints.js';
import { selectRootDevice, skipListDevices } from '../../hardware-managers/generic/root-device.js';

const GiB = 1024 ** 3;

function disk(o: Partial<BlockDevice> & { name: string; size: number }): BlockDevice {
  const kname = o.name.replace('/dev/', '');
  return {
    kname, type: 'disk', model: null, vendor: null, serial: null, wwn: null, wwn_with_extension: null,
    wwn_vendor_extension: null, hctl: null, by_path: null, tran: null, rotational: false, readOnly: false,
    logical_sectors: 512, physical_sectors: 512, mountpoints: [], partitions: [], ...o,
  };
}

const DISKS: BlockDevice[] = [
  disk({
    name: '/dev/sda', size: 500 * GiB, model: 'Samsung SSD 860', vendor: 'ATA', serial: 'S3Z1NB0K',
    wwn: '0x5002538e40a0b1c2', wwn_with_extension: '0x5002538e40a0b1c2', hctl: '0:0:0:0',
    by_path: '/dev/disk/by-path/pci-0000:00:17.0-ata-1', tran: 'sata', rotational: false,
  }),
  disk({
    name: '/dev/sdb', size: 1000 * GiB, model: 'WDC WD10EZEX', vendor: 'ATA', serial: 'WD-123', rotational: true,
    wwn: '0x50014ee2b5b5c6d7', wwn_with_extension: '0x50014ee2b5b5c6d70x95', wwn_vendor_extension: '0x95',
    hctl: '1:0:0:0', tran: 'sata',
  }),
  disk({ name: '/dev/nvme0n1', size: 200 * GiB, model: 'INTEL SSDPE2KX020T8', serial: null, tran: 'nvme' }),
  disk({ name: '/dev/sdc', size: 2 * GiB, model: 'USB Flash', vendor: 'Generic', rotational: true, tran: 'usb' }),
];
// serial variants from lsblk and udev: a hint matches any of them
(DISKS[2] as { serial: unknown }).serial = ['PHLJ1234', 'alt-serial'];

const pick = (hints: Record<string, unknown> | null, extra: Record<string, unknown> = {}, min = 4 * GiB): string =>
  selectRootDevice(DISKS, { properties: { ...(hints ? { root_device: hints } : {}) }, ...extra }, min).name;

test('specs_matcher operators behave like oslo.utils', () => {
  const table: [unknown, string, boolean][] = [
    ['5', '= 3', true], // legacy "=" means >=
    ['2', '= 3', false],
    [5, '== 5', true],
    [5, '==5', true],
    [5, '!= 5', false],
    [4, '< 5', true],
    [5, '<= 5', true],
    [6, '> 5', true],
    [5, '>= 6', false],
    ['abc', 's== abc', true],
    ['abc', 's!= abc', false],
    ['abc', 's< abd', true],
    ['abc', 's<= abc', true],
    ['abd', 's> abc', true],
    ['abc', 's>= abd', false],
    ['abcdef', '<in> cde', true],
    ['abcdef', '<in> xyz', false],
    ['b', '<or> a <or> b <or> c', true],
    ['d', '<or> a <or> b', false],
    ['aes mmx sse', '<all-in> aes sse', true],
    ['aes mmx', '<all-in> aes sse', false],
    [15, '<range-in> [ 10 20 )', true],
    [20, '<range-in> [ 10 20 )', false],
    [10, '<range-in> ( 10 20 ]', false],
    [20, '<range-in> ( 10 20 ]', true],
    ['plain', 'plain', true],
    ['plain', 'other', false],
  ];
  for (const [value, spec, want] of table) assert.equal(specMatch(value, spec), want, `${String(value)} ~ ${spec}`);
  assert.deepEqual(parseSpec('<or> a <or> b'), ['<or>', 'a', 'b']);
  assert.deepEqual(parseSpec('s== foo'), ['s==', 'foo']);
  assert.deepEqual(parseSpec('foo'), ['foo']);
  assert.equal(pyQuote('qemu harddisk:1/x'), 'qemu%20harddisk%3A1/x');
});

test('hint parsing normalises like Ironic and rejects bad hints', () => {
  assert.deepEqual(parseRootDeviceHints({ model: 'Samsung SSD', size: 100, rotational: 'no' }), {
    model: 's== samsung%20ssd', size: '== 100', rotational: false,
  });
  assert.deepEqual(parseRootDeviceHints({ vendor: '<or> A B <or> c' }), { vendor: '<or> a%20b <or> c' });
  assert.equal(parseRootDeviceHints({}), null);
  assert.throws(() => parseRootDeviceHints({ colour: 'red' }), HintError);
  assert.throws(() => parseRootDeviceHints({ size: 'big' }), HintError);
  assert.throws(() => parseRootDeviceHints({ size: 0 }), HintError);
  assert.throws(() => parseRootDeviceHints({ rotational: 'maybe' }), HintError);
  assert.throws(() => parseRootDeviceHints({ model: 5 }), HintError);
  assert.throws(() => parseRootDeviceHints({ serial: '  ' }), HintError);
});

test('every hint key selects the expected disk', () => {
  const table: [Record<string, unknown>, string][] = [
    [{ size: 500 }, '/dev/sda'],
    [{ size: '>= 600' }, '/dev/sdb'],
    [{ size: '= 600' }, '/dev/sdb'],
    [{ size: '<= 300' }, '/dev/nvme0n1'],
    [{ size: '< 3' }, '/dev/sdc'],
    [{ model: 'samsung ssd 860' }, '/dev/sda'],
    [{ model: 'SAMSUNG SSD 860' }, '/dev/sda'],
    [{ model: '<in> WDC' }, '/dev/sdb'],
    [{ model: 's!= Samsung SSD 860', rotational: false }, '/dev/nvme0n1'],
    [{ vendor: '<or> foo <or> generic' }, '/dev/sdc'],
    [{ serial: 'WD-123' }, '/dev/sdb'],
    [{ serial: 'alt-serial' }, '/dev/nvme0n1'],
    [{ serial: 'PHLJ1234' }, '/dev/nvme0n1'],
    [{ wwn: '0x5002538e40a0b1c2' }, '/dev/sda'],
    [{ wwn_with_extension: '0x50014ee2b5b5c6d70x95' }, '/dev/sdb'],
    [{ wwn_vendor_extension: '0x95' }, '/dev/sdb'],
    [{ hctl: '1:0:0:0' }, '/dev/sdb'],
    [{ by_path: '/dev/disk/by-path/pci-0000:00:17.0-ata-1' }, '/dev/sda'],
    [{ name: '/dev/sdb' }, '/dev/sdb'],
    [{ name: 's== /dev/nvme0n1' }, '/dev/nvme0n1'],
    [{ rotational: 'yes' }, '/dev/sdb'],
    [{ rotational: true, size: '<= 10' }, '/dev/sdc'],
    [{ tran: 'usb' }, '/dev/sdc'],
  ];
  for (const [hints, want] of table) assert.equal(pick(hints), want, JSON.stringify(hints));
  assert.deepEqual(findDevicesByHints(DISKS, { tran: 'sata' }).map((d) => d.name), ['/dev/sda', '/dev/sdb']);
});

test('no match or invalid hints raise DeviceNotFound (404)', () => {
  assert.throws(() => pick({ model: 'nothing like it' }), (e: unknown) => e instanceof DeviceNotFound && e.status === 404);
  assert.throws(() => pick({ size: 500, rotational: true }), DeviceNotFound);
  assert.throws(() => pick({ bogus: 'x' }), /Invalid root device hints/);
});

test('without hints: the smallest disk of at least the minimum size', () => {
  assert.equal(pick(null), '/dev/nvme0n1');
  assert.equal(pick(null, {}, 1 * GiB), '/dev/sdc');
  assert.throws(() => pick(null, {}, 2000 * GiB), /smaller than 2147483648000B/);
});

test('instance_info.root_device wins over properties.root_device', () => {
  const node = { properties: { root_device: { name: '/dev/sda' } }, instance_info: { root_device: { name: '/dev/sdb' } } };
  assert.equal(selectRootDevice(DISKS, node, 4 * GiB).name, '/dev/sdb');
});

test('skip list (properties.skip_block_devices) removes disks from every choice', () => {
  const props = { skip_block_devices: [{ name: '/dev/nvme0n1' }, { volume_name: 'keep' }, { bogus: 1 }] };
  assert.deepEqual([...skipListDevices({ properties: props }, DISKS)], ['/dev/nvme0n1']);
  assert.equal(selectRootDevice(DISKS, { properties: props }, 4 * GiB).name, '/dev/sda');
  assert.throws(
    () => selectRootDevice(DISKS, { properties: { ...props, root_device: { serial: 'alt-serial' } } }, 4 * GiB),
    DeviceNotFound,
  );
});

test('a built software RAID root volume is the root device', () => {
  const withMd = [...DISKS, disk({ name: '/dev/md0', size: 100 * GiB, type: 'raid1' }), disk({ name: '/dev/md1', size: 300 * GiB, type: 'raid0' })];
  const raid = (root: number | null) => ({
    target_raid_config: {
      logical_disks: [
        { size_gb: 100, raid_level: '1', controller: 'software', ...(root === 0 ? { is_root_volume: true } : {}) },
        { size_gb: 'MAX', raid_level: '0', controller: 'software', ...(root === 1 ? { is_root_volume: true } : {}) },
      ],
    },
  });
  assert.equal(selectRootDevice(withMd, raid(1), 4 * GiB).name, '/dev/md1');
  assert.equal(selectRootDevice(withMd, raid(null), 4 * GiB).name, '/dev/md0');
  // md arrays are never picked by size alone
  assert.equal(selectRootDevice(withMd, {}, 4 * GiB).name, '/dev/nvme0n1');
});

test('hint names are own keys of the hint table: constructor, toString and __proto__ are invalid hints', () => {
  for (const k of ['constructor', 'toString', 'hasOwnProperty', '__proto__']) {
    const hints = JSON.parse(`{${JSON.stringify(k)}: true}`) as Record<string, unknown>;
    assert.throws(() => parseRootDeviceHints(hints), HintError, k);
  }
});
