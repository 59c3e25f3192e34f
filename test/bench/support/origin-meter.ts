/**
 * Origin-side figures for fleet deploys: an image origin on 127.0.0.1 that counts the bytes it actually sent per
 * file (aborted responses count what left), and `originRatio` = origin bytes served / image size (1.0: the image
 * crossed the origin's link once, however many nodes deployed it). `measureImageCacheFanout` is the same figure for
 * the conductor's image cache alone: N nodes ask for one image at once and each downloads its own URL in full.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, open, rm, stat } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Store } from '../../../conductor/store/types.js';
import { ConductorImageCache } from '../../../conductor/image-cache/node-images.js';

export interface OriginMeter {
  url(name: string): string;
  /** Bytes of response bodies sent for `name` (all files when absent). */
  bytesServed(name?: string): number;
  /** GET requests seen for `name` (all files when absent). */
  gets(name?: string): number;
  close(): Promise<void>;
}

export function originRatio(bytesServed: number, imageSize: number): number {
  return imageSize > 0 ? bytesServed / imageSize : Number.NaN;
}

/** Serves the files of `dir` (whole files, no Range: a cache that re-fetches shows up as a ratio above 1). */
export async function startOriginMeter(dir: string): Promise<OriginMeter> {
  const bytes = new Map<string, number>();
  const gets = new Map<string, number>();
  const server = http.createServer((req, res) => {
    const name = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname).replace(/^\/+/, '');
    gets.set(name, (gets.get(name) ?? 0) + 1);
    const file = join(dir, name);
    stat(file).then(async (st) => {
      if (name.includes('..') || !st.isFile()) throw new Error('not a file');
      res.writeHead(200, { 'content-length': String(st.size), 'content-type': 'application/octet-stream' });
      const s = createReadStream(file);
      s.on('data', (c) => { bytes.set(name, (bytes.get(name) ?? 0) + c.length); });
      await pipeline(s, res).catch(() => undefined); // a client that went away: its bytes so far are counted
    }).catch(() => { if (!res.headersSent) { res.writeHead(404); res.end(); } });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const sum = (m: Map<string, number>, name?: string): number =>
    name === undefined ? [...m.values()].reduce((a, b) => a + b, 0) : (m.get(name) ?? 0);
  return {
    url: (name) => `http://127.0.0.1:${port}/${name}`,
    bytesServed: (name) => sum(bytes, name),
    gets: (name) => sum(gets, name),
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

export interface FanoutResult {
  nodes: number;
  imageBytes: number;
  originBytes: number;
  originRatio: number;
  /** Seconds from the N concurrent requests to every node holding its URL (one origin download). */
  fetchS: number;
  /** Seconds for the N nodes to download their URLs from the cache, all at once. */
  serveS: number;
}

/**
 * N nodes deploy one image through a fresh image cache (no agents, no disks: each "node" reads its URL to the
 * end). Call it as `measureImageCacheFanout({ nodes: 50, sizeMiB: 256 })` and print `origin_ratio`.
 */
export async function measureImageCacheFanout(o: { nodes: number; sizeMiB: number }): Promise<FanoutResult> {
  const dir = await mkdtemp(join(tmpdir(), 'bmts-bench-fanout-'));
  const states = new Map<string, string>();
  const store = { getNodeByUuid: async (uuid: string) => (states.has(uuid) ? { uuid, provision_state: states.get(uuid) } : undefined) } as unknown as Store;
  let cache: ConductorImageCache | undefined;
  let origin: OriginMeter | undefined;
  try {
    const imageBytes = o.sizeMiB * 2 ** 20;
    const h = createHash('sha256');
    const fh = await open(join(dir, 'image.raw'), 'w');
    const block = Buffer.alloc(2 ** 20);
    for (let i = 0; i < o.sizeMiB; i++) {
      block.writeUInt32LE(i, 0); // not all zeroes, not compressible to nothing
      h.update(block);
      await fh.write(block);
    }
    await fh.close();
    origin = await startOriginMeter(dir);
    cache = await ConductorImageCache.start({ root: join(dir, 'cache'), sizeMib: o.sizeMiB * 2 + 64, ttlMinutes: 60,
      allowLoopback: true, downloadTimeoutS: 600, sweepIntervalS: 0, listenHost: '127.0.0.1', listenPort: 0,
      httpUrl: undefined }, store, undefined);
    const uuids = Array.from({ length: o.nodes }, (_, i) => `00000000-0000-4000-8000-${(i + 1).toString(16).padStart(12, '0')}`);
    for (const u of uuids) states.set(u, 'wait call-back');
    const req = { url: origin.url('image.raw'), expected: { algo: 'sha256' as const, hex: h.digest('hex') }, forceRaw: true };
    const c = cache;
    const t0 = performance.now();
    const got = await Promise.all(uuids.map((u) => c.acquireForNode(u, req)));
    const t1 = performance.now();
    await Promise.all(got.map(async (g) => {
      const res = await fetch(g.url);
      if (res.status !== 200 || !res.body) throw new Error(`node URL answered ${res.status}`);
      for await (const _chunk of res.body) { /* read to the end */ }
    }));
    const t2 = performance.now();
    const originBytes = origin.bytesServed('image.raw');
    return { nodes: o.nodes, imageBytes, originBytes, originRatio: originRatio(originBytes, imageBytes),
      fetchS: (t1 - t0) / 1000, serveS: (t2 - t1) / 1000 };
  } finally {
    await cache?.close();
    await origin?.close();
    await rm(dir, { recursive: true, force: true });
  }
}
