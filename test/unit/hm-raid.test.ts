import { test } from 'node:test';
import assert from 'node:assert/strict';
import { IncompatibleHardwareMethodError, SoftwareRAIDError } from '../../protocol/agent-api.js';
import type { BlockDevice } from '../../block/devices.js';
import { partitionPath, planSoftwareRaid, validateRaidConfig } from '../../hardware-managers/generic/raid.js';
import { selectRootDevice, softwareRaidRootName } from '../../hardware-managers/generic/root-device.js';

const GiB = 1024 ** 3;
const disk = (name: string, serial: string): BlockDevice => ({
  name, kname: name.slice(5), type: 'disk', size: 100 * GiB, model: null, vendor: null, serial, wwn: null,
  wwn_with_extension: null, wwn_vendor_extension: null, hctl: null, by_path: null, tran: null, rotational: false,
  readOnly: false, logical_sectors: 512, physical_sectors: 512, mountpoints: [], partitions: [],
});
const DISKS = [disk('/dev/sda', 'A'), disk('/dev/sdb', 'B'), disk('/dev/nvme0n1', 'C'), disk('/dev/loop7', 'D')];

test('validateRaidConfig accepts IPA levels and rejects bad configs', () => {
  const ok = validateRaidConfig({
    logical_disks: [
      { size_gb: 10, raid_level: '1', controller: 'software', is_root_volume: true },
      { size_gb: 'MAX', raid_level: '0', controller: 'software' },
    ],
  });
  assert.equal(ok.length, 2);
  assert.deepEqual(validateRaidConfig({}), []);
  assert.deepEqual(validateRaidConfig(null), []);
  assert.throws(() => validateRaidConfig({ logical_disks: [{ size_gb: 10, raid_level: '1', controller: 'PERC H740' }] }),
    IncompatibleHardwareMethodError);
  assert.throws(() => validateRaidConfig({ logical_disks: [
    { size_gb: 10, raid_level: '1', controller: 'software' }, { size_gb: 10, raid_level: '1', controller: 'hw' }] }),
  SoftwareRAIDError);
  assert.throws(() => validateRaidConfig({ logical_disks: [{ size_gb: 10, raid_level: '4', controller: 'software' }] }), /Unsupported/);
  assert.throws(() => validateRaidConfig({ logical_disks: [
    { size_gb: 'MAX', raid_level: '1', controller: 'software' }, { size_gb: 5, raid_level: '1', controller: 'software' }] }),
  /Only the last/);
  assert.throws(() => validateRaidConfig({ logical_disks: [{ size_gb: -1, raid_level: '1', controller: 'software' }] }), /size_gb/);
});

test('partition naming follows the kernel (p for names ending in a digit)', () => {
  assert.equal(partitionPath('/dev/sda', 2), '/dev/sda2');
  assert.equal(partitionPath('/dev/nvme0n1', 1), '/dev/nvme0n1p1');
  assert.equal(partitionPath('/dev/loop3', 1), '/dev/loop3p1');
});

test('planSoftwareRaid: RAID1 root + RAID0 MAX over two named disks', () => {
  const lds = validateRaidConfig({
    logical_disks: [
      { size_gb: 10, raid_level: '1', controller: 'software', volume_name: 'root', physical_disks: [{ name: '/dev/sda' }, '/dev/nvme0n1'] },
      { size_gb: 'MAX', raid_level: '0', controller: 'software', physical_disks: [{ serial: 'A' }, { serial: 'C' }] },
    ],
  });
  const plan = planSoftwareRaid(lds, DISKS);
  assert.deepEqual(plan.disks, ['/dev/sda', '/dev/nvme0n1']);
  assert.deepEqual(plan.partitionArgs['/dev/sda'], ['--new=1:0:+10240M', '--typecode=1:FD00', '--new=2:0:0', '--typecode=2:FD00']);
  assert.deepEqual(plan.arrays.map((a) => [a.md, a.level, a.name, a.devices]), [
    ['/dev/md0', '1', 'root', ['/dev/sda1', '/dev/nvme0n1p1']],
    ['/dev/md1', '0', null, ['/dev/sda2', '/dev/nvme0n1p2']],
  ]);
  assert.deepEqual(plan.mdadmArgs[0], [
    '--create', '/dev/md0', '--run', '--force', '--metadata=1.2', '--level=1', '--raid-devices=2', '--name=root',
    '/dev/sda1', '/dev/nvme0n1p1',
  ]);
});

