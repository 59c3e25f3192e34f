/**
 * Which URL the agent downloads the instance image from. `direct` (default): image_source as given.
 * `http`: the conductor caches a loopback image_source on its boot server and hands the node the guest-facing
 * URL (Ironic's image_download_source=http), so nodes behind a restricted network never need the image server.
 */
import type { ConductorContext } from '../context.js';
import type { NodeRecord } from '../store/types.js';
import { InvalidParameterValue } from '../errors.js';

export async function resolveImageUrl(ctx: ConductorContext, node: NodeRecord, source: string): Promise<string> {
  const mode = node.instance_info.image_download_source ?? node.driver_info.image_download_source ??
    ctx.config.deploy.image_download_source;
  if (mode !== 'http') return source;
  if (!ctx.bootServer) {
    throw new InvalidParameterValue('image_download_source is "http" but this conductor runs no boot server to cache images');
  }
  return ctx.bootServer.cacheImage(source);
}
