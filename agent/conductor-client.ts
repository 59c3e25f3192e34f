/**
 * The agent's calls to the conductor: API version detection, lookup with
 * random exponential backoff until the lookup timeout, and heartbeats. Small JSON calls over node:http(s)
 * (robust against servers that close the connection, unlike undici on Node 20).
 */
import { readFileSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createSocket } from 'node:dgram';
import { lookup as dnsLookup } from 'node:dns/promises';
import { getLogger, type Logger } from '../common/logger.js';
import { errorMessage } from '../common/errors.js';
import { parseJsonSafe, PEER_JSON_LIMITS } from '../common/safe-json.js';
import {
  AGENT_VERSION,
  HeartbeatConflictError,
  HeartbeatConnectionError,
  HeartbeatError,
  LookupAgentIPError,
  LookupNodeError,
} from '../protocol/agent-api.js';
import {
  AGENT_STATUS_VERSION,
  AGENT_TOKEN_VERSION,
  AGENT_VERIFY_CA_VERSION,
  MASKED_TOKEN,
  type LookupConfig,
  type LookupNode,
} from '../protocol/lookup.js';

/** IPA assumes this when GET / fails. */
export const FALLBACK_API_VERSION = '1.31';
export const AGENT_VERSION_FIELD_VERSION = '1.36';
export const LOOKUP_MAX_BACKOFF_S = 60;
const CONFLICT_SLEEPS_S = [5, 10, 30];

export function parseVersion(v: string): [number, number] {
  const m = /^(\d+)\.(\d+)$/.exec(v.trim());
  if (!m) return [1, 1];
  return [Number(m[1]), Number(m[2])];
}

export function compareVersions(a: string, b: string): number {
  const [a1, a2] = parseVersion(a);
  const [b1, b2] = parseVersion(b);
  return a1 !== b1 ? a1 - b1 : a2 - b2;
}

export function minVersion(a: string, b: string): string {
  return compareVersions(a, b) <= 0 ? a : b;
}

/** tenacity's wait_random_exponential: U(min, clamp(2^(n-1), min, max)). */
export function backoffSeconds(attempt: number, minS: number, maxS = LOOKUP_MAX_BACKOFF_S, rnd = Math.random): number {
  const high = Math.max(minS, Math.min(2 ** Math.max(0, attempt - 1), maxS));
  return minS + (high - minS) * rnd();
}

/** Ironic wraps its errors as {"error_message": "<json string or object with faultstring>"}. */
export function ironicFaultstring(body: string): string {
  try {
    const outer = parseJsonSafe(body, PEER_JSON_LIMITS) as Record<string, unknown>;
    let inner: unknown = outer.error_message ?? outer;
    if (typeof inner === 'string') {
      try {
        inner = parseJsonSafe(inner as string, PEER_JSON_LIMITS);
      } catch {
        return inner as string;
      }
    }
    if (inner && typeof inner === 'object') {
      const o = inner as Record<string, unknown>;
      const s = o.faultstring ?? o.title ?? o.description;
      if (typeof s === 'string') return s;
    }
  } catch {
    // not JSON: fall through to the raw text
  }
  return body.slice(0, 500);
}

export interface ConductorClientOptions {
  apiUrls: string[];
  insecure?: boolean;
  cafile?: string | null;
  globalRequestId?: string | null;
  /** Forced microversion (ipa-ironic-api-version): no detection. */
  apiVersion?: string | null;
  requestTimeoutMs?: number;
  log?: Logger;
  /**
   * Use the pre-1.22 routes: POST /v1/drivers/{driverName}/vendor_passthru/lookup with the version 2 body and
   * POST /v1/nodes/{uuid}/vendor_passthru/heartbeat with {agent_url, agent_token, agent_version}.
   */
  legacy?: { driverName: string } | null;
}

interface HttpResult {
  status: number;
  body: string;
}

class ConnectionFailure extends Error {}

