/**
 * Image writing end to end on the test's own loop device, through the agent's real command path (registry +
 * executor): deploy.execute_deploy_step write_image, standby.prepare_image / get_partition_uuids,
 * image.install_bootloader. Images come from test/fixtures/images.ts, served on 127.0.0.1.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { have, run } from '../../common/exec.js';
import { CommandExecutor } from '../../agent/commands/executor.js';
import { CommandRegistry } from '../../agent/commands/registry.js';
import { registerBuiltinExtensions } from '../../agent/extensions/index.js';
import { listPartitions, partitionTableType, probe } from '../../block/disk.js';
import { resetImageState } from '../../hardware-managers/deploy/prepare.js';
import { resetImageSettings, setImageSettings } from '../../image/settings.js';
import { streamImageToDevice } from '../../image/write.js';
import type { CommandResult } from '../../protocol/agent-api.js';
import { setHardwareContext } from '../../hardware-managers/context.js';
import {
  buildConfigDrive,
  buildFilesystemImage,
  buildRawDiskImage,
  compressFile,
  fileDigest,
  readFileFromDevice,
  serveImages,
  toQcow2,
  type DiskImage,
  type ImageServer,
} from '../fixtures/images.js';
import { assertDeviceHolds, fillWithPattern, partitionRange, readAt, wholeDiskRanges } from '../fixtures/device-bytes.js';
import { createLoopDevices, type LoopSet } from '../fixtures/loop.js';

const TOOLS = ['losetup', 'parted', 'sgdisk', 'partprobe', 'blkid', 'mkfs.ext4', 'mkfs.vfat', 'mcopy', 'mkswap', 'qemu-img', 'gzip', 'xz', 'zstd', 'bzip2', 'genisoimage', 'isoinfo', 'fallocate', 'mount'];
const missing: string[] = [];
for (const t of TOOLS) if (!(await have(t))) missing.push(t);
if (process.getuid?.() !== 0) missing.push('root');
const skip = missing.length > 0 ? `needs ${missing.join(', ')}` : false;
const MiB = 1024 * 1024;

let dir: string;
let loops: LoopSet;
let dev: string;
let disk: DiskImage;
let keep: ImageServer;
let close: ImageServer;
let exec: CommandExecutor;

before(async () => {
  if (skip) return;
  dir = await mkdtemp(join(tmpdir(), 'bmts-image-'));
  loops = await createLoopDevices(1, 128);
  dev = loops.devices[0]!.path;
  setHardwareContext({ deviceAllowlist: [dev], minRootDeviceBytes: 1024 * 1024 });
  setImageSettings({ connectionRetries: 2, retryIntervalMs: 50, connectionTimeoutMs: 5000, efiSystemPartitionMb: 8 });
  disk = await buildRawDiskImage(dir, { sizeMiB: 24, label: 'gpt', fs: 'ext4' });
  keep = await serveImages(dir, 'keepalive');
  close = await serveImages(dir, 'close');
  exec = new CommandExecutor(registerBuiltinExtensions(new CommandRegistry()), { progressIntervalMs: 50 });
});

after(async () => {
  if (skip) return;
  await keep?.close();
  await close?.close();
  setHardwareContext({ deviceAllowlist: null });
  resetImageSettings();
  await loops?.dispose();
  await rm(dir, { recursive: true, force: true });
});

async function runCommand(name: string, params: Record<string, unknown>): Promise<CommandResult> {
  const started = await exec.execute(name, params);
  if (started.command_status !== 'RUNNING') return started;
  const timeout = new Promise<never>((_, rej) => setTimeout(() => rej(new Error(`${name} timed out`)), 120_000).unref());
  return Promise.race([exec.wait(started.id), timeout]);
}

/** Every write starts on a device full of a fresh pattern: nothing a previous test wrote can pass for this one. */
async function writeImage(image_info: Record<string, unknown>, configdrive?: string): Promise<CommandResult> {
  resetImageState();
  await fillWithPattern(dev);
  return runCommand('deploy.execute_deploy_step', {
    step: { interface: 'deploy', step: 'write_image', args: { image_info, ...(configdrive ? { configdrive } : {}) } },
    node: { uuid: 'node-1', properties: {}, instance_info: {} },
    ports: [],
  });
}

