/**
 * Config drive: gzip+base64 ISO9660/VFAT (inline or URL; raw bytes accepted),
 * written to a partition labelled config-2 at the end of the disk, created when the image has none.
 */
import { constants, promises as fsp } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { run } from '../../common/exec.js';
import { getLogger } from '../../common/logger.js';
import { DeploymentError } from '../../protocol/agent-api.js';
import { fixGptBackup, listPartitions, partitionTableType, rereadPartitions, type PartitionInfo } from '../../block/disk.js';
import { fetchSmall } from '../../image/download.js';
import { errorMessage } from '../../common/errors.js';

const log = getLogger('image-configdrive');
export const MAX_CONFIG_DRIVE_BYTES = 64 * 1024 * 1024;

export async function decodeConfigDrive(configdrive: string, imageId = 'configdrive'): Promise<Buffer> {
  let data: Buffer;
  if (/^https?:\/\//i.test(configdrive)) {
    try {
      data = await fetchSmall(configdrive, 2 * MAX_CONFIG_DRIVE_BYTES, { imageId });
    } catch (e) {
      throw new DeploymentError(`Failed to download the config drive from ${configdrive}: ${errorMessage(e)}`, e);
    }
  } else data = Buffer.from(configdrive, 'latin1');
  const text = data.toString('latin1').trim();
  if (/^[A-Za-z0-9+/=\r\n]+$/.test(text) && text.length % 4 === 0) data = Buffer.from(text, 'base64');
  if (data.length >= 2 && data[0] === 0x1f && data[1] === 0x8b) {
    try {
      data = gunzipSync(data, { maxOutputLength: MAX_CONFIG_DRIVE_BYTES + 1 });
    } catch (e) {
      throw new DeploymentError(`Config drive is not valid gzip: ${errorMessage(e)}`);
    }
  }
  if (data.length > MAX_CONFIG_DRIVE_BYTES) {
    throw new DeploymentError(`Config drive size exceeds maximum limit of ${MAX_CONFIG_DRIVE_BYTES >> 20} MiB`);
  }
  if (data.length === 0) throw new DeploymentError('Config drive is empty');
  return data;
}

export async function writeBytes(dev: string, data: Buffer): Promise<void> {
  const fh = await fsp.open(dev, constants.O_WRONLY);
  try {
    let off = 0;
    while (off < data.length) off += (await fh.write(data, off, data.length - off, off)).bytesWritten;
    await fh.sync();
  } finally {
    await fh.close();
  }
}

const isConfigDrive = (p: PartitionInfo): boolean => p.label?.toLowerCase() === 'config-2' || p.partlabel === 'config-2';

/** Whole-disk images: reuse the image's config-2 partition or add one in the last 64 MiB, then write it. */
export async function writeConfigDriveToDisk(dev: string, data: Buffer): Promise<string> {
  let parts = await listPartitions(dev);
  let target = parts.find(isConfigDrive);
  if (!target) {
    const table = await partitionTableType(dev);
    const before = new Set(parts.map((p) => p.number));
    if (table === 'gpt') {
      await fixGptBackup(dev);
      await run('sgdisk', ['-n', '0:-64MiB:0', '-c', '0:config-2', dev]).catch((e: unknown) => {
        throw new DeploymentError(`Could not create the config drive partition on ${dev}: ${errorMessage(e)}`, e);
      });
    } else if (table === 'dos') {
      const primaries = parts.filter((p) => p.number <= 4).length;
      if (primaries > 3) {
        throw new DeploymentError(`Config drive cannot be created for ${dev}: the disk already has 4 primary partitions`);
      }
      await run('parted', ['-a', 'optimal', '-s', '--', dev, 'mkpart', 'primary', 'fat32', '-64MiB', '-0']).catch(
        (e: unknown) => {
          throw new DeploymentError(`Could not create the config drive partition on ${dev}: ${errorMessage(e)}`, e);
        },
      );
    } else {
      throw new DeploymentError(`Unable to find a valid partition table on ${dev} for the config drive`);
    }
    await rereadPartitions(dev);
    parts = await listPartitions(dev);
    target = parts.find((p) => !before.has(p.number));
    if (!target) throw new DeploymentError(`The new config drive partition on ${dev} did not appear`);
  }
  if (data.length > target.size) {
    throw new DeploymentError(`Config drive (${data.length} bytes) does not fit ${target.path} (${target.size} bytes)`);
  }
  await writeBytes(target.path, data);
  log.info({ dev, partition: target.path, bytes: data.length }, 'config drive written');
  return target.path;
}