export interface LookupOptions {
  macs: string[];
  nodeUuid?: string | null;
  timeoutS: number;
  intervalS: number;
  /** Token from the kernel command line (ipa-agent-token), used when Ironic answers '******'. */
  configuredToken?: string | null;
  signal?: AbortSignal;
  /** Injected in tests. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

export interface LookupResult {
  node: LookupNode;
  config: LookupConfig;
  heartbeatTimeoutS: number;
  token: string | null;
}

export interface HeartbeatParams {
  callbackUrl: string;
  token: string | null;
  verifyCa?: string | null;
  status?: 'start' | 'end' | 'error' | null;
  statusMessage?: string | null;
}

/** A lookup answer that can never succeed by retrying (token already issued). */
export class FatalLookupError extends LookupNodeError {}

function defaultSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(t);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export class ConductorClient {
  private urls: string[];
  private readonly ca: string | undefined;
  private readonly log: Logger;
  private detected: string | null;
  /** Why the last version discovery got no answer at all (cleared by one that got an answer). */
  private discoveryFailure: string | undefined;

  constructor(private readonly opts: ConductorClientOptions) {
    if (opts.apiUrls.length === 0) throw new Error('ConductorClient needs at least one API URL');
    this.urls = [...opts.apiUrls];
    this.ca = opts.cafile ? readFileSync(opts.cafile, 'utf8') : undefined;
    this.log = opts.log ?? getLogger('conductor-client');
    this.detected = opts.apiVersion ?? null;
  }

  /** The URL that answered last (first in the rotation). */
  get apiUrl(): string {
    return this.urls[0] ?? '';
  }

  private once(url: string, method: string, headers: Record<string, string>, body?: string): Promise<HttpResult> {
    const u = new URL(url);
    const make = u.protocol === 'https:' ? httpsRequest : httpRequest;
    const payload = body === undefined ? undefined : Buffer.from(body);
    return new Promise((resolve, reject) => {
      const req = make(
        u,
        {
          method,
          headers: { ...headers, ...(payload ? { 'Content-Length': String(payload.length) } : {}) },
          timeout: this.opts.requestTimeoutMs ?? 30_000,
          ...(u.protocol === 'https:' ? { rejectUnauthorized: !this.opts.insecure, ...(this.ca ? { ca: this.ca } : {}) } : {}),
        },
        (res: IncomingMessage) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', (e) => reject(new ConnectionFailure(errorMessage(e))));
        },
      );
      req.on('timeout', () => req.destroy(new Error('request timed out')));
      req.on('error', (e) => reject(new ConnectionFailure(`${method} ${url}: ${errorMessage(e)}`)));
      if (payload) req.write(payload);
      req.end();
    });
  }

  /** Try each API URL in order on connection errors; the one that answers moves to the front (as IPA). */
  private async call(method: string, path: string, version: string | null, body?: unknown): Promise<HttpResult> {
    const headers: Record<string, string> = {
      Accept: 'application/json',
      'Content-Type': 'application/json',
      'User-Agent': `baremetal-ts-agent/${AGENT_VERSION}`,
    };
    if (version) headers['X-OpenStack-Ironic-API-Version'] = version;
    if (this.opts.globalRequestId) headers['X-OpenStack-Request-ID'] = this.opts.globalRequestId;
    const text = body === undefined ? undefined : JSON.stringify(body);
    let lastErr: unknown;
    for (const url of [...this.urls]) {
      try {
        const r = await this.once(`${url}${path}`, method, headers, text);
        if (url !== this.urls[0]) this.urls = [url, ...this.urls.filter((u) => u !== url)];
        return r;
      } catch (e) {
        lastErr = e;
        this.log.debug({ url, err: errorMessage(e) }, 'conductor not reachable at this URL');
      }
    }
    throw lastErr instanceof ConnectionFailure ? lastErr : new ConnectionFailure(errorMessage(lastErr));
  }

  /** GET / once for default_version.version; IPA's fallback is 1.31. */
  async apiVersion(): Promise<string> {
    if (this.detected) return this.detected;
    try {
      const r = await this.call('GET', '/', null);
      const v = (JSON.parse(r.body) as { default_version?: { version?: unknown } }).default_version?.version;
      if (r.status === 200 && typeof v === 'string' && /^\d+\.\d+$/.test(v)) {
        this.detected = v;
        this.discoveryFailure = undefined;
        this.log.info({ version: v }, 'conductor API version detected');
        return v;
      }
    } catch (e) {
      this.discoveryFailure = errorMessage(e);
      this.log.warn({ err: this.discoveryFailure }, 'API version detection failed');
      return FALLBACK_API_VERSION;
    }
    this.discoveryFailure = undefined;
    this.log.warn('conductor did not report default_version; assuming %s', FALLBACK_API_VERSION);
    return FALLBACK_API_VERSION;
  }