const info = async (name: string, url: string, algo: 'md5' | 'sha256' | 'sha512' = 'sha256', extra = {}) => ({
  id: name,
  urls: [url],
  disk_format: name.includes('qcow2') ? 'qcow2' : 'raw',
  ...(algo === 'md5' ? { checksum: await fileDigest(join(dir, name), 'md5') } : { os_hash_algo: algo, os_hash_value: await fileDigest(join(dir, name), algo) }),
  ...extra,
});

/** The write succeeded and the device holds the raw image's bytes (whatever format it travelled in). */
async function assertDeployed(r: CommandResult, opts: { entries?: boolean } = {}): Promise<void> {
  assert.equal(r.command_status, 'SUCCEEDED', JSON.stringify(r.command_error));
  await assertDeviceHolds(dev, disk.path, wholeDiskRanges(disk.size, 'gpt', opts));
  const parts = await listPartitions(dev);
  assert.ok(parts.length >= 1, 'partition visible');
  assert.equal(await readFileFromDevice(parts[0]!.path, disk.file.name, dir), disk.file.content);
}

/** The device was filled with a pattern before the write, so zeros here can only be the agent's wipe. */
async function assertFirstSectorsZeroed(): Promise<void> {
  await run('blockdev', ['--flushbufs', dev], { quiet: true });
  const first = Buffer.alloc(4096);
  const fh = await (await import('node:fs/promises')).open(dev, 'r');
  await fh.read(first, 0, 4096, 0);
  await fh.close();
  assert.ok(first.every((b) => b === 0), 'first sectors zeroed');
}

async function assertWiped(r: CommandResult, type: string): Promise<void> {
  assert.equal(r.command_status, 'FAILED');
  assert.equal((r.command_error as { type: string }).type, type, JSON.stringify(r.command_error));
  assert.equal(await partitionTableType(dev), null, 'partition table wiped');
  await assertFirstSectorsZeroed();
}

