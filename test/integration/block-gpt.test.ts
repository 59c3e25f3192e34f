/**
 * The deploy's partition-table work after a whole-disk image, on real loop devices (root only): the GPT backup
 * moved to the end of the disk in-process (block/gpt.ts) leaves the device byte for byte as `sgdisk -e` does, and
 * is not done where nothing must move; the one-BLKRRPART re-read (block/devices.ts refreshPartitions) shows the
 * kernel exactly the table on the disk, whatever the kernel had before; sizes come from sysfs.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, open, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { have, run } from '../../common/exec.js';
import { moveGptBackupToEnd } from '../../block/gpt.js';
import { deviceSize, fixGptBackup, listPartitionNames } from '../../block/disk.js';
import { refreshPartitions } from '../../block/devices.js';
import { sha256Range } from '../fixtures/device-bytes.js';
import { createLoopDevices, type LoopSet } from '../fixtures/loop.js';

const MiB = 1024 * 1024;
const DISK_MIB = 64;
const missing = ['sgdisk', 'parted', 'partx', 'blockdev', 'losetup'];
const absent: string[] = [];
for (const t of missing) if (!(await have(t))) absent.push(t);
if (process.getuid?.() !== 0) absent.push('root');
const skip = absent.length > 0 ? `needs ${absent.join(', ')}` : false;

let loops: LoopSet;
let dev: string;
let dir: string;

before(async () => {
  if (skip) return;
  loops = await createLoopDevices(1, DISK_MIB);
  dev = loops.devices[0]!.path;
  dir = await mkdtemp(join(tmpdir(), 'bmts-gpt-'));
});

after(async () => {
  if (skip) return;
  await loops?.dispose();
  await rm(dir, { recursive: true, force: true });
});

/** A disk image file of `mib` MiB partitioned by `sgdisk args` (or parted when `parted` is given). */
async function image(name: string, mib: number, table: { sgdisk?: string[]; parted?: string[] }): Promise<string> {
  const p = join(dir, name);
  await writeFile(p, '');
  await truncate(p, mib * MiB);
  if (table.sgdisk) await run('sgdisk', [...table.sgdisk, p]);
  if (table.parted) await run('parted', ['-s', '--', p, ...table.parted]);
  return p;
}

/** Zero the device, then write the image at offset 0 (O_DIRECT, synced), as the agent's writer leaves a disk. */
async function put(img: string): Promise<void> {
  await run('dd', ['if=/dev/zero', `of=${dev}`, 'bs=4M', 'oflag=direct', 'status=none']).catch(() => undefined); // ends with ENOSPC at the device's end
  await run('dd', [`if=${img}`, `of=${dev}`, 'bs=1M', 'oflag=direct', 'conv=fsync', 'status=none']);
}

async function deviceHash(): Promise<string> {
  await run('blockdev', ['--flushbufs', dev], { quiet: true });
  return (await sha256Range(dev, 0, DISK_MIB * MiB)).sha256;
}

/** The device after `sgdisk -e` and after `fix` on the same image, as hashes of the whole device. */
async function againstSgdisk(img: string, fix: () => Promise<unknown>): Promise<{ sgdisk: string; ours: string; outcome: unknown }> {
  await put(img);
  await run('sgdisk', ['-e', dev], { okCodes: [0, 2] });
  const sgdisk = await deviceHash();
  await put(img);
  const outcome = await fix();
  return { sgdisk, ours: await deviceHash(), outcome };
}