  /** One lookup attempt: the parsed answer, or a reason to retry (with the HTTP status, 0 for no answer). */
  async lookupOnce(
    macs: string[],
    nodeUuid: string | null,
    configuredToken: string | null,
  ): Promise<{ ok: true; result: LookupResult } | { ok: false; status: number; reason: string }> {
    const legacy = this.opts.legacy;
    const version = legacy ? null : minVersion(await this.apiVersion(), AGENT_TOKEN_VERSION);
    // A conductor that did not answer version discovery is retried like a failed lookup, not looked up at the 1.31
    // fallback: that lookup gets no agent token (1.62+), and every later heartbeat at the version detected then is
    // refused for the missing token, for good (seen with 50 agents booting at once against a busy conductor).
    if (!legacy && !this.detected && this.discoveryFailure !== undefined) {
      return { ok: false, status: 0, reason: `API version detection failed: ${this.discoveryFailure}` };
    }
    const q = new URLSearchParams({ addresses: macs.join(',') });
    if (nodeUuid) q.set('node_uuid', nodeUuid);
    let r: HttpResult;
    try {
      r = legacy
        ? await this.call('POST', `/v1/drivers/${encodeURIComponent(legacy.driverName)}/vendor_passthru/lookup`, null, {
          version: '2', inventory: { interfaces: macs.map((m) => ({ mac_address: m })) },
          ...(nodeUuid ? { node_uuid: nodeUuid } : {}) })
        : await this.call('GET', `/v1/lookup?${q.toString()}`, version);
    } catch (e) {
      return { ok: false, status: 0, reason: errorMessage(e) };
    }
    if (r.status !== 200) return { ok: false, status: r.status, reason: `${r.status}: ${ironicFaultstring(r.body)}` };
    let data: { node?: LookupNode; config?: LookupConfig; heartbeat_timeout?: unknown };
    try {
      data = parseJsonSafe(r.body, PEER_JSON_LIMITS) as typeof data;
    } catch {
      return { ok: false, status: r.status, reason: 'lookup answer is not JSON' };
    }
    if (!data.node || typeof data.node.uuid !== 'string') {
      return { ok: false, status: r.status, reason: 'lookup answer has no node.uuid' };
    }
    // Very old Ironic put heartbeat_timeout at the top level.
    const config: LookupConfig = data.config ?? ({ heartbeat_timeout: data.heartbeat_timeout } as LookupConfig);
    const hb = Number(config.heartbeat_timeout);
    if (!Number.isFinite(hb) || hb <= 0) {
      return { ok: false, status: r.status, reason: 'lookup answer has no heartbeat_timeout' };
    }
    return {
      ok: true,
      result: { node: data.node, config, heartbeatTimeoutS: hb, token: this.tokenFrom(config, configuredToken) },
    };
  }

  private tokenFrom(config: LookupConfig, configured: string | null): string | null {
    const t = config.agent_token;
    if (typeof t === 'string' && t.length >= 32) return t;
    if (t === MASKED_TOKEN) {
      if (configured) return configured;
      throw new FatalLookupError(
        'The conductor already issued an agent token for this node (it answered "******") and this agent has none; ' +
          'the node cannot be driven by this agent process. Restart the operation so that a new token is issued.',
      );
    }
    if (t !== undefined && t !== null) this.log.warn('ignoring an agent token shorter than 32 characters');
    return configured;
  }

  /** Look up until success or lookup timeout (IPA's backoff; extra 5/10/30 s sleeps on 409). */
  async lookup(o: LookupOptions): Promise<LookupResult> {
    const sleep = o.sleep ?? defaultSleep;
    const started = Date.now();
    const deadline = started + o.timeoutS * 1000;
    let conflicts = 0;
    for (let attempt = 1; ; attempt++) {
      const r = await this.lookupOnce(o.macs, o.nodeUuid ?? null, o.configuredToken ?? null);
      if (r.ok) {
        this.log.info({ node: r.result.node.uuid, attempts: attempt }, 'lookup succeeded');
        return r.result;
      }
      this.log.info({ attempt, reason: r.reason }, 'lookup failed, will retry');
      if (r.status === 409) {
        const extra = CONFLICT_SLEEPS_S[Math.min(conflicts, CONFLICT_SLEEPS_S.length - 1)] ?? 30;
        conflicts++;
        await sleep(Math.min(extra * 1000, Math.max(0, deadline - Date.now())), o.signal);
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new LookupNodeError(
          `Could not look up node info after ${attempt} attempts in ${Math.round((Date.now() - started) / 1000)} s ` +
            `(lookup timeout ${o.timeoutS} s). Last: ${r.reason}`,
        );
      }
      await sleep(Math.min(backoffSeconds(attempt, o.intervalS) * 1000, left), o.signal);
    }
  }

