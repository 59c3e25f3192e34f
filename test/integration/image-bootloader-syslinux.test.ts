/**
 * install_bootloader's syslinux path: the e2e partition image (FAT + syslinux VBR, no GRUB) is laid out by
 * prepareImage on the test's own loop device (BIOS, config drive before the root partition so the VBR must learn
 * its offset from the MBR handoff; GPT: behind the BIOS boot partition), installBootloader writes syslinux's MBR
 * code and the boot flag, and a copy of the loop's backing file then boots in QEMU to the instance marker.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, open, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { have, run } from '../../common/exec.js';
import { installBootloader } from '../../hardware-managers/deploy/bootloader.js';
import { listPartitions, partitionTableType } from '../../block/disk.js';
import { prepareImage, resetImageState } from '../../hardware-managers/deploy/prepare.js';
import { resetImageSettings, setImageSettings } from '../../image/settings.js';
import { syslinuxMbrFile } from '../../hardware-managers/deploy/syslinux.js';
import { setHardwareContext } from '../../hardware-managers/context.js';
import { serveImages, type ImageServer } from '../fixtures/images.js';
import {
  buildConfigDrive,
  buildInstanceInitramfs,
  buildPartitionImage,
  CONFIG_DRIVE_NONE,
  missingImageTools,
  parseConfigDriveOutput,
  type BuiltImage,
} from '../../lab/instance-image.js';
import { createLoopDevices, type LoopSet } from '../fixtures/loop.js';
import { startVm } from '../../lab/qemu.js';

const IMAGE_MIB = 24;
const BOOT_TIMEOUT_MS = 150_000;

const missing = await missingImageTools();
for (const t of ['qemu-system-x86_64', 'losetup', 'mdir', 'sgdisk', 'blkid']) if (!(await have(t))) missing.push(t);
if (!syslinuxMbrFile('dos')) missing.push('syslinux mbr.bin');
if (!syslinuxMbrFile('gpt')) missing.push('syslinux gptmbr.bin');
if (process.getuid?.() !== 0) missing.push('root');
const skip = missing.length > 0 ? `needs ${missing.join(', ')}` : false;

let dir: string;
let image: BuiltImage;
let server: ImageServer;
let keepDir = false;

before(async () => {
  if (skip) return;
  dir = await mkdtemp(join(tmpdir(), 'bmts-syslinux-'));
  const initramfs = await buildInstanceInitramfs(join(dir, 'initrd.gz'));
  image = await buildPartitionImage({ dir, initramfs, sizeMiB: IMAGE_MIB });
  server = await serveImages(dir, 'keepalive');
  setImageSettings({ connectionRetries: 2, retryIntervalMs: 50, connectionTimeoutMs: 5000 });
});

after(async () => {
  if (skip) return;
  await server?.close();
  setHardwareContext({ deviceAllowlist: null });
  resetImageSettings();
  // A failed boot keeps its serial log for the CI artifact.
  if (!keepDir) await rm(dir, { recursive: true, force: true });
});

const imageInfo = (label: 'msdos' | 'gpt', file = 'partition.img', sha256 = image.sha256): Record<string, unknown> => ({
  id: file,
  urls: [server.url(file)],
  disk_format: 'raw',
  os_hash_algo: 'sha256',
  os_hash_value: sha256,
  image_type: 'partition',
  root_mb: IMAGE_MIB,
  swap_mb: 0,
  ephemeral_mb: 0,
  disk_label: label,
  deploy_boot_mode: 'bios',
});

/** prepareImage + installBootloader on a fresh allow-listed loop device; `then` sees the device before detach. */
async function deploy(label: 'msdos' | 'gpt', configdrive: string | null, then: (dev: string, loops: LoopSet) => Promise<void>): Promise<void> {
  const loops = await createLoopDevices(1, 64);
  try {
    const dev = loops.devices[0]!.path;
    setHardwareContext({ deviceAllowlist: [dev], minRootDeviceBytes: 1024 * 1024 });
    resetImageState();
    const prep = await prepareImage(imageInfo(label), configdrive, { device: dev });
    const rootUuid = prep.uuids['root uuid'];
    assert.ok(rootUuid, 'root uuid recorded');
    const done = await installBootloader(dev, { root_uuid: rootUuid, target_boot_mode: 'bios' });
    assert.match(done, new RegExp(`^syslinux MBR \\(.*${label === 'gpt' ? 'gptmbr' : 'mbr'}\\.bin\\) written to ${dev}, partition \\d+ `));
    await then(dev, loops);
  } finally {
    setHardwareContext({ deviceAllowlist: null });
    await loops.dispose();
  }
}

/** Boot a deployed disk copy until the instance's done line; its serial log is returned (kept on failure). */
async function bootUntilDone(disk: string, name: string): Promise<string> {
  await mkdir(join(dir, name), { recursive: true });
  const vm = await startVm({ dir: join(dir, name), name: `syslinux-${name}`, boot: 'disk', noReboot: true, disks: [{ file: disk, format: 'raw' }] });
  try {
    await vm.waitForSerial(new RegExp(`BAREMETAL-TS-INSTANCE-DONE ${image.markerId}`), BOOT_TIMEOUT_MS);
    const serial = vm.readSerial();
    assert.match(serial, new RegExp(`^${image.markerLine} variant=partition`, 'm'));
    return serial;
  } catch (e) {
    keepDir = true;
    throw new Error(`${(e as Error).message}\nserial log: ${vm.serialLog}`);
  } finally {
    await vm.stop();
  }
}

