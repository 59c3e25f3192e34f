/**
 * standby.prepare_image / the write_image deploy step: validate, pick the root
 * device, (partition images: lay out the disk), stream the image, verify, config drive, record the UUIDs.
 * Any failure after the first write leaves the disk without a partition table, never half-deployed.
 */
import { z } from 'zod';
import { getLogger } from '../../common/logger.js';
import type { NodeInfo } from '../types.js';
import { DeploymentError, InvalidCommandParamsError } from '../../protocol/agent-api.js';
import { checksumPresenceError, expectedChecksum } from '../../image/checksum.js';
import { decodeConfigDrive, writeBytes, writeConfigDriveToDisk } from './configdrive.js';
import { deviceSize, diskIdentifier, fixGptBackup, listPartitionNames, partitionTableType, probe, rereadPartitions, wipeEnds, zeroStaleTail } from '../../block/disk.js';
import type { DownloadAuth } from '../../image/download.js';
import { assertSafeToWrite, rootDevice } from './hw.js';
import { createLayout, ephemeralMkfs, formatAuxiliary, type LayoutRequest } from '../../block/partition.js';
import { Progress, type ProgressFn } from '../../image/progress.js';
import { imageSettings } from '../../image/settings.js';
import { streamImageToDevice } from '../../image/write.js';
import { errorMessage } from '../../common/errors.js';

const log = getLogger('image-prepare');

export const ImageInfoSchema = z.looseObject({
  id: z.string().min(1),
  urls: z.array(z.string().min(1)).min(1),
  disk_format: z.string().nullish(),
  container_format: z.string().nullish(),
  checksum: z.string().min(1).nullish(),
  os_hash_algo: z.string().nullish(),
  os_hash_value: z.string().nullish(),
  image_type: z.string().nullish(),
  root_mb: z.coerce.number().int().nonnegative().nullish(),
  swap_mb: z.coerce.number().int().nonnegative().nullish(),
  ephemeral_mb: z.coerce.number().int().nonnegative().nullish(),
  ephemeral_format: z.string().nullish(),
  preserve_ephemeral: z.boolean().nullish(),
  deploy_boot_mode: z.string().nullish(),
  disk_label: z.string().nullish(),
  configdrive: z.string().nullish(),
  image_request_authorization: z.string().nullish(),
  image_server_auth_strategy: z.string().nullish(),
  image_server_user: z.string().nullish(),
  image_server_password: z.string().nullish(),
});
export type ImageInfo = z.infer<typeof ImageInfoSchema>;

export const PrepareImageParams = z.looseObject({
  image_info: ImageInfoSchema,
  configdrive: z.string().nullish(),
});

export interface PartitionUuids {
  'root uuid'?: string;
  'efi system partition uuid'?: string;
  partitions?: Record<string, string>;
  [k: string]: unknown;
}

/** What get_partition_uuids returns: recorded by the last successful prepare_image in this process. */
let lastUuids: PartitionUuids = {};
let lastWritten: { id: string; device: string } | null = null;

export function getPartitionUuids(): PartitionUuids {
  return lastUuids;
}

export function resetImageState(): void {
  lastUuids = {};
  lastWritten = null;
}

/** IPA's _validate_image_info: InvalidCommandParamsError for the caller (400 for prepare_image). */
export function validateImageInfo(raw: unknown): ImageInfo {
  const r = ImageInfoSchema.safeParse(raw);
  if (!r.success) {
    throw new InvalidCommandParamsError(r.error.issues.map((i) => `image_info.${i.path.join('.')}: ${i.message}`).join('; '));
  }
  const missing = checksumPresenceError(r.data);
  if (missing) throw new InvalidCommandParamsError(missing);
  if (r.data.image_type === 'partition' && (r.data.root_mb === undefined || r.data.root_mb === null)) {
    throw new InvalidCommandParamsError('image_info.root_mb is required for partition images');
  }
  return r.data;
}

function authOf(info: ImageInfo): DownloadAuth | undefined {
  if (info.image_request_authorization) {
    return { authorization: Buffer.from(info.image_request_authorization, 'base64').toString('utf8') };
  }
  if (info.image_server_auth_strategy === 'http_basic') {
    if (!info.image_server_user || !info.image_server_password) {
      throw new InvalidCommandParamsError('http_basic image server auth needs image_server_user and image_server_password');
    }
    return { authorization: `Basic ${Buffer.from(`${info.image_server_user}:${info.image_server_password}`).toString('base64')}` };
  }
  return undefined;
}

function capability(node: NodeInfo | null | undefined, key: string): string | undefined {
  for (const src of [node?.instance_info?.capabilities, node?.properties?.capabilities]) {
    if (typeof src === 'string') {
      for (const kv of src.split(',')) {
        const [k, v] = kv.split(':');
        if (k?.trim() === key && v) return v.trim();
      }
    } else if (src && typeof src === 'object' && key in src) return String((src as Record<string, unknown>)[key]);
  }
  return undefined;
}

export interface PrepareOptions {
  node?: NodeInfo | null;
  progress?: ProgressFn;
  signal?: AbortSignal;
  /** Write here instead of asking the managers (tests; still guarded by assertSafeToWrite). */
  device?: string;
  /** ESP size for partition images (IPA efi_system_partition_size, 550 MiB). */
  espMb?: number;
}

export interface PrepareResult {
  message: string;
  device: string;
  uuids: PartitionUuids;
}