  /** One heartbeat; throws HeartbeatConflictError / HeartbeatConnectionError / HeartbeatError. */
  async heartbeat(nodeUuid: string, p: HeartbeatParams): Promise<void> {
    if (this.opts.legacy) return this.legacyHeartbeat(nodeUuid, p);
    const detected = await this.apiVersion();
    const wantStatus = !!p.status && compareVersions(detected, AGENT_STATUS_VERSION) >= 0;
    const version = minVersion(detected, wantStatus ? AGENT_STATUS_VERSION : AGENT_VERIFY_CA_VERSION);
    const body: Record<string, unknown> = { callback_url: p.callbackUrl };
    if (compareVersions(version, AGENT_TOKEN_VERSION) >= 0) body.agent_token = p.token;
    if (compareVersions(version, AGENT_VERSION_FIELD_VERSION) >= 0) body.agent_version = AGENT_VERSION;
    if (p.verifyCa && compareVersions(version, AGENT_VERIFY_CA_VERSION) >= 0) body.agent_verify_ca = p.verifyCa;
    if (wantStatus) {
      body.agent_status = p.status;
      if (p.statusMessage) body.agent_status_message = p.statusMessage;
    }
    let r: HttpResult;
    try {
      r = await this.call('POST', `/v1/heartbeat/${encodeURIComponent(nodeUuid)}`, version, body);
    } catch (e) {
      throw new HeartbeatConnectionError(errorMessage(e));
    }
    if (r.status === 409) throw new HeartbeatConflictError(`Error ${r.status}: ${ironicFaultstring(r.body)}`);
    if (r.status < 200 || r.status >= 300) throw new HeartbeatError(`Error ${r.status}: ${ironicFaultstring(r.body)}`);
  }

  /** The old vendor passthru heartbeat; the token and version ride along (conductors that check them need them). */
  private async legacyHeartbeat(nodeUuid: string, p: HeartbeatParams): Promise<void> {
    const body: Record<string, unknown> = { agent_url: p.callbackUrl, agent_version: AGENT_VERSION };
    if (p.token) body.agent_token = p.token;
    if (p.verifyCa) body.agent_verify_ca = p.verifyCa;
    let r: HttpResult;
    try {
      r = await this.call('POST', `/v1/nodes/${encodeURIComponent(nodeUuid)}/vendor_passthru/heartbeat`, null, body);
    } catch (e) {
      throw new HeartbeatConnectionError(errorMessage(e));
    }
    if (r.status === 409) throw new HeartbeatConflictError(`Error ${r.status}: ${ironicFaultstring(r.body)}`);
    if (r.status < 200 || r.status >= 300) throw new HeartbeatError(`Error ${r.status}: ${ironicFaultstring(r.body)}`);
  }
}

/**
 * The source address the kernel would use towards the conductor (IPA runs `ip route get`): a connected UDP
 * socket learns its local address from the routing table without sending anything.
 */
export async function detectAdvertiseHost(apiUrl: string): Promise<string> {
  const u = new URL(apiUrl);
  const host = u.hostname.replace(/^\[|\]$/g, '');
  const port = Number(u.port || (u.protocol === 'https:' ? 443 : 80));
  try {
    const { address, family } = await dnsLookup(host);
    const sock = createSocket(family === 6 ? 'udp6' : 'udp4');
    try {
      await new Promise<void>((resolve, reject) => {
        sock.once('error', reject);
        sock.connect(port, address, () => resolve());
      });
      const local = sock.address().address;
      if (!local || local.startsWith('fe80:')) throw new Error(`no routable source address (${local})`);
      return local;
    } finally {
      sock.close();
    }
  } catch (e) {
    throw new LookupAgentIPError(`cannot find a source address towards ${host}: ${errorMessage(e)}`);
  }
}

/** `http://host:port`, IPv6 bracketed, no trailing slash (Ironic rejects a changed callback_url). */
export function callbackUrl(protocol: 'http' | 'https', host: string, port: number): string {
  const h = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  return `${protocol}://${h}:${port}`;
}