describe('whole-disk images', { skip }, () => {
  test('raw over keep-alive HTTP, sha256, readable after write; get_partition_uuids', async () => {
    const r = await writeImage(await info('disk-gpt-ext4.raw', keep.url('disk-gpt-ext4.raw')));
    await assertDeployed(r);
    const res = (r.command_result as { deploy_result: { result: string } }).deploy_result;
    assert.match(res.result, /^image \(disk-gpt-ext4\.raw\) written to device \/dev\/loop\d+ root_uuid=0x[0-9a-f]{8}$/);
    const u = await exec.execute('standby.get_partition_uuids', {});
    assert.match(String((u.command_result as Record<string, unknown>)['root uuid']), /^0x[0-9a-f]{8}$/);
  });

  test('raw from a server that closes the connection, legacy md5 checksum', async () => {
    await assertDeployed(await writeImage(await info('disk-gpt-ext4.raw', close.url('disk-gpt-ext4.raw'), 'md5')));
  });

  test('qcow2 (streamed, sha512)', async () => {
    await toQcow2(disk.path, join(dir, 'disk.qcow2'));
    await assertDeployed(await writeImage(await info('disk.qcow2', keep.url('disk.qcow2'), 'sha512')));
  });

  for (const kind of ['gzip', 'zstd', 'xz'] as const) {
    test(`${kind}-compressed raw, detected by magic bytes`, async () => {
      const p = await compressFile(disk.path, kind);
      const name = p.slice(dir.length + 1);
      await assertDeployed(await writeImage(await info(name, keep.url(name))));
    });
  }

  test('gzip-compressed qcow2', async () => {
    const p = await compressFile(await toQcow2(disk.path, join(dir, 'nested.qcow2')), 'gzip');
    const name = p.slice(dir.length + 1);
    await assertDeployed(await writeImage(await info(name, keep.url(name), 'sha256', { disk_format: 'qcow2' })));
  });

  test('connection dropped mid-way: resumed with Range, not restarted', async () => {
    const drop = await serveImages(dir, 'drop-once');
    try {
      await assertDeployed(await writeImage(await info('disk-gpt-ext4.raw', drop.url('disk-gpt-ext4.raw'))));
      assert.equal(drop.requests.length, 2);
      assert.equal(drop.requests[0]!.range, undefined);
      assert.match(drop.requests[1]!.range ?? '', /^bytes=[1-9]\d*-$/);
    } finally {
      await drop.close();
    }
  });

  test('404 on the first URL, 200 on the second', async () => {
    const i = await info('disk-gpt-ext4.raw', keep.url('missing/disk-gpt-ext4.raw'));
    i.urls.push(keep.url('disk-gpt-ext4.raw'));
    await assertDeployed(await writeImage(i));
  });

  test('checksum given as the URL of a checksums file', async () => {
    const sum = await fileDigest(disk.path, 'sha512');
    await writeFile(join(dir, 'SHA512SUMS'), `# sums\n${'0'.repeat(128)}  other.raw\n${sum}  disk-gpt-ext4.raw\n`);
    const r = await writeImage({ id: 'x', urls: [keep.url('disk-gpt-ext4.raw')], os_hash_algo: 'sha512', os_hash_value: keep.url('SHA512SUMS') });
    await assertDeployed(r);
  });

  test('config drive (gzip+base64 ISO) gets a config-2 partition at the end of the disk', async () => {
    const cd = await buildConfigDrive(dir, { format: 'iso' });
    const r = await writeImage(await info('disk-gpt-ext4.raw', keep.url('disk-gpt-ext4.raw')), cd.encoded);
    await assertDeployed(r, { entries: false });
    const parts = await listPartitions(dev);
    const last = parts.at(-1)!;
    assert.equal(last.label, 'config-2');
    await assertDeviceHolds(dev, cd.path, partitionRange(last.start, (await stat(cd.path)).size, 'config drive partition'));
    assert.ok(last.start >= 60 * 1024 * 1024 && last.start + last.size > 124 * 1024 * 1024, `in the last ~64 MiB of the 128 MiB disk (start ${last.start}, size ${last.size})`);
    // This kernel has no iso9660 driver: read the file with isoinfo (genisoimage) instead of mounting.
    const meta = (await run('isoinfo', ['-i', last.path, '-R', '-x', '/openstack/latest/meta_data.json'])).stdout;
    assert.deepEqual(JSON.parse(meta), cd.metaData);
  });

  test('sparse raw image: the long zero run is zeroed by the device, not written, and reads back as zeros', async () => {
    // 24 MiB of MBR disk image, then 40 MiB of zeros: past the first 16 MiB of the run, nothing is written.
    const sparse = await buildRawDiskImage(dir, { sizeMiB: 24, label: 'msdos', name: 'sparse.raw' });
    await truncate(sparse.path, 64 * MiB);
    await fillWithPattern(dev);
    const r = await streamImageToDevice({ info: await info('sparse.raw', keep.url('sparse.raw')), device: dev, limit: 128 * MiB });
    assert.ok(r.zeroSkippedBytes >= 24 * MiB, `skipped ${r.zeroSkippedBytes} bytes`);
    assert.equal(r.zeroSkippedBytes % (4 * MiB), 0);
    await assertDeviceHolds(dev, sparse.path, wholeDiskRanges(64 * MiB, 'msdos'));
  });

  // Random data (16 or 32 MiB) with zero ranges (unallocated clusters after qemu-img convert): the file is over 90 % of
  // its virtual size, so the writer skips the up-front zeroing and zeroes exactly the holes afterwards: a few
  // through the device's zeroing, many (40 here) written as zeros by the agent.
  for (const holes of [3, 40]) {
    test(`dense qcow2 with ${holes} holes: not zeroed up front, its holes zeroed after the write, the device holds the raw image`, async () => {
      const size = (holes === 3 ? 16 : 32) * MiB;
      const raw = randomBytes(size);
      const zeroed: Array<[number, number]> = holes === 3
        ? [[4 * MiB, 5 * MiB], [10 * MiB + 128 * 1024, 10 * MiB + 192 * 1024], [size - 256 * 1024, size]]
        : Array.from({ length: holes }, (_, i) => [(i * 6 + 1) * 64 * 1024, (i * 6 + 2) * 64 * 1024] as [number, number]);
      for (const [s, e] of zeroed) raw.fill(0, s, e);
      const name = `dense-${holes}`;
      await writeFile(join(dir, `${name}.raw`), raw);
      await toQcow2(join(dir, `${name}.raw`), join(dir, `${name}.qcow2`));
      await fillWithPattern(dev);
      const r = await streamImageToDevice({ info: await info(`${name}.qcow2`, keep.url(`${name}.qcow2`)), device: dev, limit: 128 * MiB });
      assert.deepEqual(r.layers, ['qcow2']);
      assert.equal(r.holesZeroedAfterBytes, zeroed.reduce((n, [s, e]) => n + e - s, 0));
      await assertDeviceHolds(dev, join(dir, `${name}.raw`), [{ devOffset: 0, fileOffset: 0, length: size, what: 'dense qcow2 image' }]);
    });
  }

  test('an MBR image over a GPT disk: the old backup GPT in the last MiB is zeroed, the first MiB is the image', async () => {
    await assertDeployed(await writeImage(await info('disk-gpt-ext4.raw', keep.url('disk-gpt-ext4.raw'))));
    const size = Number((await run('blockdev', ['--getsize64', dev])).stdout.trim());
    assert.ok(!(await readAt(dev, size - 512, 512)).every((b) => b === 0), 'the GPT image left its backup header at the end');
    await buildRawDiskImage(dir, { sizeMiB: 24, label: 'msdos', name: 'mbr.raw' });
    resetImageState();
    const r = await runCommand('deploy.execute_deploy_step', {
      step: { interface: 'deploy', step: 'write_image', args: { image_info: await info('mbr.raw', keep.url('mbr.raw')) } },
      node: { uuid: 'node-1', properties: {}, instance_info: {} }, ports: [],
    });
    assert.equal(r.command_status, 'SUCCEEDED', JSON.stringify(r.command_error));
    await run('blockdev', ['--flushbufs', dev], { quiet: true });
    assert.ok((await readAt(dev, size - MiB, MiB)).every((b) => b === 0), 'last MiB zeroed');
    assert.equal(await partitionTableType(dev), 'dos');
    await assertDeviceHolds(dev, join(dir, 'mbr.raw'), wholeDiskRanges(24 * MiB, 'msdos'));
  });

  test('install_bootloader: whole-disk image in BIOS mode installs nothing and succeeds', async () => {
    const r = await runCommand('image.install_bootloader', { root_uuid: '0x00000000', target_boot_mode: 'bios' });
    assert.equal(r.command_status, 'SUCCEEDED', JSON.stringify(r.command_error));
  });
});

