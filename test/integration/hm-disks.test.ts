/**
 * The write-safety guard and block-device listing on real loop devices (root only). Every test allow-lists exactly
 * its own loop devices; nothing else is ever written.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { have, run } from '../../common/exec.js';
import { DEFAULT_MIN_ROOT_DEVICE_BYTES, hardwareContext, setHardwareContext } from '../../hardware-managers/context.js';
import { dispatchToManagers, resetManagers } from '../../hardware-managers/dispatch.js';
import {
  UnsafeDeviceError, assertSafeToWrite, listBlockDevices, refreshPartitions,
} from '../../block/devices.js';
import { createLoopDevices, type LoopSet } from '../fixtures/loop.js';
import { withMount } from '../../block/mount.js';

const MiB = 1024 * 1024;
const isRoot = process.getuid?.() === 0;
let loops: LoopSet | undefined;
let dir = '';

const paths = (): string[] => loops?.devices.map((d) => d.path) ?? [];
const dev = (i: number): string => {
  const p = paths()[i];
  if (!p) throw new Error(`no loop device ${i}`);
  return p;
};

before(async () => {
  if (!isRoot) return;
  loops = await createLoopDevices(3, 64);
  dir = await mkdtemp(join(tmpdir(), 'bmts-hm-disks-'));
  setHardwareContext({ deviceAllowlist: paths(), inRamdisk: false });
});

after(async () => {
  setHardwareContext({ deviceAllowlist: null, minRootDeviceBytes: DEFAULT_MIN_ROOT_DEVICE_BYTES });
  resetManagers();
  if (dir) await rm(dir, { recursive: true, force: true });
  await loops?.dispose();
});

const mounted = <T>(device: string, fn: () => Promise<T>): Promise<T> => withMount(device, fn, { parent: dir });

const refused = (re: RegExp) => (e: unknown): boolean => e instanceof UnsafeDeviceError && re.test(e.details);

test('with an allow-list only those devices are listed, loop devices as disks', { skip: !isRoot && 'needs root for loop devices' }, async () => {
  const list = await listBlockDevices();
  assert.deepEqual(list.map((d) => d.name).sort(), [...paths()].sort());
  assert.ok(list.every((d) => d.size === 64 * MiB && d.type === 'loop'));
  setHardwareContext({ deviceAllowlist: [dev(1)] });
  try {
    assert.deepEqual((await listBlockDevices()).map((d) => d.name), [dev(1)]);
  } finally {
    setHardwareContext({ deviceAllowlist: paths() });
  }
});

test('an allow-listed, unmounted loop device is accepted', { skip: !isRoot && 'needs root for loop devices' }, async () => {
  await assertSafeToWrite(dev(0));
});

test('a loop device with a mounted filesystem is refused', { skip: !isRoot && 'needs root for loop devices' }, async () => {
  await run('mkfs.ext4', ['-q', '-F', dev(0)]);
  await mounted(dev(0), async () => {
    await assert.rejects(assertSafeToWrite(dev(0)), refused(/is mounted at/));
  });
  // unmounted again → accepted again
  await assertSafeToWrite(dev(0));
});

test('the disk holding a mounted partition is refused, and so is the partition', { skip: !isRoot && 'needs root for loop devices' }, async () => {
  const disk = dev(1);
  await run('sgdisk', ['--zap-all', disk], { okCodes: [0, 2] });
  await run('sgdisk', ['--new=1:0:+16M', '--new=2:0:0', disk]);
  await refreshPartitions(disk);
  const part = `${disk}p1`;
  await run('mkfs.ext4', ['-q', '-F', part]);
  await mounted(part, async () => {
    await assert.rejects(assertSafeToWrite(disk), refused(new RegExp(`${part} is mounted`)));
    await assert.rejects(assertSafeToWrite(part), refused(/is mounted/));
    // the sibling partition is not in use
    await assertSafeToWrite(`${disk}p2`);
  });
});

test('a device in use as swap is refused', { skip: !isRoot && 'needs root for loop devices' }, async (t) => {
  const d = dev(2);
  await run('mkswap', [d]);
  try {
    await run('swapon', [d]);
  } catch (e) {
    t.skip(`swapon not possible here: ${(e as Error).message}`);
    return;
  }
  try {
    await assert.rejects(assertSafeToWrite(d), refused(/swap/));
  } finally {
    await run('swapoff', [d]);
  }
  await assertSafeToWrite(d);
});

test('a device outside the allow-list is refused, so are non-block paths', { skip: !isRoot && 'needs root for loop devices' }, async () => {
  setHardwareContext({ deviceAllowlist: [dev(0)] });
  try {
    await assert.rejects(assertSafeToWrite(dev(1)), refused(/not in the device allow-list/));
    await assert.rejects(assertSafeToWrite(`${dev(1)}p1`), refused(/not in the device allow-list/));
    await assert.rejects(assertSafeToWrite('/dev/vda'), refused(/not in the device allow-list/));
  } finally {
    setHardwareContext({ deviceAllowlist: paths() });
  }
  const file = join(dir, 'plain-file');
  await writeFile(file, 'x');
  await assert.rejects(assertSafeToWrite(file), refused(/not a block device/));
  await assert.rejects(assertSafeToWrite('/dev/does-not-exist'), refused(/not a block device/));
});

test('without an allow-list the disk of the mounted root filesystem is refused', { skip: !isRoot && 'needs root' }, async (t) => {
  const line = (await run('findmnt', ['-n', '-o', 'SOURCE', '/'], { okCodes: [0, 1] })).stdout.trim();
  if (!line.startsWith('/dev/')) {
    t.skip(`root filesystem is not on a block device here (${line || 'unknown'})`);
    return;
  }
  setHardwareContext({ deviceAllowlist: null });
  try {
    await assert.rejects(assertSafeToWrite(line), refused(/is mounted at \//));
  } finally {
    setHardwareContext({ deviceAllowlist: paths() });
  }
});

test('getOsInstallDevice over loop devices: smallest above the minimum, or by hints', { skip: !isRoot && 'needs root for loop devices' }, async () => {
  resetManagers();
  setHardwareContext({ minRootDeviceBytes: 32 * MiB });
  assert.equal(await dispatchToManagers('getOsInstallDevice', {}), [...paths()].sort((a, b) => a.localeCompare(b))[0]);
  assert.equal(await dispatchToManagers('getOsInstallDevice', { properties: { root_device: { name: dev(2) } } }), dev(2));
  setHardwareContext({ minRootDeviceBytes: DEFAULT_MIN_ROOT_DEVICE_BYTES });
  await assert.rejects(dispatchToManagers('getOsInstallDevice', {}), /smaller than 4294967296B/);
  assert.equal(hardwareContext().deviceAllowlist?.length, 3);
  assert.ok(await have('lsblk'));
});
