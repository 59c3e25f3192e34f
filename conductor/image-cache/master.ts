/**
 * The conductor's master image cache (Ironic's master_images: ironic/drivers/modules/image_cache.py). One file
 * per (URL, expected checksum, raw or not) under <root>/master, next to a JSON record of what it is and its
 * checksums. Facts carried over from Ironic: the cap counts images in use too; images linked into a node's
 * directory (a hard link, so st_nlink > 1) are in use and never evicted; unused ones go when older than the TTL,
 * then least recently used first until a new image fits.
 *
 * Crash safety: a download goes to <root>/tmp, is fsynced and verified, its record is written (temp, fsync,
 * rename), and only then is the data renamed into master/: the rename is the commit. At start-up the directory is
 * re-indexed from the records; a record without its data, data without a record, or a size that disagrees are
 * removed, and tmp/ is emptied, so a partial download never becomes an entry.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { link, mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { errorMessage } from '../../common/errors.js';
import { getLogger } from '../../common/logger.js';
import { ImageCacheError } from '../boot-server.js';
import { convertQcow2ToRaw, inspectQcow2, isQcow2 } from './convert.js';
import { openOrigin } from './origin.js';

const log = getLogger('image-cache');

export type HashAlgo = 'md5' | 'sha256' | 'sha512';
export interface Checksum { algo: HashAlgo; hex: string }

export interface MasterEntry {
  key: string;
  url: string;
  path: string;
  size: number;
  /** Checksum of the origin's bytes (what instance_info promised). */
  expected: Checksum;
  /** Checksum of the bytes in the cache, i.e. what agents receive (differs from `expected` after conversion). */
  served: Checksum;
  /** 'raw' when converted from qcow2; null: the origin's bytes, format unchanged. */
  diskFormat: 'raw' | null;
  lastUsed: number;
}

interface EntryRecord {
  version: 1;
  key: string;
  url: string;
  size: number;
  expected: Checksum;
  served: Checksum;
  disk_format: 'raw' | null;
  created: string;
}

export interface MasterCacheOptions {
  root: string;
  /** Cap on the bytes of all entries, in use or not, plus downloads under way. */
  sizeBytes: number;
  /** Unused entries not used for this long are removed. */
  ttlMs: number;
  allowLoopback: boolean;
  downloadTimeoutS: number;
  /** Called before evicting, so links of nodes that left deploy are dropped and their images become unused. */
  releaseStale?: () => Promise<void>;
  now?: () => number;
}

export interface FetchRequest {
  url: string;
  expected: Checksum;
  forceRaw: boolean;
}

export class ImageCacheFull extends ImageCacheError {}

function isChecksum(v: unknown): v is Checksum {
  const c = v as Checksum | undefined;
  return !!c && ['md5', 'sha256', 'sha512'].includes(c.algo) && typeof c.hex === 'string' && /^[0-9a-f]+$/.test(c.hex);
}

async function fsyncPath(path: string, flags = 'r'): Promise<void> {
  const fh = await open(path, flags);
  try { await fh.sync(); } finally { await fh.close(); }
}

async function hashFile(path: string, algo: HashAlgo): Promise<string> {
  const h = createHash(algo);
  await pipeline(createReadStream(path), async function* (src: AsyncIterable<Buffer>) {
    for await (const c of src) h.update(c);
  });
  return h.digest('hex');
}

const mib = (n: number): string => `${(n / 2 ** 20).toFixed(1)} MiB`;

export class MasterImageCache {
  private readonly entries = new Map<string, MasterEntry>();
  private readonly inflight = new Map<string, Promise<MasterEntry>>();
  private reserved = 0;
  private chain: Promise<unknown> = Promise.resolve();
  /** Origin downloads started, cache hits, entries evicted (tests and benchmarks read these). */
  readonly stats = { originFetches: 0, originBytes: 0, hits: 0, evictions: 0 };
  private readonly masterDir: string;
  private readonly tmpDir: string;
  private readonly now: () => number;

  private constructor(readonly opts: MasterCacheOptions) {
    this.masterDir = join(opts.root, 'master');
    this.tmpDir = join(opts.root, 'tmp');
    this.now = opts.now ?? Date.now;
  }

  static async open(opts: MasterCacheOptions): Promise<MasterImageCache> {
    const c = new MasterImageCache(opts);
    await c.reindex();
    return c;
  }

  static keyOf(r: FetchRequest): string {
    return createHash('sha256').update(`${r.url}\n${r.expected.algo}:${r.expected.hex}\n${r.forceRaw ? 'raw' : 'as-is'}`)
      .digest('hex').slice(0, 32);
  }

