/**
 * A small Redfish HTTP client: JSON over node:http/https (BMC web servers often close connections, which the
 * undici 7 release we pin can crash on), HTTP basic or SessionService auth, TLS verification on by default
 * with an optional CA bundle, bounded retries for connection failures and 5xx. One client per BMC endpoint and
 * credentials is cached so sessions are reused across calls instead of created per request.
 */
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';
import { getLogger } from '../../common/logger.js';
import { parseJsonSafe, PEER_JSON_LIMITS } from '../../common/safe-json.js';

const log = getLogger('redfish');

export type RedfishAuthType = 'auto' | 'basic' | 'session';

export interface RedfishConnInfo {
  /** scheme://host[:port] */
  address: string;
  username: string | undefined;
  password: string | undefined;
  /** true: system CAs; false: no verification; string: path to a CA bundle file or directory. */
  verifyCa: boolean | string;
  authType: RedfishAuthType;
}

export interface RedfishClientOptions {
  requestTimeoutS: number;
  /** Attempts for connection errors and 5xx (sushy/Ironic: [redfish]connection_attempts). */
  connectionAttempts: number;
  connectionRetryIntervalS: number;
}

export const DEFAULT_REDFISH_CLIENT_OPTIONS: RedfishClientOptions = {
  requestTimeoutS: 30, connectionAttempts: 5, connectionRetryIntervalS: 2,
};

export type RedfishErrorKind = 'unreachable' | 'tls' | 'auth' | 'http' | 'protocol';

export class RedfishError extends Error {
  constructor(message: string, readonly kind: RedfishErrorKind, readonly status?: number) {
    super(message);
  }
}

export interface RedfishResponse {
  status: number;
  headers: IncomingMessage['headers'];
  body: Record<string, unknown> | undefined;
}

const TLS_CODES = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|ERR_TLS|EPROTO|ERR_SSL/;

/** The message a Redfish error body carries (error.message or its first @Message.ExtendedInfo). */
export function redfishErrorText(body: Record<string, unknown> | undefined): string {
  const err = body?.error as Record<string, unknown> | undefined;
  if (!err) return '';
  const ext = err['@Message.ExtendedInfo'];
  const first = Array.isArray(ext) ? (ext[0] as Record<string, unknown> | undefined) : undefined;
  return [err.message, first?.Message].filter((s) => typeof s === 'string' && s).filter((s, i, a) => a.indexOf(s) === i).join(' ');
}

/** The CA bundle: a regular file only, bounded (parseRedfishInfo refuses anything else before we get here). */
function loadCa(path: string): Buffer[] {
  const st = statSync(path);
  if (!st.isFile()) throw new RedfishError(`redfish_verify_ca ${path} is not a regular file`, 'tls');
  if (st.size > 4 * 2 ** 20) throw new RedfishError(`redfish_verify_ca ${path} is larger than 4 MiB`, 'tls');
  return [readFileSync(path)];
}

export class RedfishClient {
  private readonly agent: HttpAgent | HttpsAgent;
  private readonly https: boolean;
  private token: string | undefined;
  private sessionUri: string | undefined;
  /** Decided once for auth 'auto': session when the service offers one, else basic. */
  private useSession: boolean | undefined;

  constructor(readonly conn: RedfishConnInfo, readonly opts: RedfishClientOptions = DEFAULT_REDFISH_CLIENT_OPTIONS) {
    this.https = conn.address.startsWith('https:');
    this.agent = this.https
      ? new HttpsAgent({
        keepAlive: true, maxSockets: 4,
        rejectUnauthorized: conn.verifyCa !== false,
        ...(typeof conn.verifyCa === 'string' ? { ca: loadCa(conn.verifyCa) } : {}),
      })
      : new HttpAgent({ keepAlive: true, maxSockets: 4 });
  }

