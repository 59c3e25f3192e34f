/**
 * Per-node copies of master images and the HTTP side of image_download_source=local. A node deploying from
 * the cache gets a hard link <root>/nodes/<node uuid>/<token>/<name> to the master file and the URL
 * <base>/agent_images/<node uuid>/<token>/<name>: the 256-bit token makes it unguessable, and every request checks
 * that the node is still deploying, so the URL answers 404 as soon as the node leaves deploy (active, deploy
 * failed, deleted). The links themselves are dropped by a sweep; while they exist the master image counts as in
 * use. Everything lives under the data directory, so whichever conductor owns the node next rebuilds its link
 * at write_image from instance_info.
 *
 * Served from the boot server when there is one (its guest-facing http_url already reaches nodes), otherwise
 * from a small server of its own started on first use (image_cache.listen_host/listen_port, image_cache.http_url).
 */
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { errorMessage } from '../../common/errors.js';
import { getLogger } from '../../common/logger.js';
import { parseRange, type BootServer } from '../boot-server.js';
import type { Store } from '../store/types.js';
import { MasterImageCache, type Checksum, type FetchRequest } from './master.js';

const log = getLogger('image-cache');

export const URL_PREFIX = '/agent_images/';
/** Provision states in which a node's image URL answers. */
const DEPLOY_STATES: ReadonlySet<string> = new Set(['deploying', 'wait call-back']);
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const TOKEN_RE = /^[A-Za-z0-9_-]{43}$/;
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export interface ImageCacheSettings {
  /** <data_dir>/image-cache unless configured. */
  root: string;
  sizeMib: number;
  ttlMinutes: number;
  allowLoopback: boolean;
  downloadTimeoutS: number;
  /** Seconds between sweeps of links of nodes that left deploy (and TTL clean-ups); 0: only before evictions. */
  sweepIntervalS: number;
  listenHost: string;
  listenPort: number;
  httpUrl: string | undefined;
}

export interface NodeImage {
  url: string;
  size: number;
  /** Checksum of the served bytes: what the agent must verify. */
  served: Checksum;
  /** 'raw' when the cache converted the image; null: as the origin served it. */
  diskFormat: 'raw' | null;
}

export interface ServeCounters { requests: number; bytes: number; notFound: number }

function safeName(sourceUrl: string): string {
  let last = 'image';
  try { last = decodeURIComponent(new URL(sourceUrl).pathname.split('/').filter(Boolean).at(-1) ?? 'image'); } catch { /* keep 'image' */ }
  const cleaned = last.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^[._-]+/, '').slice(0, 100);
  return NAME_RE.test(cleaned) ? cleaned : 'image';
}

export class ConductorImageCache {
  readonly served: ServeCounters = { requests: 0, bytes: 0, notFound: 0 };
  private readonly nodesDir: string;
  private server: Server | undefined;
  private serverStart: Promise<string> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private sweeping: Promise<void> | undefined;

  private constructor(readonly master: MasterImageCache, private readonly settings: ImageCacheSettings,
    private readonly store: Store, private readonly bootServer: BootServer | undefined) {
    this.nodesDir = join(settings.root, 'nodes');
  }

  static async start(settings: ImageCacheSettings, store: Store, bootServer: BootServer | undefined):
    Promise<ConductorImageCache> {
    let self: ConductorImageCache | undefined;
    const master = await MasterImageCache.open({
      root: settings.root, sizeBytes: settings.sizeMib * 2 ** 20, ttlMs: settings.ttlMinutes * 60_000,
      allowLoopback: settings.allowLoopback, downloadTimeoutS: settings.downloadTimeoutS,
      releaseStale: () => self?.sweep() ?? Promise.resolve(),
    });
    self = new ConductorImageCache(master, settings, store, bootServer);
    await mkdir(self.nodesDir, { recursive: true });
    bootServer?.mount(URL_PREFIX, (req, res) => self.handle(req, res));
    if (settings.sweepIntervalS > 0) {
      const s = self;
      s.timer = setInterval(() => {
        s.sweep().then(() => s.master.cleanUp())
          .catch((e: unknown) => log.warn({ err: errorMessage(e) }, 'image cache sweep failed'));
      }, settings.sweepIntervalS * 1000);
      s.timer.unref();
    }
    return self;
  }

  private baseUrl(): Promise<string> {
    if (this.bootServer) return Promise.resolve(this.bootServer.httpUrl);
    this.serverStart ??= new Promise<string>((resolve, reject) => {
      const srv = createServer({ keepAliveTimeout: 30_000 }, (req, res) => {
        this.handle(req, res).then((handled) => {
          if (!handled) { res.writeHead(404, { 'Content-Type': 'text/plain' }); res.end('not found\n'); }
        }, (e: unknown) => {
          log.error({ err: errorMessage(e) }, 'image server error');
          if (!res.headersSent) { res.writeHead(500); res.end(); } else res.destroy();
        });
      });
      srv.once('error', reject);
      srv.listen(this.settings.listenPort, this.settings.listenHost, () => {
        this.server = srv;
        const host = this.settings.listenHost.includes(':') ? `[${this.settings.listenHost}]` : this.settings.listenHost;
        const local = `http://${host}:${(srv.address() as AddressInfo).port}`;
        log.info({ local, httpUrl: this.settings.httpUrl }, 'image cache server listening');
        resolve((this.settings.httpUrl ?? local).replace(/\/+$/, ''));
      });
    });
    return this.serverStart;
  }

