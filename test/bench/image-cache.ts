/**
 * `npm run bench -- image-cache [--nodes 50] [--size-mib 256]`: N nodes ask the conductor's image cache for one
 * image at once and each reads its own URL to the end (support/origin-meter.ts). origin_ratio = bytes the origin
 * sent / image size (goal 1.0). Last line: `image-cache nodes=… size_mib=… origin_ratio=… fetch_s=… serve_s=… serve_mib_s=…`.
 */
import { numArg, sizeMiBArg } from './support/args.js';
import { measureImageCacheFanout } from './support/origin-meter.js';

export default async function bench(args: string[]): Promise<void> {
  const nodes = numArg(args, '--nodes', 0, 50);
  const sizeMiB = sizeMiBArg(args, '--size-mib', 1, 256);
  const r = await measureImageCacheFanout({ nodes, sizeMiB });
  const mibS = (r.nodes * r.imageBytes) / 2 ** 20 / r.serveS;
  console.log(`origin sent ${r.originBytes} bytes for a ${r.imageBytes}-byte image to ${r.nodes} nodes`);
  console.log(`image-cache nodes=${r.nodes} size_mib=${sizeMiB} origin_ratio=${r.originRatio.toFixed(2)} ` +
    `fetch_s=${r.fetchS.toFixed(2)} serve_s=${r.serveS.toFixed(2)} serve_mib_s=${mibS.toFixed(0)}`);
}
