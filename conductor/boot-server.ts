/**
 * The conductor's own HTTP server for network boot: static files under http_root (iPXE scripts, deploy kernels
 * and ramdisks) and an image cache (Ironic's image_download_source=http idea). It listens on a loopback
 * address; nodes reach it through a guest-facing URL (`httpUrl`, e.g. http://10.0.2.100:PORT behind a QEMU
 * guestfwd) which the conductor itself never dials. Separate from the API server and port on purpose: boot
 * traffic is large, unauthenticated and read-only.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, realpath, rename, rm, stat, writeFile } from 'node:fs/promises';
import { get as httpGet, createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { get as httpsGet } from 'node:https';
import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns';
import type { AddressInfo, LookupFunction } from 'node:net';
import { basename, join, sep } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BaremetalError } from '../common/errors.js';
import { getLogger } from '../common/logger.js';
import { isInternalAddress } from './file-access.js';

const log = getLogger('boot-server');

export interface BootServerOptions {
  httpRoot: string;
  /** Listen address; loopback by default (nodes come in through port forwarding, never directly). */
  host?: string;
  /** 0 = any free port. */
  port?: number;
  /** Guest-facing base URL; default http://host:port (only right when nodes can reach the listen address). */
  httpUrl?: string;
  /** Where cached images live (served under /_images/); default <httpRoot>/_images. */
  cacheDir?: string;
  /** Per-download limit for cacheImage. */
  downloadTimeoutS?: number;
  /**
   * Let cacheImage fetch loopback/link-local addresses (deploy.image_cache_allow_loopback; labs and tests serve
   * images on 127.0.0.1). Off by default: the cache must not become a way to read the conductor host's services.
   */
  allowLoopback?: boolean;
}

/** Serves one request under a mounted prefix; resolves once the response is done. */
export type MountHandler = (req: IncomingMessage, res: ServerResponse) => Promise<unknown>;

export interface RequestRecord { method: string; path: string; status: number; bytes: number; range?: string }

export interface CachedImage {
  /** Guest-facing URL of the cached copy. */
  url: string;
  path: string;
  sha256: string;
  size: number;
}

export interface BootServer {
  readonly port: number;
  /** Loopback URL the conductor (and tests) use. */
  readonly localUrl: string;
  /** Guest-facing base URL handed to nodes. */
  readonly httpUrl: string;
  readonly httpRoot: string;
  /** Recent requests, oldest first (bounded), so tests and logs can tell what a node fetched. */
  readonly requests: RequestRecord[];
  /** Guest-facing URL for a path relative to http_root. */
  urlFor(relPath: string): string;
  /**
   * Download an http(s) URL once (checksummed; concurrent callers share one download) and return its guest-facing
   * URL. Loopback/link-local sources only with `allowLoopback`; redirects are not followed.
   */
  cacheImage(sourceUrl: string, opts?: { checksum?: string }): Promise<string>;
  cacheImageDetailed(sourceUrl: string, opts?: { checksum?: string }): Promise<CachedImage>;
  /** Hands requests under `prefix` to `handler` (the conductor's image cache serves per-node images so). */
  mount(prefix: string, handler: MountHandler): void;
  close(): Promise<void>;
}

export class ImageCacheError extends BaremetalError {
  constructor(message: string) { super(message, { code: 'ImageDownloadFailed', status: 500 }); }
}

/** True for hosts on this machine only: the conductor may fetch from these, never from guest-facing addresses. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h);
}

/** Expected checksum forms: "sha256:hex", "md5:hex", or bare hex (algorithm by length). */
export function parseChecksum(s: string): { algo: 'md5' | 'sha256' | 'sha512'; hex: string } {
  const m = /^(?:(md5|sha256|sha512):)?([0-9a-f]+)$/i.exec(s.trim());
  const byLen: Record<number, 'md5' | 'sha256' | 'sha512'> = { 32: 'md5', 64: 'sha256', 128: 'sha512' };
  const algo = (m?.[1]?.toLowerCase() as 'md5' | 'sha256' | 'sha512' | undefined) ?? (m ? byLen[m[2]!.length] : undefined);
  if (!m || !algo) throw new ImageCacheError(`unrecognised checksum ${JSON.stringify(s)}`);
  return { algo, hex: m[2]!.toLowerCase() };
}

function contentType(p: string): string {
  if (p.endsWith('.ipxe') || p.includes('/pxelinux.cfg/') || p.endsWith('/config')) return 'text/plain; charset=utf-8';
  if (p.endsWith('.json')) return 'application/json';
  return 'application/octet-stream';
}

/** Parse a single `bytes=` range against a size; undefined = no/ignored range, null = unsatisfiable. */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | null | undefined {
  if (!header) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return undefined; // multi-range or junk: serve the whole file
  let start: number;
  let end: number;
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0) return null;
    start = Math.max(size - n, 0);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (start >= size || start > end) return null;
  return { start, end };
}

