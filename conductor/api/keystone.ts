/**
 * Keystone token validation, as keystonemiddleware's auth_token does it for Ironic: the conductor authenticates
 * as its own service user (password, project-scoped), then asks `GET /v3/auth/tokens` with `X-Auth-Token: <its
 * token>` and `X-Subject-Token: <the caller's>` whether a token is valid and whose it is.
 *
 * - The service token is fetched once and reused until a minute before it expires, or until Keystone answers 401
 *   (revoked): then it is fetched again and the validation retried once. Concurrent callers share one fetch.
 * - Answers are cached by the token's SHA-256 (never the token itself) for token_cache_time seconds and never past
 *   the token's own expires_at; invalid tokens are cached too (a flood of one bad token costs one Keystone call).
 *   The cache is bounded: past token_cache_size entries the oldest are dropped first.
 * - Keystone unreachable or answering 5xx: 503 for this request, nothing cached (as keystonemiddleware's 503).
 */
import { createHash } from 'node:crypto';
import { errorMessage } from '../../common/errors.js';
import { getLogger } from '../../common/logger.js';
import type { KeystoneAuthConfig } from '../keystone-config.js';
import { IronicError } from '../errors.js';

const log = getLogger('keystone');

/** Who a valid token belongs to: what Ironic's policy checks read (oslo.context's to_policy_values). */
export interface KeystoneCredentials {
  userId: string;
  userName: string;
  userDomainId: string | null;
  /** Project scope (null for system- or domain-scoped and unscoped tokens). */
  projectId: string | null;
  projectName: string | null;
  projectDomainId: string | null;
  /** System scope `all`. */
  system: boolean;
  /** Role names, including those Keystone implies (admin implies member implies reader). */
  roles: string[];
  /** ms since epoch. */
  expiresAt: number;
}

export class KeystoneUnavailable extends IronicError {
  constructor(detail: string) {
    super(`The Keystone service is temporarily unavailable: ${detail}`, 503, 'ServiceUnavailable');
  }
}

interface CacheEntry { creds: KeystoneCredentials | null; until: number }

/** The identity API base (…/v3) for a configured auth_url given with or without the version. */
export function identityBase(authUrl: string): string {
  const u = authUrl.replace(/\/+$/, '');
  return /\/v3$/.test(u) ? u : `${u}/v3`;
}

function str(v: unknown): string | null {
  return typeof v === 'string' ? v : null;
}

/** The credentials in a Keystone v3 token body; null when it is not one. */
export function parseTokenBody(body: unknown): KeystoneCredentials | null {
  const token = (body as { token?: Record<string, unknown> } | null)?.token;
  if (!token || typeof token !== 'object') return null;
  const user = token.user as Record<string, unknown> | undefined;
  const project = token.project as Record<string, unknown> | undefined;
  const system = token.system as Record<string, unknown> | undefined;
  const expires = Date.parse(String(token.expires_at ?? ''));
  if (!user || !str(user.id) || Number.isNaN(expires)) return null;
  const roles = Array.isArray(token.roles)
    ? (token.roles as unknown[]).map((r) => str((r as { name?: unknown } | null)?.name)).filter((r): r is string => !!r)
    : [];
  return {
    userId: str(user.id) ?? '',
    userName: str(user.name) ?? '',
    userDomainId: str((user.domain as { id?: unknown } | undefined)?.id),
    projectId: project ? str(project.id) : null,
    projectName: project ? str(project.name) : null,
    projectDomainId: project ? str((project.domain as { id?: unknown } | undefined)?.id) : null,
    system: system?.all === true,
    roles,
    expiresAt: expires,
  };
}

export class KeystoneValidator {
  readonly base: string;
  private service: { token: string; expires: number } | undefined;
  private serviceFetch: Promise<string> | undefined;
  private readonly cache = new Map<string, CacheEntry>();
  /** Keystone round trips made (tests check the cache with it). */
  validations = 0;

  constructor(readonly cfg: KeystoneAuthConfig, private readonly now: () => number = Date.now) {
    this.base = identityBase(cfg.auth_url);
  }