describe('GPT backup to the end of the disk', { skip }, () => {
  test('a parted GPT image: moved, the device identical to sgdisk -e', async () => {
    const img = await image('parted.raw', 24, { parted: ['mklabel', 'gpt', 'mkpart', 'primary', '1MiB', '23MiB'] });
    const r = await againstSgdisk(img, () => moveGptBackupToEnd(dev));
    assert.equal(r.outcome, 'moved');
    assert.equal(r.ours, r.sgdisk);
    assert.equal((await run('sgdisk', ['-v', dev])).stdout.match(/No problems found/)?.[0], 'No problems found');
  });

  test('boot code and an MBR disk signature, three named partitions: the protective MBR rebuilt as gdisk does', async () => {
    const img = await image('gdisk.raw', 40, { sgdisk: ['-n', '1:0:+8M', '-c', '1:boot', '-t', '1:ef00', '-n', '2:0:+4M', '-n', '3:0:0', '-c', '3:root'] });
    const code = Buffer.alloc(446, 0x90);
    code.writeUInt32LE(0x12345678, 440);
    const fh = await open(img, 'r+');
    await fh.write(code, 0, 446, 0);
    await fh.close();
    const r = await againstSgdisk(img, () => moveGptBackupToEnd(dev));
    assert.equal(r.outcome, 'moved');
    assert.equal(r.ours, r.sgdisk);
  });

  test('first usable LBA 2048 and 8-entry tables: moved, identical to sgdisk -e', async () => {
    for (const [name, args] of [['j2048.raw', ['-j', '2048', '-n', '1:4096:+8M']], ['s8.raw', ['-S', '8', '-n', '1:0:+8M']]] as const) {
      const img = await image(name, 40, { sgdisk: [...args] });
      const r = await againstSgdisk(img, () => moveGptBackupToEnd(dev));
      assert.equal(r.outcome, 'moved', name);
      assert.equal(r.ours, r.sgdisk, name);
    }
  });

  test('an image as large as the disk: already at the end, nothing written', async () => {
    const img = await image('full.raw', DISK_MIB, { sgdisk: ['-n', '1:0:0'] });
    await put(img);
    const before = await deviceHash();
    assert.equal(await moveGptBackupToEnd(dev), 'at-end');
    assert.equal(await deviceHash(), before);
  });

  test('an MBR image: not GPT, nothing written', async () => {
    const img = await image('mbr.raw', 24, { parted: ['mklabel', 'msdos', 'mkpart', 'primary', '1MiB', '20MiB'] });
    await put(img);
    const before = await deviceHash();
    assert.equal(await moveGptBackupToEnd(dev), 'not-gpt');
    assert.equal(await deviceHash(), before);
  });

  test('a hybrid MBR or a damaged entry array is left to sgdisk: fixGptBackup still ends as sgdisk -e does', async () => {
    const hybrid = await image('hybrid.raw', 40, { sgdisk: ['-n', '1:0:+8M', '-n', '2:0:+8M'] });
    await run('sgdisk', ['-h', '1', hybrid]);
    await put(hybrid);
    assert.equal(await moveGptBackupToEnd(dev), 'unsure');
    const r = await againstSgdisk(hybrid, () => fixGptBackup(dev));
    assert.equal(r.ours, r.sgdisk);

    const damaged = await image('damaged.raw', 24, { sgdisk: ['-n', '1:0:+8M'] });
    const fh = await open(damaged, 'r+');
    await fh.write(Buffer.from([0xff]), 0, 1, 1024 + 200); // inside entry 2 of the primary array: its CRC breaks
    await fh.close();
    await put(damaged);
    const before = await deviceHash();
    assert.equal(await moveGptBackupToEnd(dev), 'unsure');
    assert.equal(await deviceHash(), before, 'nothing written on a table that does not check out');
  });
});

describe('partition table re-read', { skip }, () => {
  test('the kernel shows what is on the disk: new table, changed table, no table', async () => {
    const two = await image('two.raw', 40, { sgdisk: ['-n', '1:0:+8M', '-n', '2:0:+8M'] });
    await put(two);
    await refreshPartitions(dev);
    assert.equal((await listPartitionNames(dev)).length, 2);
    // Partition 1 gone, 2 moved, 3 new: partx -u alone misses exactly this (it found no partition 2 to add).
    const other = await image('other.raw', 40, { sgdisk: ['-n', '2:20M:+4M', '-n', '3:0:+4M'] });
    await put(other);
    await refreshPartitions(dev);
    const names = await listPartitionNames(dev);
    assert.deepEqual(names.map((n) => n.replace(/^.*p/, '')), ['2', '3']);
    const start = Number((await readFile(`/sys/class/block/${names[0]}/start`, 'utf8')).trim());
    assert.equal(start * 512, 20 * MiB);
    await run('dd', ['if=/dev/zero', `of=${dev}`, 'bs=1M', 'count=1', 'oflag=direct', 'conv=fsync', 'status=none']);
    await refreshPartitions(dev);
    assert.deepEqual(await listPartitionNames(dev), []);
  });

  test('device size from sysfs equals blockdev --getsize64', async () => {
    assert.equal(await deviceSize(dev), Number((await run('blockdev', ['--getsize64', dev])).stdout.trim()));
    assert.equal(await deviceSize(dev), DISK_MIB * MiB);
  });
});