/** The URL cacheImage may fetch, or ImageCacheError: http(s) only, no loopback/link-local unless allowed. */
export function checkCacheSource(sourceUrl: string, allowLoopback: boolean): URL {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point of this check
  if (/[\s\x00-\x1f\x7f]/.test(sourceUrl)) throw new ImageCacheError(`cannot cache ${JSON.stringify(sourceUrl)}: whitespace or control characters in the URL`);
  let u: URL;
  try { u = new URL(sourceUrl); } catch { throw new ImageCacheError(`cannot cache ${JSON.stringify(sourceUrl)}: not a URL`); }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new ImageCacheError(`cannot cache ${sourceUrl}: only http(s) URLs are fetched by the conductor`);
  }
  if (!allowLoopback && (isLoopbackHost(u.hostname) || isInternalAddress(u.hostname))) {
    throw new ImageCacheError(`refusing to fetch ${u.origin}${u.pathname} from the conductor: loopback and link-local ` +
      'addresses are not allowed (deploy.image_cache_allow_loopback)');
  }
  return u;
}

/** dns.lookup that fails for loopback/link-local results unless they are allowed. */
export function guardedLookup(allowLoopback: boolean): LookupFunction {
  return ((hostname: string, options: LookupOptions, cb: (e: NodeJS.ErrnoException | null, a: string | LookupAddress[], f?: number) => void) => {
    dnsLookup(hostname, { ...options, all: true }, (err, addrs) => {
      if (err) return cb(err, '', 0);
      const list = addrs as LookupAddress[];
      if (!allowLoopback && list.some((a) => isInternalAddress(a.address))) {
        return cb(Object.assign(new Error(`${hostname} resolves to a loopback or link-local address`), { code: 'EACCES' }), '', 0);
      }
      if (options.all) return cb(null, list);
      const first = list[0];
      return first ? cb(null, first.address, first.family) : cb(Object.assign(new Error(`${hostname}: no address`), { code: 'ENOTFOUND' }), '', 0);
    });
  }) as LookupFunction;
}