export async function prepareImage(rawInfo: unknown, configdriveParam: string | null | undefined, o: PrepareOptions = {}): Promise<PrepareResult> {
  // Where the step's time goes (the deploy bench prints it): milliseconds per phase, in order.
  const phasesMs: Record<string, number> = {};
  let lapAt = performance.now();
  const lap = (name: string): void => {
    const now = performance.now();
    phasesMs[name] = Math.round(now - lapAt);
    lapAt = now;
  };
  const info = validateImageInfo(rawInfo);
  const configdrive = configdriveParam ?? info.configdrive ?? null;
  const auth = authOf(info);
  const device = o.device ?? (await rootDevice(o.node));
  lap('root device');
  await assertSafeToWrite(device);
  lap('safety check');
  const progress = new Progress(o.progress, info.id);
  const partitionImage = info.image_type === 'partition';
  const bootMode = (info.deploy_boot_mode ?? capability(o.node, 'boot_mode') ?? 'bios') === 'uefi' ? 'uefi' : 'bios';
  const label = (info.disk_label ?? capability(o.node, 'disk_label') ?? (bootMode === 'uefi' ? 'gpt' : 'msdos')) === 'gpt' ? 'gpt' : 'msdos';
  // Resolve the checksum (may download a checksums file) before the disk is touched.
  const expected = await expectedChecksum(info, auth);
  const cd = configdrive ? await decodeConfigDrive(configdrive, info.id) : null;
  const diskBytes = await deviceSize(device);
  lap('checksum, config drive, size');
  const skip = lastWritten?.id === info.id && lastWritten.device === device;
  let touched = false;
  try {
    let uuids: PartitionUuids;
    if (partitionImage) {
      const req: LayoutRequest = {
        rootMb: info.root_mb ?? 0,
        swapMb: info.swap_mb ?? 0,
        ephemeralMb: info.ephemeral_mb ?? 0,
        ephemeralFormat: info.ephemeral_format ?? null,
        configdriveMb: cd ? Math.max(1, Math.ceil(cd.length / 1048576)) : 0,
        bootMode,
        diskLabel: label,
        espMb: o.espMb ?? imageSettings().efiSystemPartitionMb,
        preserveEphemeral: info.preserve_ephemeral ?? false,
        diskBytes,
      };
      // Refuse a format outside the allow-list before the disk is touched (the command fails with the reason).
      if (req.ephemeralMb > 0) ephemeralMkfs(req.ephemeralFormat, '');
      progress.setPhase('partitioning');
      touched = true;
      const layout = await createLayout(device, req);
      await assertSafeToWrite(layout.root);
      if (!skip) {
        await streamImageToDevice({ info, device: layout.root, limit: layout.rootBytes, progress, expected, ...(auth ? { auth } : {}), ...(o.signal ? { signal: o.signal } : {}) });
      }
      const rootFs = await probe(layout.root);
      if (!rootFs.UUID) throw new DeploymentError(`No filesystem found in the image written to ${layout.root}`);
      await formatAuxiliary(layout, req);
      if (cd && layout.partitions.configdrive) await writeBytes(layout.partitions.configdrive, cd);
      const esp = layout.partitions['efi system partition'];
      uuids = { 'root uuid': rootFs.UUID, partitions: { ...layout.partitions } as Record<string, string> };
      if (esp) uuids['efi system partition uuid'] = (await probe(esp)).UUID ?? '';
    } else {
      if (!skip) {
        touched = true;
        await zeroStaleTail(device);
        lap('zero stale tail');
        await streamImageToDevice({ info, device, limit: diskBytes, progress, expected, ...(auth ? { auth } : {}), ...(o.signal ? { signal: o.signal } : {}) });
        lap('download+write+verify');
      }
      progress.setPhase('partition table');
      await fixGptBackup(device);
      lap('gpt backup');
      await rereadPartitions(device);
      lap('re-read table');
      // The kernel showing the image's partitions is the check that a valid table was written (blkid only runs
      // to name the failure).
      if ((await listPartitionNames(device)).length === 0) {
        if (!(await partitionTableType(device))) {
          throw new DeploymentError(`Unable to find a valid partition table on the disk after writing the image. The image may be corrupted or not a whole-disk image (device ${device})`);
        }
        throw new DeploymentError(`No partitions found on the device ${device} after writing the image`);
      }
      uuids = { 'root uuid': await diskIdentifier(device) };
      if (cd) {
        progress.setPhase('configdrive');
        touched = true;
        const p = await writeConfigDriveToDisk(device, cd);
        uuids.partitions = { configdrive: p };
        lap('config drive');
      }
    }
    progress.setPhase('done');
    lastUuids = uuids;
    lastWritten = { id: info.id, device };
    let message = `image (${info.id}) written to device ${device} root_uuid=${uuids['root uuid'] ?? ''}`;
    if (bootMode === 'uefi' && uuids['efi system partition uuid']) {
      message += ` efi_system_partition_uuid=${uuids['efi system partition uuid']}`;
    }
    lap('finish');
    log.info({ device, image: info.id, checksum: expected.algo, uuids, phasesMs }, 'prepare_image done');
    return { message, device, uuids };
  } catch (e) {
    lastWritten = null;
    lastUuids = {};
    if (touched) {
      log.error({ device, err: errorMessage(e) }, 'image deployment failed: wiping the partition table');
      await wipeEnds(device).catch((w: unknown) => log.error({ device, err: errorMessage(w) }, 'wipe after failure failed'));
    }
    throw e;
  }
}
