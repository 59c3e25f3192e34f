/**
 * Opening an image at its origin for the conductor's master image cache: http(s) with the same loopback /
 * link-local guard as the boot server's cache (conductor/boot-server.ts), or a file:// path that
 * validateInstanceInfo already checked against file_url_allowed_paths. Redirects are not followed: they could
 * point where the guard refuses to go.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { get as httpGet, type IncomingMessage } from 'node:http';
import { get as httpsGet } from 'node:https';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { ImageCacheError, checkCacheSource, guardedLookup } from '../boot-server.js';

export interface OriginBody {
  body: Readable;
  /** Content-Length (or the file size) when the origin says it; used to fail early when the cache is full. */
  length: number | undefined;
}

export interface OriginOptions {
  allowLoopback: boolean;
  timeoutS: number;
}

export async function openOrigin(sourceUrl: string, opts: OriginOptions): Promise<OriginBody> {
  if (sourceUrl.startsWith('file:')) {
    let path: string;
    try { path = fileURLToPath(sourceUrl); } catch { throw new ImageCacheError(`cannot cache ${sourceUrl}: not a file URL`); }
    const st = await stat(path).catch(() => undefined);
    if (!st?.isFile()) throw new ImageCacheError(`cannot cache ${sourceUrl}: no such file`);
    return { body: createReadStream(path), length: st.size };
  }
  const u = checkCacheSource(sourceUrl, opts.allowLoopback);
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    const get = u.protocol === 'https:' ? httpsGet : httpGet;
    const req = get(u, { timeout: opts.timeoutS * 1000, lookup: guardedLookup(opts.allowLoopback) }, resolve);
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
  }).catch((e: unknown) => { throw new ImageCacheError(`download of ${sourceUrl} failed: ${String(e)}`); });
  if (res.statusCode !== 200) {
    res.resume();
    throw new ImageCacheError(`download of ${sourceUrl} failed: HTTP ${res.statusCode}`);
  }
  const len = Number(res.headers['content-length']);
  return { body: res, length: Number.isSafeInteger(len) && len >= 0 ? len : undefined };
}