export async function startBootServer(opts: BootServerOptions): Promise<BootServer> {
  await mkdir(opts.httpRoot, { recursive: true });
  const root = await realpath(opts.httpRoot);
  const cacheDir = opts.cacheDir ?? join(root, '_images');
  await mkdir(cacheDir, { recursive: true });
  const cacheReal = await realpath(cacheDir);
  const requests: RequestRecord[] = [];
  const inflight = new Map<string, Promise<CachedImage>>();
  const mounts: Array<{ prefix: string; handler: MountHandler }> = [];

  const resolveFile = async (urlPath: string): Promise<string | undefined> => {
    let rel: string;
    try { rel = decodeURIComponent(urlPath.split('?')[0] ?? '/'); } catch { return undefined; }
    if (rel.includes('\0') || rel.split('/').includes('..')) return undefined;
    const [base, sub] = rel.startsWith('/_images/') ? [cacheReal, rel.slice('/_images/'.length)] : [root, rel.replace(/^\/+/, '')];
    let real: string;
    try { real = await realpath(join(base, sub)); } catch { return undefined; }
    // Symlinks are fine (per-MAC links to per-node configs) as long as they stay inside the served tree.
    if (real !== base && !real.startsWith(base + sep)) return undefined;
    if (basename(real).endsWith('.part') || basename(real) === 'meta.json') return undefined;
    return real;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const method = req.method ?? 'GET';
    const path = req.url ?? '/';
    const rec: RequestRecord = { method, path, status: 0, bytes: 0 };
    if (typeof req.headers.range === 'string') rec.range = req.headers.range;
    requests.push(rec);
    if (requests.length > 1000) requests.splice(0, requests.length - 1000);
    const finish = (status: number, body = '', headers: Record<string, string | number> = {}): void => {
      rec.status = status;
      res.writeHead(status, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(body), ...headers });
      res.end(method === 'HEAD' ? undefined : body);
    };
    const mounted = mounts.find((m) => path.startsWith(m.prefix));
    if (mounted) {
      await mounted.handler(req, res);
      rec.status = res.statusCode;
      return;
    }
    if (method !== 'GET' && method !== 'HEAD') return finish(405, 'method not allowed\n', { Allow: 'GET, HEAD' });
    const file = await resolveFile(path);
    const st = file ? await stat(file).catch(() => undefined) : undefined; // missing file: a 404 below
    if (!file || !st?.isFile()) return finish(404, 'not found\n');
    const range = parseRange(req.headers.range, st.size);
    const common = { 'Content-Type': contentType(file), 'Accept-Ranges': 'bytes', 'Last-Modified': st.mtime.toUTCString() };
    if (range === null) return finish(416, '', { 'Content-Range': `bytes */${st.size}` });
    const start = range?.start ?? 0;
    const end = range?.end ?? st.size - 1;
    rec.status = range ? 206 : 200;
    res.writeHead(rec.status, {
      ...common, 'Content-Length': st.size === 0 ? 0 : end - start + 1,
      ...(range ? { 'Content-Range': `bytes ${start}-${end}/${st.size}` } : {}),
    });
    if (method === 'HEAD' || st.size === 0) { res.end(); return; }
    const stream = createReadStream(file, { start, end });
    stream.on('data', (c) => { rec.bytes += c.length; });
    await pipeline(stream, res).catch((e: unknown) => log.debug({ path, err: String(e) }, 'client went away'));
  };

  const server: Server = createServer({ keepAliveTimeout: 30_000 }, (req, res) => {
    handle(req, res).catch((e: unknown) => {
      log.error({ err: String(e), path: req.url }, 'boot server error');
      if (!res.headersSent) { res.writeHead(500); res.end(); } else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const host = opts.host ?? '127.0.0.1';
  const localUrl = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  const httpUrl = (opts.httpUrl ?? localUrl).replace(/\/+$/, '');
  const urlFor = (rel: string): string => `${httpUrl}/${rel.replace(/^\/+/, '').split('/').map(encodeURIComponent).join('/')}`;
  log.info({ localUrl, httpUrl, root }, 'boot server listening');

  const download = async (sourceUrl: string, checksum: string | undefined): Promise<CachedImage> => {
    const u = checkCacheSource(sourceUrl, opts.allowLoopback ?? false);
    const key = createHash('sha256').update(sourceUrl).digest('hex').slice(0, 24);
    const name = basename(u.pathname) || 'image';
    const dir = join(cacheReal, key);
    const file = join(dir, name);
    const rel = `_images/${key}/${name}`;
    const want = checksum ? parseChecksum(checksum) : undefined;
    // No or unreadable cache metadata: the image is fetched again.
    const meta = await readFile(join(dir, 'meta.json'), 'utf8').then((t) => JSON.parse(t) as Record<string, string | number>).catch(() => undefined);
    if (meta && meta.url === sourceUrl && (await stat(file).catch(() => undefined))?.size === meta.size &&
        (!want || meta[want.algo] === want.hex)) {
      return { url: urlFor(rel), path: file, sha256: String(meta.sha256), size: Number(meta.size) };
    }
    await mkdir(dir, { recursive: true });
    const part = `${file}.part`;
    const hashes = { md5: createHash('md5'), sha256: createHash('sha256'), sha512: createHash('sha512') };
    let size = 0;
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      const get = u.protocol === 'https:' ? httpsGet : httpGet;
      // The address is checked after DNS too: a name that resolves to 127.0.0.1 is still the conductor host.
      const req = get(u, { timeout: (opts.downloadTimeoutS ?? 600) * 1000, lookup: guardedLookup(opts.allowLoopback ?? false) }, resolve);
      req.on('timeout', () => req.destroy(new Error('timed out')));
      req.on('error', reject);
    }).catch((e: unknown) => { throw new ImageCacheError(`download of ${sourceUrl} failed: ${String(e)}`); });
    if (res.statusCode !== 200) {
      // Redirects are not followed (they could point anywhere the checks above refused).
      res.resume();
      throw new ImageCacheError(`download of ${sourceUrl} failed: HTTP ${res.statusCode}`);
    }
    const hasher = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        size += chunk.length;
        for (const h of Object.values(hashes)) h.update(chunk);
        cb(null, chunk);
      },
    });
    try {
      await pipeline(res, hasher, createWriteStream(part));
    } catch (e) {
      await rm(part, { force: true });
      throw new ImageCacheError(`download of ${sourceUrl} failed: ${String(e)}`);
    }
    const digests = { md5: hashes.md5.digest('hex'), sha256: hashes.sha256.digest('hex'), sha512: hashes.sha512.digest('hex') };
    if (want && digests[want.algo] !== want.hex) {
      await rm(part, { force: true });
      throw new ImageCacheError(`checksum mismatch for ${sourceUrl}: expected ${want.algo} ${want.hex}, got ${digests[want.algo]}`);
    }
    await rename(part, file);
    await writeFile(join(dir, 'meta.json'), JSON.stringify({ url: sourceUrl, size, ...digests }));
    log.info({ sourceUrl, size, sha256: digests.sha256 }, 'image cached');
    return { url: urlFor(rel), path: file, sha256: digests.sha256, size };
  };

  const cacheImageDetailed = (sourceUrl: string, o: { checksum?: string } = {}): Promise<CachedImage> => {
    const k = `${sourceUrl}\n${o.checksum ?? ''}`;
    let p = inflight.get(k);
    if (!p) {
      p = download(sourceUrl, o.checksum).finally(() => inflight.delete(k));
      inflight.set(k, p);
    }
    return p;
  };

  return {
    port, localUrl, httpUrl, httpRoot: root, requests, urlFor, cacheImageDetailed,
    mount: (prefix, handler) => { mounts.push({ prefix, handler }); },
    cacheImage: async (u, o) => (await cacheImageDetailed(u, o)).url,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