  /** One HTTP exchange, no auth logic; network and TLS failures become RedfishError. */
  private once(method: string, path: string, body: unknown, headers: Record<string, string>): Promise<RedfishResponse> {
    const url = new URL(path, this.conn.address);
    // Paths come from the BMC's own answers (Links, Location): credentials go to the BMC's origin and nowhere else.
    if (url.origin !== new URL(this.conn.address).origin) {
      return Promise.reject(new RedfishError(`refusing to send a request for ${url.origin} to a host other than the BMC at ` +
        `${this.conn.address}`, 'protocol'));
    }
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const doRequest = this.https ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = doRequest(url, {
        method, agent: this.agent, timeout: this.opts.requestTimeoutS * 1000,
        headers: {
          Accept: 'application/json', 'OData-Version': '4.0', ...headers,
          ...(data ? { 'Content-Type': 'application/json', 'Content-Length': String(data.length) } : {}),
        },
      }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (e) => reject(new RedfishError(`Redfish ${method} ${url.href}: ${e.message}`, 'unreachable')));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: Record<string, unknown> | undefined;
          if (text.trim()) {
            try {
              const v: unknown = parseJsonSafe(text, PEER_JSON_LIMITS);
              if (v && typeof v === 'object' && !Array.isArray(v)) json = v as Record<string, unknown>;
            } catch { /* non-JSON error pages are reported by status */ }
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: json });
        });
      });
      req.on('timeout', () => req.destroy(Object.assign(new Error(`no answer within ${this.opts.requestTimeoutS} s`), { code: 'ETIMEDOUT' })));
      req.on('error', (e: NodeJS.ErrnoException) => {
        const code = e.code ?? '';
        if (TLS_CODES.test(code) || /certificate|ssl|tls/i.test(e.message)) {
          reject(new RedfishError(`TLS verification of the BMC at ${this.conn.address} failed (${code || e.message}); ` +
            'set redfish_verify_ca to the path of its CA bundle, or to false to skip verification', 'tls'));
        } else {
          reject(new RedfishError(`the BMC at ${this.conn.address} is unreachable (${code || e.message}); check redfish_address`, 'unreachable'));
        }
      });
      req.end(data);
    });
  }

  /** once() with bounded retries for connection failures and 5xx. */
  private async exchange(method: string, path: string, body: unknown, headers: Record<string, string>): Promise<RedfishResponse> {
    for (let attempt = 1; ; attempt++) {
      try {
        const r = await this.once(method, path, body, headers);
        if (r.status < 500 || attempt >= this.opts.connectionAttempts) return r;
      } catch (e) {
        if (!(e instanceof RedfishError) || e.kind !== 'unreachable' || attempt >= this.opts.connectionAttempts) {
          if (e instanceof RedfishError && e.kind === 'unreachable') {
            throw new RedfishError(`${e.message} after ${attempt} attempt(s)`, 'unreachable');
          }
          throw e;
        }
      }
      log.warn({ bmc: this.conn.address, method, path, attempt }, 'Redfish request failed; retrying');
      await sleep(this.opts.connectionRetryIntervalS * 1000);
    }
  }

  private basicHeader(): Record<string, string> {
    if (this.conn.username === undefined) return {};
    const cred = Buffer.from(`${this.conn.username}:${this.conn.password ?? ''}`).toString('base64');
    return { Authorization: `Basic ${cred}` };
  }

  private async login(): Promise<void> {
    let sessionsPath = '/redfish/v1/SessionService/Sessions';
    const root = await this.exchange('GET', '/redfish/v1/', undefined, {});
    const links = root.body?.Links as Record<string, { '@odata.id'?: string } | undefined> | undefined;
    if (links?.Sessions?.['@odata.id']) sessionsPath = links.Sessions['@odata.id'];
    else if (root.status === 200 && !root.body?.SessionService) {
      if (this.conn.authType === 'auto') {
        this.useSession = false;
        return;
      }
      throw new RedfishError(`the BMC at ${this.conn.address} offers no SessionService; set redfish_auth_type to basic or auto`, 'protocol');
    }
    const r = await this.exchange('POST', sessionsPath, { UserName: this.conn.username ?? '', Password: this.conn.password ?? '' }, {});
    const token = r.headers['x-auth-token'];
    if (r.status >= 200 && r.status < 300 && typeof token === 'string') {
      this.token = token;
      this.useSession = true;
      const loc = r.headers.location;
      const session = typeof loc === 'string' ? new URL(loc, this.conn.address) : undefined;
      if (session && session.origin !== new URL(this.conn.address).origin) {
        this.token = undefined;
        throw new RedfishError(`the BMC at ${this.conn.address} answered with a session at another origin ` +
          `(${session.origin}); refusing to send the session token there`, 'protocol');
      }
      this.sessionUri = session?.pathname;
      return;
    }
    if (r.status === 401 || r.status === 403) {
      throw new RedfishError(`authentication rejected by the BMC at ${this.conn.address} (HTTP ${r.status}); check redfish_username/redfish_password`, 'auth', r.status);
    }
    if (this.conn.authType === 'auto') {
      this.useSession = false;
      return;
    }
    throw new RedfishError(`could not create a Redfish session at ${this.conn.address} (HTTP ${r.status} ${redfishErrorText(r.body)})`, 'http', r.status);
  }

  private authHeaders(): Record<string, string> {
    return this.useSession && this.token ? { 'X-Auth-Token': this.token } : this.basicHeader();
  }

  /** An authenticated request; a 401 with a session re-logs in once (sessions expire on the BMC). */
  async request(method: string, path: string, body?: unknown): Promise<RedfishResponse> {
    if (this.conn.authType !== 'basic' && this.useSession !== false && !this.token) await this.login();
    let r = await this.exchange(method, path, body, this.authHeaders());
    if (r.status === 401 && this.useSession) {
      this.token = undefined;
      await this.login();
      r = await this.exchange(method, path, body, this.authHeaders());
    }
    if (r.status === 401 || r.status === 403) {
      throw new RedfishError(`authentication rejected by the BMC at ${this.conn.address} (HTTP ${r.status}); check redfish_username/redfish_password`, 'auth', r.status);
    }
    return r;
  }

  /** request() that throws on non-2xx with the Redfish error text. */
  async call(method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
    const r = await this.request(method, path, body);
    if (r.status < 200 || r.status >= 300) {
      throw new RedfishError(`Redfish ${method} ${path} at ${this.conn.address} failed with HTTP ${r.status}: ${redfishErrorText(r.body) || 'no details'}`, 'http', r.status);
    }
    return r.body ?? {};
  }

  /** Delete our session on the BMC (they hold a small, fixed number of sessions) and drop pooled sockets. */
  async close(): Promise<void> {
    if (this.token && this.sessionUri) {
      // Logging out is courtesy: an unreachable BMC expires the session itself.
      await this.exchange('DELETE', this.sessionUri, undefined, { 'X-Auth-Token': this.token }).catch(() => undefined);
    }
    this.token = undefined;
    this.agent.destroy();
  }
}

/** One conductor's Redfish sessions (its power and management interfaces share them). */
export class RedfishClientPool {
  private readonly clients = new Map<string, RedfishClient>();

  /** The cached client for these connection settings (keyed by a hash, so no password sits in a map key). */
  clientFor(conn: RedfishConnInfo, opts: RedfishClientOptions): RedfishClient {
    const key = createHash('sha256').update(JSON.stringify([conn, opts])).digest('hex');
    let c = this.clients.get(key);
    if (!c) {
      c = new RedfishClient(conn, opts);
      this.clients.set(key, c);
    }
    return c;
  }

  /** Log out of every BMC session of this pool (conductor shutdown, test teardown). */
  async close(): Promise<void> {
    const all = [...this.clients.values()];
    this.clients.clear();
    await Promise.all(all.map((c) => c.close()));
  }
}