test('planSoftwareRaid: per-member sizes for 0, 5, 6, 1+0 over all disks', () => {
  const sizeOf = (level: string, size: number): string => {
    const plan = planSoftwareRaid(validateRaidConfig({ logical_disks: [{ size_gb: size, raid_level: level, controller: 'software' }] }), DISKS);
    return plan.partitionArgs['/dev/sda']?.[0] ?? '';
  };
  assert.equal(sizeOf('0', 40), '--new=1:0:+10240M');
  assert.equal(sizeOf('5', 30), '--new=1:0:+10240M');
  assert.equal(sizeOf('6', 20), '--new=1:0:+10240M');
  assert.equal(sizeOf('1+0', 20), '--new=1:0:+10240M');
  const p10 = planSoftwareRaid(validateRaidConfig({ logical_disks: [{ size_gb: 20, raid_level: '1+0', controller: 'software' }] }), DISKS);
  assert.equal(p10.arrays[0]?.level, '10');
  assert.equal(p10.arrays[0]?.devices.length, 4);
});

test('planSoftwareRaid: too few disks or unknown physical disk is a SoftwareRAIDError', () => {
  const two = DISKS.slice(0, 2);
  assert.throws(() => planSoftwareRaid(validateRaidConfig({ logical_disks: [{ size_gb: 1, raid_level: '5', controller: 'software' }] }), two),
    /needs at least 3 disks/);
  assert.throws(() => planSoftwareRaid(validateRaidConfig({ logical_disks: [
    { size_gb: 1, raid_level: '1', controller: 'software', physical_disks: [{ name: '/dev/sdz' }, { name: '/dev/sda' }] }] }), DISKS),
  SoftwareRAIDError);
});

test('the RAID root volume is found by its array name after a reboot renumbered it (md127...)', () => {
  const md = (name: string, size: number, type: string): BlockDevice => ({ ...disk(name, ''), size, type });
  const config = (rootName: string | null) => ({
    target_raid_config: {
      logical_disks: [
        { size_gb: 1, raid_level: '0', controller: 'software', volume_name: 'scratch' },
        { size_gb: 'MAX', raid_level: '1', controller: 'software', is_root_volume: true, ...(rootName ? { volume_name: rootName } : {}) },
      ],
    },
  });
  assert.equal(softwareRaidRootName(config('root'), 1), 'root');
  assert.equal(softwareRaidRootName(config(null), 1), '1');
  // As assembled at start-up: named arrays land on md127 and down; an unrelated md1 must not be taken for "root".
  const after = [...DISKS, md('/dev/md127', GiB, 'raid1'), md('/dev/md126', GiB, 'raid0'), md('/dev/md1', GiB, 'raid1')];
  const names = new Map([['/dev/md127', 'root'], ['/dev/md126', 'scratch'], ['/dev/md1', 'other']]);
  assert.equal(selectRootDevice(after, config('root'), 4 * GiB, names).name, '/dev/md127');
  // Unnamed volumes carry "<index>" (mdadm derives it from /dev/md<index>) and come back under that number.
  assert.equal(selectRootDevice(after, config(null), 4 * GiB, new Map([['/dev/md1', '1']])).name, '/dev/md1');
  // Without names (or no match) the /dev/md<index> convention of the same boot still applies.
  assert.equal(selectRootDevice(after, config('root'), 4 * GiB).name, '/dev/md1');
});
