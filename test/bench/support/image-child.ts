/**
 * The agent side of `npm run bench -- image`: writes one image to a device and prints `BENCH-RESULT {json}`.
 * The bench bundles this file with esbuild (as ramdisk-build/bundle.ts bundles the agent) and runs the bundle
 * with plain node, so the peak RSS is the agent's own and not that of the tsx transpiler (~65 MiB more).
 */
import { assertSafeToWrite } from '../../../block/devices.js';
import { setHardwareContext } from '../../../hardware-managers/context.js';
import { setImageSettings } from '../../../image/settings.js';
import { streamImageToDevice } from '../../../image/write.js';

interface ChildArgs { url: string; sha256: string; dev: string; limit: number; algo?: 'sha256' | 'sha512'; sum?: string }

async function main(): Promise<void> {
  const a = JSON.parse(process.argv[2] ?? '{}') as ChildArgs;
  setHardwareContext({ deviceAllowlist: [a.dev] });
  const forced = process.env.BMTS_IMAGE_HASH_WORKER;
  setImageSettings({ hashInWorker: forced === '1' ? true : forced === '0' ? false : 'auto' });
  await assertSafeToWrite(a.dev);
  const t = process.hrtime.bigint();
  const r = await streamImageToDevice({
    info: { id: 'bench', urls: [a.url], os_hash_algo: a.algo ?? 'sha256', os_hash_value: a.sum ?? a.sha256 },
    device: a.dev,
    limit: a.limit,
  });
  const seconds = Number(process.hrtime.bigint() - t) / 1e9;
  const out = { seconds, rssMiB: process.resourceUsage().maxRSS / 1024, layers: r.layers, bytes: r.downloadedBytes };
  process.stdout.write(`BENCH-RESULT ${JSON.stringify(out)}\n`);
}

main().then(() => process.exit(0), (e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exit(1);
});
