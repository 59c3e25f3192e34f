/**
 * Where the agent downloads the instance image from (Ironic's image_download_source: instance_info, then
 * driver_info, then [agent]image_download_source). `http`: image_source as given, the agent fetches the origin.
 * `local`: the conductor's image cache (conductor/image-cache/) downloads and verifies it once, converts qcow2 to
 * raw under force_raw_images, and hands this node its own URL, with the checksum of what that URL serves.
 * `swift`: there is no object store here; for an http(s) image_source Ironic too hands the URL over as is.
 */
import type { ConductorContext } from '../context.js';
import { InvalidParameterValue } from '../errors.js';
import { parseChecksum } from '../boot-server.js';
import type { Checksum } from '../image-cache/master.js';
import type { NodeRecord } from '../store/types.js';

export type ImageDownloadSource = 'swift' | 'http' | 'local';
const SOURCES: readonly string[] = ['swift', 'http', 'local'];

export function defaultImageDownloadSource(ctx: ConductorContext): ImageDownloadSource {
  const legacy = ctx.config.deploy.image_download_source;
  return ctx.config.agent.image_download_source ?? (legacy === 'http' ? 'local' : 'http');
}

/** The node's effective image_download_source; an unknown per-node value is InvalidParameterValue. */
export function imageDownloadSource(ctx: ConductorContext, node: Pick<NodeRecord, 'instance_info' | 'driver_info'>):
  ImageDownloadSource {
  for (const [where, v] of [['instance_info', node.instance_info.image_download_source],
    ['driver_info', node.driver_info.image_download_source]] as const) {
    if (v === undefined || v === null || v === '') continue;
    if (typeof v !== 'string' || !SOURCES.includes(v)) {
      throw new InvalidParameterValue(`Invalid value for image_download_source in ${where}: ${JSON.stringify(v)}. ` +
        'Valid values are swift, http or local.');
    }
    return v as ImageDownloadSource;
  }
  return defaultImageDownloadSource(ctx);
}

/** The checksum instance_info promises: os_hash_algo/os_hash_value first, else image_checksum. */
export function expectedChecksum(ii: Record<string, unknown>): Checksum {
  const algo = typeof ii.image_os_hash_algo === 'string' ? ii.image_os_hash_algo.toLowerCase() : undefined;
  const value = typeof ii.image_os_hash_value === 'string' ? ii.image_os_hash_value : undefined;
  if (algo && value) {
    if (algo !== 'md5' && algo !== 'sha256' && algo !== 'sha512') {
      throw new InvalidParameterValue(`image_os_hash_algo ${algo} is not supported by the image cache (md5, sha256, sha512)`);
    }
    const hex = value.trim().toLowerCase();
    if (!/^[0-9a-f]+$/.test(hex)) throw new InvalidParameterValue('image_os_hash_value is not a hex digest');
    return { algo, hex };
  }
  if (typeof ii.image_checksum === 'string') {
    try {
      return parseChecksum(ii.image_checksum);
    } catch {
      throw new InvalidParameterValue(`image_checksum ${JSON.stringify(ii.image_checksum)} is not an md5, sha256 or sha512 digest`);
    }
  }
  throw new InvalidParameterValue('the image cache needs image_checksum or image_os_hash_algo/image_os_hash_value');
}

export interface ResolvedImage {
  url: string;
  /** image_info keys that replace what instance_info says (checksum and format of the served bytes). */
  imageInfo: Record<string, unknown>;
}

export async function resolveImage(ctx: ConductorContext, node: NodeRecord, source: string): Promise<ResolvedImage> {
  if (imageDownloadSource(ctx, node) !== 'local') return { url: source, imageInfo: {} };
  if (!ctx.imageCache) {
    throw new InvalidParameterValue('image_download_source is "local" but this conductor runs no image cache');
  }
  const expected = expectedChecksum(node.instance_info);
  if (expected.algo === 'md5' && !ctx.config.agent.allow_md5_checksum) {
    throw new InvalidParameterValue('md5 image checksums are not allowed (agent.allow_md5_checksum is off)');
  }
  const img = await ctx.imageCache.acquireForNode(node.uuid, { url: source, expected, forceRaw: ctx.config.force_raw_images });
  const imageInfo: Record<string, unknown> = {
    // The agent verifies the bytes it gets from us: the served checksum, never md5 of the original.
    checksum: undefined, os_hash_algo: img.served.algo, os_hash_value: img.served.hex,
  };
  if (img.diskFormat) imageInfo.disk_format = img.diskFormat;
  return { url: img.url, imageInfo };
}

/** URL only (kept for callers that need no checksum change). */
export async function resolveImageUrl(ctx: ConductorContext, node: NodeRecord, source: string): Promise<string> {
  return (await resolveImage(ctx, node, source)).url;
}
