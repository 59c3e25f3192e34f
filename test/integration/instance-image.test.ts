/**
 * The instance images the demo and e2e deploy really boot: QEMU (TCG) boots them from disk and the serial
 * console shows the marker line and the config drive's meta_data. Variants (qcow2, gzip, zstd) round-trip to the
 * same bytes, checksums agree with coreutils.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { gunzipSync } from 'node:zlib';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { have, run } from '../../common/exec.js';
import {
  CONFIG_DRIVE_NONE,
  INSTANCE_MARKER,
  assembleDiskFromPartitionImage,
  buildConfigDrive,
  buildInstanceInitramfs,
  buildPartitionImage,
  buildUefiWholeDiskImage,
  buildWholeDiskImage,
  compressImage,
  convertImage,
  fileChecksum,
  missingImageTools,
  missingUefiImageTools,
  parseConfigDriveOutput,
  writeChecksumFile,
} from '../../lab/instance-image.js';
import { OVMF_CODE, OVMF_VARS, startVm, type Vm, type VmOptions } from '../../lab/qemu.js';

const BOOT_TIMEOUT_MS = 120_000;

/** Boot a disk set with -no-reboot until the instance powers itself off; serial log returned (kept on failure). */
async function bootUntilDone(dir: string, disks: string[], markerId: string, extra: VmOptions = {}): Promise<string> {
  await mkdir(dir, { recursive: true });
  const vm: Vm = await startVm({ dir, name: 'instance', boot: 'disk', noReboot: true, disks, ...extra });
  try {
    await vm.waitForSerial(new RegExp(`BAREMETAL-TS-INSTANCE-DONE ${markerId}`), BOOT_TIMEOUT_MS);
    const exit = await Promise.race([vm.exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 30_000))]);
    assert.notEqual(exit, 'timeout', `instance did not power off (serial log ${vm.serialLog})`);
    return vm.readSerial();
  } catch (e) {
    throw new Error(`${(e as Error).message}\nserial log: ${vm.serialLog}`);
  } finally {
    await vm.stop();
  }
}

async function prerequisites(): Promise<string | undefined> {
  const missing = await missingImageTools();
  if (!(await have('qemu-system-x86_64'))) missing.push('qemu-system-x86_64');
  return missing.length ? `missing: ${missing.join(', ')}` : undefined;
}

