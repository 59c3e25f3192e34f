/**
 * The image_info the agent's write_image step gets
 * from the node's instance_info. Validation errors name the missing key, so `deploy` fails before any reboot.
 */
import { InvalidParameterValue, MissingParameterValue } from '../errors.js';
import { checkAllowedFile } from '../file-access.js';

export interface ImageInfoInput {
  uuid: string;
  instance_info: Record<string, unknown>;
  properties: Record<string, unknown>;
  boot_mode?: string | null;
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v.length > 0 ? v : undefined);
const num = (v: unknown): number | undefined => {
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (typeof v === 'string' && /^\d+$/.test(v)) return Number(v);
  return undefined;
};

function capability(props: Record<string, unknown>, ii: Record<string, unknown>, key: string): string | undefined {
  for (const caps of [ii.capabilities, props.capabilities]) {
    if (caps && typeof caps === 'object' && !Array.isArray(caps)) {
      const v = (caps as Record<string, unknown>)[key];
      if (typeof v === 'string') return v;
    }
    if (typeof caps === 'string') {
      for (const kv of caps.split(',')) {
        const [k, v] = kv.split(':');
        if (k?.trim() === key && v) return v.trim();
      }
    }
  }
  return undefined;
}

export function isPartitionImage(ii: Record<string, unknown>): boolean {
  if (ii.image_type === 'partition') return true;
  if (ii.image_type === 'whole-disk') return false;
  return Boolean(str(ii.kernel) && str(ii.ramdisk));
}

export function bootModeOf(n: ImageInfoInput, fallback: 'bios' | 'uefi'): 'bios' | 'uefi' {
  const m = str(n.instance_info.deploy_boot_mode) ?? capability(n.properties, n.instance_info, 'boot_mode') ?? n.boot_mode ?? fallback;
  return m === 'uefi' ? 'uefi' : 'bios';
}

export interface InstanceInfoPolicy {
  /** md5 image checksums accepted ([agent]allow_md5_checksum; off: md5 is broken for integrity). */
  allowMd5?: boolean;
  /** Directories a file:// image_source may name (file_url_allowed_paths); absent: not checked here. */
  allowedFileDirs?: readonly string[];
}

function isMd5Checksum(v: string): boolean {
  return /^md5:/i.test(v) || /^[0-9a-f]{32}$/i.test(v.trim());
}

/** Checks what write_image will need; run at deploy start. */
export function validateInstanceInfo(ii: Record<string, unknown>, policy: InstanceInfoPolicy = {}): void {
  const source = str(ii.image_source);
  if (!source) throw new MissingParameterValue('Node instance_info is missing the following required parameter: image_source');
  let url: URL;
  try {
    url = new URL(source);
  } catch {
    throw new InvalidParameterValue(`instance_info.image_source must be an http(s) or file URL, got ${source}`);
  }
  if (!['http:', 'https:', 'file:'].includes(url.protocol)) {
    throw new InvalidParameterValue(`instance_info.image_source must be an http(s) or file URL, got ${source}`);
  }
  const hasHash = str(ii.image_os_hash_algo) && str(ii.image_os_hash_value);
  if (!str(ii.image_checksum) && !hasHash) {
    throw new MissingParameterValue('Node instance_info is missing the image checksum: set image_checksum or ' +
      'image_os_hash_algo and image_os_hash_value');
  }
  if ((str(ii.image_os_hash_algo) === undefined) !== (str(ii.image_os_hash_value) === undefined)) {
    throw new InvalidParameterValue('image_os_hash_algo and image_os_hash_value must be set together');
  }
  if (!policy.allowMd5) {
    const algo = str(ii.image_os_hash_algo)?.toLowerCase();
    const checksum = str(ii.image_checksum);
    if (algo === 'md5' || (!hasHash && checksum !== undefined && isMd5Checksum(checksum))) {
      throw new InvalidParameterValue('md5 image checksums are not allowed (agent.allow_md5_checksum is off): ' +
        'set image_os_hash_algo/image_os_hash_value to a sha256 or sha512 hash');
    }
  }
  if (policy.allowedFileDirs && url.protocol === 'file:') checkAllowedFile(source, policy.allowedFileDirs, 'instance_info.image_source');
  if (isPartitionImage(ii) && num(ii.root_gb) === undefined && num(ii.root_mb) === undefined) {
    throw new MissingParameterValue('Node instance_info is missing root_gb, required for partition images');
  }
}

export function buildImageInfo(n: ImageInfoInput, urls: string[], defaultBootMode: 'bios' | 'uefi',
  policy: InstanceInfoPolicy = {}): Record<string, unknown> {
  const ii = n.instance_info;
  validateInstanceInfo(ii, policy);
  const source = str(ii.image_source)!;
  const id = source.split('/').filter(Boolean).at(-1) ?? n.uuid;
  const info: Record<string, unknown> = {
    id,
    urls,
    disk_format: str(ii.image_disk_format) ?? null,
    container_format: str(ii.image_container_format) ?? null,
    stream_raw_images: true,
    node_uuid: n.uuid,
    deploy_boot_mode: bootModeOf(n, defaultBootMode),
    boot_option: 'local',
  };
  if (str(ii.image_checksum)) info.checksum = ii.image_checksum;
  if (str(ii.image_os_hash_algo)) {
    info.os_hash_algo = ii.image_os_hash_algo;
    info.os_hash_value = ii.image_os_hash_value;
  }
  const label = capability(n.properties, ii, 'disk_label');
  if (label) info.disk_label = label;
  if (isPartitionImage(ii)) {
    const rootMb = num(ii.root_mb) ?? (num(ii.root_gb) ?? 0) * 1024;
    Object.assign(info, {
      image_type: 'partition',
      kernel: str(ii.kernel) ?? null,
      ramdisk: str(ii.ramdisk) ?? null,
      root_gb: num(ii.root_gb) ?? Math.ceil(rootMb / 1024),
      root_mb: rootMb,
      swap_mb: num(ii.swap_mb) ?? 0,
      ephemeral_mb: num(ii.ephemeral_mb) ?? (num(ii.ephemeral_gb) ?? 0) * 1024,
      ephemeral_format: str(ii.ephemeral_format) ?? null,
      preserve_ephemeral: ii.preserve_ephemeral === true,
    });
  } else {
    info.image_type = 'whole-disk';
  }
  return info;
}