async function firstBytes(dev: string, n: number): Promise<Buffer> {
  const fh = await open(dev, 'r');
  try {
    const b = Buffer.alloc(n);
    await fh.read(b, 0, n, 0);
    return b;
  } finally {
    await fh.close();
  }
}

describe('install_bootloader: syslinux for BIOS partition images without GRUB', { skip }, () => {
  test('msdos + config drive: mbr.bin, root active, table kept; the disk boots to the instance marker', async () => {
    const cd = await buildConfigDrive({ dir, metaData: { name: 'syslinux-node' } });
    const disk = join(dir, 'deployed.raw');
    await deploy('msdos', cd.gzipBase64, async (dev, loops) => {
      assert.equal(await partitionTableType(dev), 'dos');
      const sector = await firstBytes(dev, 512);
      const mbr = (await readFile(syslinuxMbrFile('dos')!)).subarray(0, 440);
      assert.deepEqual(sector.subarray(0, 440), mbr, 'MBR code is syslinux mbr.bin');
      assert.equal(sector.readUInt16LE(510), 0xaa55);
      const parts = await listPartitions(dev);
      const root = parts.find((p) => p.fstype === 'vfat');
      assert.ok(root && root.number === 2 && root.start > 1024 * 1024, `root after the config drive: ${JSON.stringify(parts)}`);
      // Boot indicator of each MBR entry: only the root's is 0x80.
      const flags = [0, 1, 2, 3].map((i) => sector[446 + 16 * i]);
      assert.deepEqual(flags, [0, 0x80, 0, 0]);
      await run('sync', []);
      await run('blockdev', ['--flushbufs', dev]);
      // dispose() detaches the loop and deletes its backing file: boot a copy of it instead.
      await copyFile(loops.devices[0]!.backingFile, disk);
    });
    const serial = await bootUntilDone(disk, 'msdos');
    assert.match(serial, /^CONFIG-DRIVE-FOUND \/dev\/vda1$/m);
    assert.equal(parseConfigDriveOutput(serial)?.uuid, cd.metaData.uuid);
  });

  test('gpt: gptmbr.bin and legacy_boot on the root partition, protective MBR kept; the disk boots', async () => {
    const disk = join(dir, 'deployed-gpt.raw');
    await deploy('gpt', null, async (dev, loops) => {
      assert.equal(await partitionTableType(dev), 'gpt');
      const sector = await firstBytes(dev, 512);
      const mbr = (await readFile(syslinuxMbrFile('gpt')!)).subarray(0, 440);
      assert.deepEqual(sector.subarray(0, 440), mbr, 'MBR code is syslinux gptmbr.bin');
      assert.equal(sector[446 + 4], 0xee, 'protective MBR entry kept');
      const root = (await listPartitions(dev)).find((p) => p.fstype === 'vfat');
      assert.ok(root, 'root partition found');
      const info = await run('sgdisk', ['-A', `${root.number}:show`, dev]);
      assert.match(info.stdout, /legacy BIOS bootable/);
      await run('sync', []);
      await run('blockdev', ['--flushbufs', dev]);
      await copyFile(loops.devices[0]!.backingFile, disk);
    });
    assert.match(await bootUntilDone(disk, 'gpt'), new RegExp(`^${CONFIG_DRIVE_NONE}$`, 'm'));
  });

  test('a FAT root without ldlinux.sys (and no GRUB) is not given the syslinux MBR: the GRUB path fails', async () => {
    const plain = join(dir, 'plain-fat.img');
    await writeFile(plain, '');
    await truncate(plain, IMAGE_MIB * 1024 * 1024);
    await run('mformat', ['-i', plain, '-v', 'PLAIN', '::']);
    const loops = await createLoopDevices(1, 64);
    try {
      const dev = loops.devices[0]!.path;
      setHardwareContext({ deviceAllowlist: [dev], minRootDeviceBytes: 1024 * 1024 });
      resetImageState();
      const sha = createHash('sha256').update(await readFile(plain)).digest('hex');
      const prep = await prepareImage(imageInfo('msdos', 'plain-fat.img', sha), null, { device: dev });
      await assert.rejects(
        installBootloader(dev, { root_uuid: prep.uuids['root uuid'], target_boot_mode: 'bios' }),
        // The GRUB path mounts the root: "no grub-install" where vfat mounts, a mount error where it doesn't.
        (e: Error) => /no grub-install or grub2-install|mount/.test(e.message) && !/syslinux/i.test(e.message),
      );
      const code = (await firstBytes(dev, 440)).toString('hex');
      const mbr = (await readFile(syslinuxMbrFile('dos')!)).subarray(0, 440).toString('hex');
      assert.notEqual(code, mbr, 'syslinux MBR written although the image has no ldlinux.sys');
    } finally {
      setHardwareContext({ deviceAllowlist: null });
      await loops.dispose();
    }
  });
});