test('instance images', async (t) => {
  const why = await prerequisites();
  if (why) {
    t.skip(why);
    return;
  }
  const dir = await mkdtemp(join(tmpdir(), 'bmts-instance-image-'));
  let failed = false;
  t.after(async () => {
    // Keep serial logs of a failed run for the CI artifact; clean up otherwise.
    if (!failed) await rm(dir, { recursive: true, force: true });
  });
  const initramfs = await buildInstanceInitramfs(join(dir, 'initrd.gz'));

  await t.test('whole-disk image boots from disk, prints marker and config drive (second disk)', async () => {
    try {
      const img = await buildWholeDiskImage({ dir: join(dir, 'wd'), initramfs, sizeMiB: 32 });
      assert.equal(img.sizeBytes, 32 * 1024 * 1024);
      assert.equal(img.markerLine, `${INSTANCE_MARKER} ${img.markerId}`);
      const cd = await buildConfigDrive({ dir: join(dir, 'wd'), metaData: { name: 'wd-node' }, userData: '#!/bin/sh\n' });
      const serial = await bootUntilDone(join(dir, 'wd'), [img.path, cd.isoPath], img.markerId);
      assert.match(serial, new RegExp(`^${img.markerLine} variant=whole-disk`, 'm'));
      const meta = parseConfigDriveOutput(serial);
      assert.ok(meta, `config drive not printed:\n${serial}`);
      assert.equal(meta.uuid, cd.metaData.uuid);
      assert.equal(meta.name, 'wd-node');
    } catch (e) {
      failed = true;
      throw e;
    }
  });

  await t.test('partition image boots with the syslinux story, config drive in a partition at the end', async () => {
    try {
      const part = await buildPartitionImage({ dir: join(dir, 'part'), initramfs, sizeMiB: 24 });
      const cd = await buildConfigDrive({ dir: join(dir, 'part'), metaData: { name: 'part-node' } });
      const disk = await assembleDiskFromPartitionImage(part.path, join(dir, 'part', 'disk.img'), {
        diskMiB: 64,
        startMiB: 2,
        configDrive: cd.isoPath,
      });
      const serial = await bootUntilDone(join(dir, 'part'), [disk], part.markerId);
      assert.match(serial, new RegExp(`^${part.markerLine} variant=partition`, 'm'));
      assert.match(serial, /^CONFIG-DRIVE-FOUND \/dev\/vda2$/m);
      assert.equal(parseConfigDriveOutput(serial)?.uuid, cd.metaData.uuid);
      // Without a config drive the instance says so rather than staying silent.
      const bare = await assembleDiskFromPartitionImage(part.path, join(dir, 'part', 'bare.img'));
      const serial2 = await bootUntilDone(join(dir, 'part', 'bare'), [bare], part.markerId);
      assert.match(serial2, new RegExp(`^${CONFIG_DRIVE_NONE}$`, 'm'));
    } catch (e) {
      failed = true;
      throw e;
    }
  });

  await t.test('UEFI whole-disk image: GPT + ESP, OVMF boots its removable-path GRUB', async (st) => {
    const lacking = [...await missingUefiImageTools(), ...[OVMF_CODE, OVMF_VARS].filter((f) => !existsSync(f))];
    if (lacking.length) {
      st.skip(`missing: ${lacking.join(', ')}`);
      return;
    }
    try {
      const img = await buildUefiWholeDiskImage({ dir: join(dir, 'uefi'), initramfs, sizeMiB: 32 });
      assert.equal(img.sizeBytes, 32 * 1024 * 1024);
      const table = (await run('sgdisk', ['-p', img.path], { quiet: true })).stdout;
      assert.match(table, /^\s+1\s+2048\s+\d+\s+.*EF00/m, `one ESP from 1 MiB:\n${table}`);
      const esp = `${img.path}@@1M`;
      assert.match((await run('mdir', ['-i', esp, '-b', '::EFI/BOOT'], { quiet: true })).stdout, /BOOTX64\.EFI/i);
      const vars = join(dir, 'uefi', 'OVMF_VARS.fd');
      await copyFile(OVMF_VARS, vars);
      const serial = await bootUntilDone(join(dir, 'uefi'), [img.path], img.markerId, { firmware: 'uefi', uefiVars: vars });
      assert.match(serial, new RegExp(`^${img.markerLine} variant=whole-disk-uefi `, 'm'));
      assert.match(serial, /BdsDxe: starting Boot[0-9A-F]{4} /, 'OVMF (not SeaBIOS) booted it');
    } catch (e) {
      failed = true;
      throw e;
    }
  });

  await t.test('qcow2, gzip and zstd variants round-trip; checksums match coreutils', async () => {
    const img = await buildWholeDiskImage({ dir: join(dir, 'var'), initramfs, sizeMiB: 32, markerId: 'variants' });
    const qcow = await convertImage(img.path, join(dir, 'var', 'disk.qcow2'), 'qcow2');
    const info = JSON.parse((await run('qemu-img', ['info', '--output=json', qcow])).stdout) as Record<string, unknown>;
    assert.equal(info.format, 'qcow2');
    assert.equal(info['virtual-size'], img.sizeBytes);
    const back = await convertImage(qcow, join(dir, 'var', 'back.raw'), 'raw');
    assert.equal(await fileChecksum(back, 'sha256'), img.sha256);

    const gz = await compressImage(img.path, 'gzip');
    assert.equal((await run('sh', ['-c', 'gzip -dc "$1" | sha256sum', 'sh', gz])).stdout.split(' ')[0], img.sha256);
    const zst = await compressImage(img.path, 'zstd');
    assert.equal((await run('sh', ['-c', 'zstd -dc "$1" | sha256sum', 'sh', zst])).stdout.split(' ')[0], img.sha256);

    assert.equal((await run('sha256sum', [img.path])).stdout.split(' ')[0], img.sha256);
    assert.equal((await run('md5sum', [img.path])).stdout.split(' ')[0], img.md5);
    const sumFile = await writeChecksumFile(img.path, 'sha256');
    await run('sha256sum', ['-c', '--status', sumFile.split('/').at(-1) ?? sumFile], { cwd: join(dir, 'var') });
  });

  await t.test('config drive: ISO9660 labelled config-2, gzip+base64 as Ironic sends it', async () => {
    const cd = await buildConfigDrive({ dir: join(dir, 'cd'), metaData: { uuid: 'fixed-uuid' }, userData: 'hello' });
    const iso = await readFile(cd.isoPath);
    assert.deepEqual(gunzipSync(Buffer.from(cd.gzipBase64, 'base64')), iso);
    const blkid = await run('blkid', ['-o', 'export', cd.isoPath], { okCodes: [0, 2] });
    assert.match(blkid.stdout, /^LABEL=config-2$/m);
    assert.match(blkid.stdout, /^TYPE=iso9660$/m);
    assert.equal(cd.metaData.uuid, 'fixed-uuid');
  });
});