  list(): MasterEntry[] { return [...this.entries.values()]; }

  totalBytes(): number {
    let t = 0;
    for (const e of this.entries.values()) t += e.size;
    return t;
  }

  /** Runs fn with no other index change in between (eviction vs. linking an entry into a node directory). */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.chain.then(fn, fn);
    this.chain = p.catch(() => undefined);
    return p;
  }

  private async reindex(): Promise<void> {
    await mkdir(this.masterDir, { recursive: true });
    await rm(this.tmpDir, { recursive: true, force: true });
    await mkdir(this.tmpDir, { recursive: true });
    const names = await readdir(this.masterDir);
    const kept = new Set<string>();
    for (const name of names.filter((n) => n.endsWith('.json'))) {
      const key = name.slice(0, -'.json'.length);
      const rec = await readFile(join(this.masterDir, name), 'utf8').then((t) => JSON.parse(t) as EntryRecord)
        .catch(() => undefined); // unreadable record: the entry is dropped below
      const path = join(this.masterDir, key);
      const st = await stat(path).catch(() => undefined);
      if (!rec || rec.key !== key || !isChecksum(rec.expected) || !isChecksum(rec.served) || !st?.isFile() ||
          st.size !== rec.size) {
        log.warn({ key }, 'dropping an incomplete image cache entry');
        continue;
      }
      kept.add(key);
      kept.add(name);
      // Linking a node's copy updates ctime: the newest of mtime/ctime is when the entry was last used.
      this.entries.set(key, { key, url: rec.url, path, size: rec.size, expected: rec.expected, served: rec.served,
        diskFormat: rec.disk_format, lastUsed: Math.max(st.mtimeMs, st.ctimeMs) });
    }
    for (const name of names) if (!kept.has(name)) await rm(join(this.masterDir, name), { recursive: true, force: true });
    if (this.entries.size) log.info({ entries: this.entries.size, bytes: this.totalBytes() }, 'image cache re-indexed');
  }

  private async inUse(e: MasterEntry): Promise<boolean> {
    const st = await stat(e.path).catch(() => undefined);
    return (st?.nlink ?? 1) > 1;
  }

  private async remove(e: MasterEntry, why: string): Promise<void> {
    this.entries.delete(e.key);
    await rm(e.path, { force: true });
    await rm(`${e.path}.json`, { force: true });
    this.stats.evictions++;
    log.info({ url: e.url, size: e.size, why }, 'image cache entry removed');
  }

  /** TTL clean-up of unused entries (periodic, and before each insert as Ironic does). */
  cleanUp(): Promise<void> {
    return this.serial(() => this.cleanUpLocked());
  }

  private async cleanUpLocked(): Promise<void> {
    const threshold = this.now() - this.opts.ttlMs;
    for (const e of [...this.entries.values()]) {
      if (e.lastUsed < threshold && !(await this.inUse(e))) await this.remove(e, 'expired');
    }
  }

  /** Makes room for `bytes` more (called under serial()); ImageCacheFull when images in use leave too little. */
  private async ensureRoom(bytes: number): Promise<void> {
    const cap = this.opts.sizeBytes;
    if (bytes > cap) throw new ImageCacheFull(`the image (${mib(bytes)}) is larger than the image cache (image_cache.size_mib = ${mib(cap)})`);
    if (this.totalBytes() + this.reserved + bytes <= cap) return;
    await this.opts.releaseStale?.();
    await this.cleanUpLocked();
    const byAge = [...this.entries.values()].sort((a, b) => a.lastUsed - b.lastUsed);
    for (const e of byAge) {
      if (this.totalBytes() + this.reserved + bytes <= cap) return;
      if (!(await this.inUse(e))) await this.remove(e, 'cache size');
    }
    if (this.totalBytes() + this.reserved + bytes > cap) {
      throw new ImageCacheFull(`image cache full: ${mib(bytes)} needed, ${mib(this.totalBytes() + this.reserved)} of ` +
        `${mib(cap)} held by images in use or being downloaded (image_cache.size_mib)`);
    }
  }

  private reserve(bytes: number): Promise<number> {
    return this.serial(async () => {
      await this.ensureRoom(bytes);
      this.reserved += bytes;
      return bytes;
    });
  }

  /**
   * Hard-links the image into `dest` (a node's directory), downloading it first unless cached. Concurrent calls
   * for the same request share one download; a checksum mismatch rejects them all and caches nothing.
   */
  async linkInto(req: FetchRequest, dest: string): Promise<MasterEntry> {
    for (let attempt = 0; ; attempt++) {
      const entry = await this.fetch(req);
      const linked = await this.serial(async () => {
        if (this.entries.get(entry.key) !== entry) return false; // evicted meanwhile: fetch again
        await rm(dest, { force: true });
        await link(entry.path, dest);
        entry.lastUsed = this.now();
        return true;
      });
      if (linked) return entry;
      if (attempt >= 2) throw new ImageCacheError(`image ${req.url} was evicted from the cache before use; retry`);
    }
  }

  /** The cached entry for a request, downloading it once however many callers ask at the same time. */
  fetch(req: FetchRequest): Promise<MasterEntry> {
    const key = MasterImageCache.keyOf(req);
    const hit = this.entries.get(key);
    if (hit) {
      this.stats.hits++;
      return Promise.resolve(hit);
    }
    let p = this.inflight.get(key);
    if (!p) {
      p = this.download(req, key).finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    return p;
  }

  private async download(req: FetchRequest, key: string): Promise<MasterEntry> {
    const stamp = randomBytes(6).toString('hex');
    const part = join(this.tmpDir, `${key}.${stamp}.part`);
    const rawPart = join(this.tmpDir, `${key}.${stamp}.raw`);
    let held = 0;
    const release = (n: number): void => { this.reserved -= n; held -= n; };
    try {
      this.stats.originFetches++;
      const origin = await openOrigin(req.url, { allowLoopback: this.opts.allowLoopback, timeoutS: this.opts.downloadTimeoutS });
      if (origin.length !== undefined) {
        try {
          held += await this.reserve(origin.length);
        } catch (e) {
          origin.body.destroy();
          throw e;
        }
      }
      const want = createHash(req.expected.algo);
      const sha256 = req.expected.algo === 'md5' ? createHash('sha256') : undefined;
      const stats = this.stats;
      const hasher = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          stats.originBytes += chunk.length;
          want.update(chunk);
          sha256?.update(chunk);
          cb(null, chunk);
        },
      });
      try {
        await pipeline(origin.body, hasher, createWriteStream(part, { mode: 0o644 }));
      } catch (e) {
        throw new ImageCacheError(`download of ${req.url} failed: ${errorMessage(e)}`);
      }
      const got = want.digest('hex');
      if (got !== req.expected.hex) {
        throw new ImageCacheError(`Image checksum mismatch for ${req.url}: expected ${req.expected.algo} ` +
          `${req.expected.hex}, the origin served ${got}`);
      }
      let dataPath = part;
      let served: Checksum = sha256 ? { algo: 'sha256', hex: sha256.digest('hex') } : { algo: req.expected.algo, hex: got };
      let diskFormat: 'raw' | null = null;
      if (req.forceRaw && await isQcow2(part)) {
        const timeoutMs = this.opts.downloadTimeoutS * 1000;
        const { virtualSize } = await inspectQcow2(part, timeoutMs);
        held += await this.reserve(virtualSize);
        await convertQcow2ToRaw(part, rawPart, timeoutMs);
        await rm(part, { force: true });
        dataPath = rawPart;
        // A new checksum for the converted bytes; md5 is never chosen for it (as Ironic switches md5 to sha256).
        const algo: HashAlgo = req.expected.algo === 'md5' ? 'sha256' : req.expected.algo;
        served = { algo, hex: await hashFile(rawPart, algo) };
        diskFormat = 'raw';
      }
      await fsyncPath(dataPath);
      const finalSize = (await stat(dataPath)).size;
      return await this.serial(async () => {
        release(held);
        await this.ensureRoom(finalSize);
        const path = join(this.masterDir, key);
        const rec: EntryRecord = { version: 1, key, url: req.url, size: finalSize, expected: req.expected, served,
          disk_format: diskFormat, created: new Date(this.now()).toISOString() };
        const recTmp = join(this.tmpDir, `${key}.${stamp}.json`);
        const fh = await open(recTmp, 'w', 0o644);
        try {
          await fh.writeFile(JSON.stringify(rec));
          await fh.sync();
        } finally {
          await fh.close();
        }
        await rename(recTmp, `${path}.json`);
        await rename(dataPath, path);
        await fsyncPath(this.masterDir);
        const entry: MasterEntry = { key, url: req.url, path, size: finalSize, expected: req.expected, served, diskFormat,
          lastUsed: this.now() };
        this.entries.set(key, entry);
        log.info({ url: req.url, size: finalSize, served: served.algo, converted: diskFormat === 'raw' }, 'image cached');
        return entry;
      });
    } finally {
      if (held) release(held);
      await rm(part, { force: true });
      await rm(rawPart, { force: true });
    }
  }
}