describe('bad inputs fail clearly and leave no deployable disk', { skip }, () => {
  test('wrong checksum → ImageChecksumError, disk wiped', async () => {
    const r = await writeImage({ id: 'bad', urls: [keep.url('disk-gpt-ext4.raw')], os_hash_algo: 'sha256', os_hash_value: 'a'.repeat(64) });
    await assertWiped(r, 'ImageChecksumError');
    assert.match((r.command_error as { details: string }).details, /image checksum: a{64}; verification checksum: [0-9a-f]{64}/);
  });

  test('truncated download (server always cuts the body) fails', async () => {
    const r = await writeImage(await info('disk-gpt-ext4.raw', keep.url('short/disk-gpt-ext4.raw')));
    assert.equal(r.command_status, 'FAILED');
    assert.match((r.command_error as { type: string }).type, /^ImageDownload/);
    assert.equal(await partitionTableType(dev), null);
    await assertFirstSectorsZeroed();
  });

  test('image larger than the disk', async () => {
    await buildRawDiskImage(dir, { sizeMiB: 140, name: 'big.raw' });
    const r = await writeImage(await info('big.raw', keep.url('big.raw')));
    assert.equal(r.command_status, 'FAILED');
    assert.match((r.command_error as { details: string }).details, /larger than the target|does not fit/);
  });

  test('a file that is not a disk image → DeploymentError (no partition table), wiped', async () => {
    await writeFile(join(dir, 'notes.txt'), 'just some text, not a disk image\n'.repeat(5000));
    await assertWiped(await writeImage(await info('notes.txt', keep.url('notes.txt'))), 'DeploymentError');
  });

  test('unsupported format (bzip2) → InvalidImage', async () => {
    const p = await compressFile(disk.path, 'bzip2');
    const name = p.slice(dir.length + 1);
    await assertWiped(await writeImage(await info(name, keep.url(name))), 'InvalidImage');
  });

  test('declared qcow2 but the content is raw → InvalidImage', async () => {
    await assertWiped(await writeImage(await info('disk-gpt-ext4.raw', keep.url('disk-gpt-ext4.raw'), 'sha256', { disk_format: 'qcow2' })), 'InvalidImage');
  });

  test('prepare_image without any checksum → HTTP-level 400, nothing started', async () => {
    await assert.rejects(
      exec.execute('standby.prepare_image', { image_info: { id: 'x', urls: [keep.url('disk-gpt-ext4.raw')] } }),
      (e: { code?: string; status?: number }) => e.code === 'InvalidCommandParamsError' && e.status === 400,
    );
  });
});

