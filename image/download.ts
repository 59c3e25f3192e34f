/**
 * Image download over node:http/https (not undici: undici 7 can crash uncatchably and truncate when a server
 * closes the connection after the body). URLs are tried in order; a dropped connection is
 * resumed with `Range: bytes=N-` (never restarted from zero: the bytes already hashed and written stay); a
 * server that ignores Range has the already-seen prefix skipped. Chunks go to `onChunk` in order; when it returns
 * a promise the socket is paused until it settles (backpressure without per-chunk pause/resume).
 */
import { getLogger } from '../common/logger.js';
import { AgentError, ImageDownloadError, ImageDownloadFatalError, ImageDownloadTimeoutError } from '../protocol/agent-api.js';
import {
  getOnceFast,
  getOnceNode,
  HttpStatusError,
  NeedsNodeHttp,
  RedirectRefused,
  SinkFailure,
  type Attempt,
  type ChunkSink,
  type DownloadRequest,
  type DownloadResult,
} from './http-get.js';
import { imageSettings } from './settings.js';
import { errorMessage } from '../common/errors.js';

export type { ChunkSink, DownloadAuth, DownloadRequest, DownloadResult } from './http-get.js';

const log = getLogger('image-download');

function getOnce(
  url: string,
  offset: number,
  req: DownloadRequest,
  state: Attempt,
  onChunk: ChunkSink,
  end?: number,
): Promise<void> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return Promise.reject(new HttpStatusError(400, `${url} (invalid URL)`));
  }
  if (u.protocol !== 'http:') return getOnceNode(url, offset, req, state, onChunk, end);
  return getOnceFast(u, offset, req, state, onChunk, end).catch((e: unknown) => {
    if (e instanceof NeedsNodeHttp) return getOnceNode(url, offset, req, state, onChunk, end);
    throw e;
  });
}

const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    });
  });

/** Stream the image to `onChunk`, resuming and failing over as needed. Throws IPA download errors. */
export async function downloadImage(req: DownloadRequest, onChunk: ChunkSink): Promise<DownloadResult> {
  const s = imageSettings();
  const started = Date.now();
  const failures: string[] = [];
  let allFatal = true;
  const state: Attempt = { received: 0, total: null };
  let requests = 0;
  for (const url of req.urls) {
    for (let attempt = 0; attempt <= s.connectionRetries; attempt++) {
      if (s.maxDurationMs > 0 && Date.now() - started > s.maxDurationMs) {
        throw new ImageDownloadTimeoutError(
          `Download of image ${req.imageId} failed: exceeded max duration of ${s.maxDurationMs / 1000} seconds`,
        );
      }
      const before = state.received;
      requests++;
      try {
        await getOnce(url, state.received, req, state, onChunk);
        log.info({ url, bytes: state.received, contentLength: state.total, requests }, 'download complete');
        return { bytes: state.received, url, contentLength: state.total, requests };
      } catch (e) {
        if (e instanceof SinkFailure) {
          if (e.inner instanceof AgentError) throw e.inner;
          throw new ImageDownloadError(
            `Download of image ${req.imageId} failed: ${(e.inner as Error)?.message ?? String(e.inner)}`,
            e.inner,
          );
        }
        const msg = errorMessage(e);
        if ((e instanceof HttpStatusError && e.status >= 400 && e.status < 500) || e instanceof RedirectRefused) {
          // 4xx or a refused redirect: no point retrying this URL; the next one may still have the image.
          failures.push(`${url}: ${msg}`);
          log.warn({ url, reason: msg }, 'image URL refused');
          break;
        }
        allFatal = false;
        const progressed = state.received > before;
        log.warn({ url, err: msg, received: state.received, attempt }, 'download attempt failed');
        if (progressed) attempt = -1; // a resumable drop is not a failed attempt: keep going from here
        if (req.signal?.aborted) throw new ImageDownloadError(`Download of image ${req.imageId} aborted`);
        if (attempt >= s.connectionRetries) {
          failures.push(`${url}: ${msg}`);
          break;
        }
        if (!progressed) await sleep(s.retryIntervalMs, req.signal);
      }
    }
  }
  const details = `Download of image ${req.imageId} failed: ${failures.join('; ')}`;
  if (allFatal) throw new ImageDownloadFatalError(details);
  throw new ImageDownloadError(details);
}

/** Small GETs (checksum files, config drives): whole body in memory, size-capped. */
export async function fetchSmall(url: string, maxBytes: number, req: Omit<DownloadRequest, 'urls'>): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  await downloadImage({ ...req, urls: [url] }, (c) => {
    n += c.length;
    if (n > maxBytes) throw new ImageDownloadError(`${url} is larger than ${maxBytes} bytes`);
    parts.push(Buffer.from(c));
  });
  return Buffer.concat(parts);
}

/** Bytes [start, end) of `url` by one Range request (retried like a download, resumed where it dropped). */
export async function fetchRange(
  url: string,
  start: number,
  end: number,
  req: Omit<DownloadRequest, 'urls'>,
): Promise<Buffer> {
  const s = imageSettings();
  const out = Buffer.alloc(end - start);
  const state: Attempt = { received: 0, total: null };
  for (let attempt = 0; ; attempt++) {
    const before = state.received;
    try {
      await getOnce(url, start + state.received, { ...req, urls: [url] }, state, (c) => {
        if (state.received > out.length) throw new ImageDownloadError(`${url}: Range response longer than asked`);
        c.copy(out, state.received - c.length);
      }, end);
      if (state.received !== out.length) throw new Error(`short Range response (${state.received} of ${out.length})`);
      return out;
    } catch (e) {
      if (e instanceof SinkFailure) throw e.inner;
      if ((e instanceof HttpStatusError && e.status >= 400 && e.status < 500) || e instanceof RedirectRefused) {
        throw new ImageDownloadFatalError(`Download of image ${req.imageId} failed: ${e.message}`);
      }
      if (attempt >= s.connectionRetries) {
        throw new ImageDownloadError(`Download of image ${req.imageId} failed: ${errorMessage(e)}`);
      }
      if (state.received === before) await sleep(s.retryIntervalMs, req.signal);
    }
  }
}
