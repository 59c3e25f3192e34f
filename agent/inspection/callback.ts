/**
 * Inspection before lookup, as IPA's inspector.inspect(): run the collectors, post everything (with `error` set
 * from the collectors' failures) to each ipa-inspection-callback-url in turn, and return the node UUID the
 * conductor answered with (the lookup then uses it). Connection errors, 5xx and 409 are retried (5 attempts,
 * 5..30 s exponential, as IPA); another 4xx ends inspection with a logged error and the agent goes on to lookup.
 */
import { readFileSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { errorMessage } from '../../common/errors.js';
import { getLogger } from '../../common/logger.js';
import { AGENT_VERSION } from '../../protocol/agent-api.js';
import { runCollectors, type Payload } from './collectors.js';

const log = getLogger('inspection');

export interface InspectionOptions {
  callbackUrls: readonly string[];
  collectors: readonly string[];
  logFile: string | null;
  lldpTimeoutS?: number;
  insecure?: boolean;
  cafile?: string | null;
  requestTimeoutMs?: number;
  globalRequestId?: string | null;
  /** Retry pacing (IPA: 5 attempts, 5 s doubling to 30 s). */
  attempts?: number;
  retryMinMs?: number;
  retryMaxMs?: number;
}

export interface InspectionOutcome {
  /** The node's UUID when the conductor accepted the data. */
  uuid: string | null;
  status: number | null;
  error: string | null;
}

class Retryable extends Error {}

function post(url: string, body: Buffer, opts: InspectionOptions, ca: string | undefined):
  Promise<{ status: number; body: string }> {
  const u = new URL(url);
  const make = u.protocol === 'https:' ? httpsRequest : httpRequest;
  const headers: Record<string, string> = {
    'Content-Type': 'application/json', Accept: 'application/json', 'Content-Length': String(body.length),
    'User-Agent': `baremetal-ts-agent/${AGENT_VERSION}`,
  };
  if (opts.globalRequestId) headers['X-OpenStack-Request-ID'] = opts.globalRequestId;
  return new Promise((resolve, reject) => {
    const req = make(u, {
      method: 'POST', headers, timeout: opts.requestTimeoutMs ?? 30_000,
      ...(u.protocol === 'https:' ? { rejectUnauthorized: !opts.insecure, ...(ca ? { ca } : {}) } : {}),
    }, (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', (e) => reject(new Retryable(errorMessage(e))));
    });
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    req.on('error', (e) => reject(new Retryable(`POST ${url}: ${errorMessage(e)}`)));
    req.end(body);
  });
}

async function postOnce(urls: readonly string[], body: Buffer, opts: InspectionOptions, ca: string | undefined):
  Promise<{ status: number; body: string }> {
  let last: unknown;
  for (const url of urls) {
    log.info({ url }, 'posting inspection data');
    try {
      const r = await post(url, body, opts, ca);
      if (r.status >= 500 || r.status === 409) throw new Retryable(`${url} answered ${r.status}: ${r.body.slice(0, 500)}`);
      return r;
    } catch (e) {
      last = e;
      if (!(e instanceof Retryable) || url === urls[urls.length - 1]) throw e;
      log.warn({ url, err: errorMessage(e) }, 'inspection callback failed, trying the next URL');
    }
  }
  throw last;
}

/** Collects and posts; never throws (inspection failures must not stop the agent from looking up). */
export async function runInspection(opts: InspectionOptions): Promise<InspectionOutcome> {
  const started = Date.now();
  log.info({ collectors: opts.collectors }, 'inspection is enabled');
  const { data, failures } = await runCollectors({ collectors: opts.collectors, logFile: opts.logFile,
    ...(opts.lldpTimeoutS !== undefined ? { lldpTimeoutS: opts.lldpTimeoutS } : {}) });
  const payload: Payload = { ...data, error: failures.error() };
  const body = Buffer.from(JSON.stringify(payload));
  const ca = opts.cafile ? readFileSync(opts.cafile, 'utf8') : undefined;
  const attempts = opts.attempts ?? 5;
  let wait = opts.retryMinMs ?? 5000;
  for (let i = 1; ; i++) {
    try {
      const r = await postOnce(opts.callbackUrls, body, opts, ca);
      if (r.status >= 400) {
        log.error({ status: r.status, body: r.body.slice(0, 500) }, 'inspection callback refused the data, proceeding with lookup');
        return { uuid: null, status: r.status, error: r.body.slice(0, 500) };
      }
      let uuid: string | null = null;
      try {
        const parsed = JSON.parse(r.body) as { uuid?: unknown; node?: { uuid?: unknown } };
        const u = parsed.uuid ?? parsed.node?.uuid;
        uuid = typeof u === 'string' ? u : null;
      } catch {
        uuid = null;
      }
      log.info({ uuid, seconds: (Date.now() - started) / 1000, bytes: body.length }, 'inspection finished successfully');
      return { uuid, status: r.status, error: failures.error() };
    } catch (e) {
      if (!(e instanceof Retryable) || i >= attempts) {
        log.error({ err: errorMessage(e) }, 'inspection callback failed');
        return { uuid: null, status: null, error: errorMessage(e) };
      }
      log.warn({ attempt: i, err: errorMessage(e) }, 'inspection callback failed, retrying');
      await new Promise((r) => setTimeout(r, wait));
      wait = Math.min(wait * 1.5, opts.retryMaxMs ?? 30_000);
    }
  }
}