/** The partition device `part` of the test's disk starts with all bytes of `file`. */
async function assertPartitionHolds(part: string, file: string, what: string): Promise<void> {
  const p = (await listPartitions(dev)).find((x) => x.path === part);
  assert.ok(p, `${part} is a partition of ${dev}`);
  await assertDeviceHolds(dev, file, partitionRange(p.start, (await stat(file)).size, what));
}

describe('partition images', { skip }, () => {
  let rootImage: string;
  before(async () => {
    if (skip) return;
    rootImage = await buildFilesystemImage(join(dir, 'root.img'), { sizeMiB: 16, fs: 'ext4' });
  });

  test('BIOS/msdos with swap and config drive: layout, root filesystem, UUIDs (standby.prepare_image)', async () => {
    resetImageState();
    await fillWithPattern(dev);
    const cd = await buildConfigDrive(dir, { format: 'vfat' });
    const r = await runCommand('standby.prepare_image', {
      image_info: { ...(await info('root.img', keep.url('root.img'))), image_type: 'partition', root_mb: 20, swap_mb: 4, ephemeral_mb: 0, deploy_boot_mode: 'bios' },
      configdrive: cd.encoded,
    });
    assert.equal(r.command_status, 'SUCCEEDED', JSON.stringify(r.command_error));
    const uuids = (await exec.execute('standby.get_partition_uuids', {})).command_result as Record<string, unknown>;
    const parts = uuids.partitions as Record<string, string>;
    assert.equal(await partitionTableType(dev), 'dos');
    await assertPartitionHolds(parts.root!, rootImage, 'root partition');
    await assertPartitionHolds(parts.configdrive!, cd.path, 'config drive partition');
    assert.equal(await readFileFromDevice(parts.root!, 'hello.txt', dir), 'baremetal-ts image fixture\n');
    assert.equal(uuids['root uuid'], (await probe(parts.root!)).UUID);
    assert.equal((await probe(parts.swap!)).TYPE, 'swap');
    assert.equal((await probe(parts.configdrive!)).LABEL, 'CONFIG-2');
    assert.match(String((r.command_result as { result: string }).result), /^prepare_image: image \(root\.img\) written to device .* root_uuid=[0-9a-f-]{36}$/);
  });

  test('UEFI/gpt: ESP created, its uuid returned; install_bootloader names the missing grub', async () => {
    const r = await writeImage({ ...(await info('root.img', keep.url('root.img'))), image_type: 'partition', root_mb: 20, swap_mb: 0, ephemeral_mb: 4, ephemeral_format: 'ext4', deploy_boot_mode: 'uefi' });
    assert.equal(r.command_status, 'SUCCEEDED', JSON.stringify(r.command_error));
    assert.equal(await partitionTableType(dev), 'gpt');
    const res = (r.command_result as { deploy_result: { result: string; partition_uuids: Record<string, unknown> } }).deploy_result;
    await assertPartitionHolds((res.partition_uuids.partitions as Record<string, string>).root!, rootImage, 'root partition');
    assert.match(res.result, /efi_system_partition_uuid=[0-9A-F]{4}-[0-9A-F]{4}$/);
    const parts = res.partition_uuids.partitions as Record<string, string>;
    assert.equal((await probe(parts['efi system partition']!)).TYPE, 'vfat');
    assert.equal((await probe(parts.ephemeral!)).LABEL, 'ephemeral0');
    const b = await runCommand('image.install_bootloader', {
      root_uuid: res.partition_uuids['root uuid'],
      efi_system_part_uuid: res.partition_uuids['efi system partition uuid'],
      target_boot_mode: 'uefi',
    });
    assert.equal(b.command_status, 'FAILED');
    assert.match((b.command_error as { details: string }).details, /no grub-install or grub2-install/);
  });

  test('root partition too small for the image fails', async () => {
    const r = await writeImage({ ...(await info('root.img', keep.url('root.img'))), image_type: 'partition', root_mb: 8, swap_mb: 0, ephemeral_mb: 0, deploy_boot_mode: 'bios' });
    assert.equal(r.command_status, 'FAILED');
    assert.equal(await partitionTableType(dev), null);
    await assertFirstSectorsZeroed();
    assert.ok((await readFile(rootImage)).length > 8 * 1024 * 1024);
  });
});