  /**
   * The node's own URL for the image (downloaded, verified and converted once, however many nodes ask). Any
   * earlier link of this node is replaced, so an old URL of a redeployed node stops working.
   */
  async acquireForNode(nodeUuid: string, req: FetchRequest): Promise<NodeImage> {
    if (!UUID_RE.test(nodeUuid)) throw new Error(`not a node UUID: ${nodeUuid}`);
    const base = await this.baseUrl();
    await this.releaseNode(nodeUuid);
    const token = randomBytes(32).toString('base64url');
    const name = safeName(req.url);
    const dir = join(this.nodesDir, nodeUuid, token);
    await mkdir(dir, { recursive: true, mode: 0o755 });
    try {
      // Linked under a name the server never serves, then renamed once the format of the cached bytes is known.
      const pending = join(dir, '.pending');
      const entry = await this.master.linkInto(req, pending);
      const served = entry.diskFormat === 'raw' ? `${name.replace(/\.(qcow2|img|raw)$/i, '')}.raw` : name;
      await rename(pending, join(dir, served));
      return { url: `${base}${URL_PREFIX}${nodeUuid}/${token}/${served}`, size: entry.size, served: entry.served,
        diskFormat: entry.diskFormat };
    } catch (e) {
      await rm(join(this.nodesDir, nodeUuid), { recursive: true, force: true });
      throw e;
    }
  }

  /** Drops the node's links: its URLs answer 404 and its images become unused (evictable). */
  async releaseNode(nodeUuid: string): Promise<void> {
    if (!UUID_RE.test(nodeUuid)) return;
    await rm(join(this.nodesDir, nodeUuid), { recursive: true, force: true });
  }

  /** Releases every node that is gone or no longer deploying. */
  sweep(): Promise<void> {
    this.sweeping ??= (async () => {
      try {
        for (const uuid of await readdir(this.nodesDir).catch(() => [] as string[])) {
          const node = UUID_RE.test(uuid) ? await this.store.getNodeByUuid(uuid) : undefined;
          if (!node || !DEPLOY_STATES.has(node.provision_state)) {
            await rm(join(this.nodesDir, uuid), { recursive: true, force: true });
          }
        }
      } finally {
        this.sweeping = undefined;
      }
    })();
    return this.sweeping;
  }

  /** Serves /agent_images/<node>/<token>/<name> with Range support; false for other paths. */
  async handle(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    const rawPath = (req.url ?? '/').split('?')[0] ?? '/';
    if (!rawPath.startsWith(URL_PREFIX)) return false;
    this.served.requests++;
    const method = req.method ?? 'GET';
    const answer = (status: number, body: string, headers: Record<string, string | number> = {}): true => {
      if (status === 404) this.served.notFound++;
      res.writeHead(status, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(body), ...headers });
      res.end(method === 'HEAD' ? undefined : body);
      return true;
    };
    if (method !== 'GET' && method !== 'HEAD') return answer(405, 'method not allowed\n', { Allow: 'GET, HEAD' });
    const [uuid, token, name, ...rest] = rawPath.slice(URL_PREFIX.length).split('/');
    if (rest.length || !uuid || !token || !name || !UUID_RE.test(uuid) || !TOKEN_RE.test(token) || !NAME_RE.test(name)) {
      return answer(404, 'not found\n');
    }
    const file = join(this.nodesDir, uuid, token, name);
    const st = await stat(file).catch(() => undefined); // absent: 404 below
    if (!st?.isFile()) return answer(404, 'not found\n');
    const node = await this.store.getNodeByUuid(uuid);
    if (!node || !DEPLOY_STATES.has(node.provision_state)) {
      await this.releaseNode(uuid);
      return answer(404, 'not found\n');
    }
    const range = parseRange(typeof req.headers.range === 'string' ? req.headers.range : undefined, st.size);
    if (range === null) return answer(416, '', { 'Content-Range': `bytes */${st.size}` });
    const start = range?.start ?? 0;
    const end = range?.end ?? st.size - 1;
    res.writeHead(range ? 206 : 200, {
      'Content-Type': 'application/octet-stream', 'Accept-Ranges': 'bytes',
      'Content-Length': st.size === 0 ? 0 : end - start + 1, 'Last-Modified': st.mtime.toUTCString(),
      ...(range ? { 'Content-Range': `bytes ${start}-${end}/${st.size}` } : {}),
    });
    if (method === 'HEAD' || st.size === 0) { res.end(); return true; }
    // 256 KiB reads instead of 64 KiB: a fleet streams GiBs through here, and each chunk is a thread-pool read and a JS turn.
    const stream = createReadStream(file, { start, end, highWaterMark: 256 * 1024 });
    stream.on('data', (c) => { this.served.bytes += c.length; });
    await pipeline(stream, res).catch((e: unknown) => log.debug({ err: errorMessage(e) }, 'image client went away'));
    return true;
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.sweeping;
    const srv = this.server;
    if (srv) {
      await new Promise<void>((resolve) => {
        srv.close(() => resolve());
        srv.closeAllConnections();
      });
    }
  }
}