  private async call(method: string, path: string, headers: Record<string, string>, body?: unknown):
    Promise<{ status: number; json: unknown; headers: Headers }> {
    let r: Response;
    try {
      r = await fetch(`${this.base}${path}`, {
        method,
        headers: { accept: 'application/json', ...headers, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(this.cfg.timeout_ms),
      });
    } catch (e) {
      throw new KeystoneUnavailable(errorMessage(e));
    }
    const text = await r.text().catch(() => '');
    let json: unknown = null;
    try { json = text ? JSON.parse(text) : null; } catch { /* not JSON: status decides */ }
    return { status: r.status, json, headers: r.headers };
  }

  /** The conductor's own token (fetched when missing or about to expire; one fetch shared by concurrent callers). */
  async serviceToken(): Promise<string> {
    if (this.service && this.service.expires - this.now() > 60_000) return this.service.token;
    if (!this.serviceFetch) {
      this.serviceFetch = (async () => {
        const r = await this.call('POST', '/auth/tokens', {}, {
          auth: {
            identity: {
              methods: ['password'],
              password: { user: { name: this.cfg.username, password: this.cfg.password, domain: { id: this.cfg.user_domain_id } } },
            },
            scope: { project: { name: this.cfg.project_name, domain: { id: this.cfg.project_domain_id } } },
          },
        });
        const token = r.headers.get('x-subject-token');
        const creds = parseTokenBody(r.json);
        if (r.status !== 201 || !token || !creds) {
          log.error({ status: r.status, user: this.cfg.username, url: this.base }, 'the conductor could not authenticate to Keystone');
          throw new KeystoneUnavailable(`the service user ${this.cfg.username} could not authenticate (HTTP ${r.status})`);
        }
        this.service = { token, expires: creds.expiresAt };
        return token;
      })().finally(() => { this.serviceFetch = undefined; });
    }
    return this.serviceFetch;
  }

  /** The credentials of a user token, or null when Keystone says it is not valid (expired, revoked, unknown). */
  async validate(userToken: string): Promise<KeystoneCredentials | null> {
    const key = createHash('sha256').update(userToken).digest('hex');
    const hit = this.cache.get(key);
    const now = this.now();
    if (hit && hit.until > now && (!hit.creds || hit.creds.expiresAt > now)) return hit.creds;
    if (hit) this.cache.delete(key);
    let r = await this.ask(userToken);
    if (r.status === 401 || r.status === 403) {
      // Our own token was revoked or lost its role: fetch a new one and ask once more.
      this.service = undefined;
      r = await this.ask(userToken);
    }
    let creds: KeystoneCredentials | null;
    if (r.status === 200) {
      creds = parseTokenBody(r.json);
      if (!creds) throw new KeystoneUnavailable('Keystone answered a token validation with an unreadable body');
    } else if (r.status === 404 || r.status === 400) {
      creds = null;
    } else {
      if (r.status === 401 || r.status === 403) {
        log.error({ status: r.status }, 'Keystone refuses to let the service user validate tokens (does it have the service or admin role?)');
      }
      throw new KeystoneUnavailable(`token validation answered HTTP ${r.status}`);
    }
    const ttl = this.cfg.token_cache_time * 1000;
    if (ttl > 0) {
      const until = Math.min(now + ttl, creds ? creds.expiresAt : now + ttl);
      this.cache.set(key, { creds, until });
      // Bounded: a Map iterates in insertion order, so the first keys are the oldest.
      while (this.cache.size > this.cfg.token_cache_size) {
        const oldest = this.cache.keys().next().value;
        if (oldest === undefined) break;
        this.cache.delete(oldest);
      }
    }
    return creds;
  }

  get cacheSize(): number {
    return this.cache.size;
  }

  private async ask(userToken: string): Promise<{ status: number; json: unknown }> {
    this.validations++;
    return this.call('GET', '/auth/tokens', { 'x-auth-token': await this.serviceToken(), 'x-subject-token': userToken });
  }
}
