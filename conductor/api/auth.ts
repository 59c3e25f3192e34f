/**
 * Operator authentication: `noauth` (every request passes, any X-Auth-Token ignored), `keystone` (tokens validated by
 * Keystone, see keystoneAuth below) or `http_basic` against an
 * htpasswd-style file of bcrypt hashes (Ironic's [DEFAULT]auth_strategy / [json_rpc]http_basic_auth_user_file).
 * The root documents and the agent endpoints (lookup, heartbeat) are always public, as in Ironic.
 *
 * - The file is re-read when its mtime, size or inode changes, so adding or removing a user needs no restart.
 *   A file that can no longer be read or parsed locks everybody out (logged) rather than keeping stale users.
 * - bcrypt is deliberately slow, so credentials that passed are remembered (by their SHA-256) until the file
 *   changes; an unknown user is compared against a dummy hash of the same cost, so it costs what a wrong
 *   password costs and user names cannot be told apart by timing.
 * - Each address gets `max_failures` failed logins per `failure_window` seconds, then 429 with Retry-After until
 *   the oldest failure leaves the window. An attempt counts as failed from the moment it starts (and is taken
 *   back on success), so a burst of parallel guesses cannot slip past the limit while bcrypt runs.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import bcrypt from 'bcryptjs';
import type { Context, Next } from 'koa';
import { ConfigError, errorMessage } from '../../common/errors.js';
import { getLogger } from '../../common/logger.js';
import type { ConductorConfig } from '../config.js';
import { IronicError, NotAuthorized } from '../errors.js';
import { type KeystoneCredentials, KeystoneValidator } from './keystone.js';

const log = getLogger('auth');

export function parseHtpasswd(text: string, file: string): Map<string, string> {
  const users = new Map<string, string>();
  for (const line of text.split('\n')) {
    const l = line.trim();
    if (!l || l.startsWith('#')) continue;
    const i = l.indexOf(':');
    if (i <= 0) continue;
    const hash = l.slice(i + 1);
    if (!/^\$2[abxy]\$\d\d\$[./A-Za-z0-9]{53}$/.test(hash)) {
      throw new ConfigError(`htpasswd entry for ${l.slice(0, i)} in ${file} is not a bcrypt hash`);
    }
    users.set(l.slice(0, i), hash);
  }
  return users;
}

export function loadHtpasswd(file: string): Map<string, string> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read htpasswd file ${file}: ${errorMessage(e)}`);
  }
  return parseHtpasswd(text, file);
}

/** The htpasswd file, re-read whenever it changes on disk. */
export class HtpasswdFile {
  private users = new Map<string, string>();
  private stamp = '';
  /** Bumped on every (re)load; caches keyed on the old contents are dropped. */
  generation = 0;

  constructor(readonly file: string) {
    // At start-up a broken file is a configuration error, not a silent lock-out.
    this.users = loadHtpasswd(file);
    this.stamp = this.currentStamp();
  }

  private currentStamp(): string {
    try {
      const st = statSync(this.file);
      return `${st.ino}:${st.size}:${st.mtimeMs}`;
    } catch {
      return 'missing';
    }
  }

  get(user: string): string | undefined {
    const now = this.currentStamp();
    if (now !== this.stamp) {
      this.stamp = now;
      this.generation++;
      try {
        this.users = loadHtpasswd(this.file);
        log.info({ file: this.file, users: this.users.size }, 'htpasswd file changed: re-read');
      } catch (e) {
        this.users = new Map();
        log.error({ file: this.file, err: errorMessage(e) }, 'htpasswd file unreadable: every login is refused until it is fixed');
      }
    }
    return this.users.get(user);
  }

  /** The cost factor most entries use (what a dummy comparison must cost). */
  cost(): number {
    const first = this.users.values().next().value;
    const m = first ? /^\$2[abxy]\$(\d\d)\$/.exec(first) : null;
    return m ? Number(m[1]) : 10;
  }
}

/** Failed logins per client address in a sliding window. */
export class FailureLimiter {
  private readonly failures = new Map<string, number[]>();

  constructor(readonly maxFailures: number, readonly windowMs: number, private readonly now: () => number = Date.now) {}

  private recent(addr: string): number[] {
    const t = this.now();
    const list = (this.failures.get(addr) ?? []).filter((at) => t - at < this.windowMs);
    if (list.length) this.failures.set(addr, list);
    else this.failures.delete(addr);
    return list;
  }

  /** Seconds the address must wait, or 0 when it may try. */
  retryAfter(addr: string): number {
    const list = this.recent(addr);
    if (list.length < this.maxFailures) return 0;
    return Math.max(1, Math.ceil((list[0]! + this.windowMs - this.now()) / 1000));
  }

  /** Records an attempt as failed; returns the token to take it back with on success. */
  fail(addr: string): number {
    const at = this.now();
    const list = this.recent(addr);
    list.push(at);
    this.failures.set(addr, list);
    // Bounded memory under an address-spraying client: forget the quietest addresses first.
    if (this.failures.size > 10_000) {
      for (const k of this.failures.keys()) {
        this.failures.delete(k);
        if (this.failures.size <= 5_000) break;
      }
    }
    return at;
  }

  /** A success takes its own attempt back and clears the address's record. */
  succeed(addr: string): void {
    this.failures.delete(addr);
  }
}

const dummyHashes = new Map<number, Promise<string>>();
function dummyHash(cost: number): Promise<string> {
  let p = dummyHashes.get(cost);
  if (!p) {
    p = bcrypt.hash(randomBytes(18).toString('base64'), cost);
    dummyHashes.set(cost, p);
  }
  return p;
}

/** The pre-1.22 agent routes (conductor/services/legacy-agent.ts): public for POST only, like today's. */
const LEGACY_AGENT_PATH = /^\/v1\/(drivers\/[^/]+\/vendor_passthru\/lookup|nodes\/[^/]+\/vendor_passthru\/heartbeat)$/;

export function isPublicPath(path: string, method = 'GET'): boolean {
  return path === '/' || path === '/v1' || path === '/v1/' || path === '/v1/lookup' || path.startsWith('/v1/heartbeat/') ||
    path === '/v1/continue_inspection' || path === '/v1/continue' || (method === 'POST' && LEGACY_AGENT_PATH.test(path));
}

function clientAddress(ctx: Context): string {
  const a = ctx.req.socket.remoteAddress ?? 'unknown';
  return a.startsWith('::ffff:') ? a.slice(7) : a;
}

/**
 * `keystone`: X-Auth-Token validated by Keystone (conductor/api/keystone.ts); the credentials go to
 * ctx.state.keystone for the policy (policy-middleware.ts). Missing or invalid tokens get 401 with
 * `WWW-Authenticate: Keystone uri="..."`, as keystonemiddleware answers for Ironic.
 */
function keystoneAuth(cfg: ConductorConfig): (ctx: Context, next: Next) => Promise<void> {
  const ks = cfg.auth.keystone;
  if (!ks) throw new ConfigError('auth.strategy keystone needs auth.keystone (auth_url, username, password, ...)');
  const validator = new KeystoneValidator(ks);
  const challenge = `Keystone uri="${ks.www_authenticate_uri ?? ks.auth_url}"`;
  return async (ctx, next) => {
    if (isPublicPath(ctx.path, ctx.method)) return next();
    const token = ctx.get('x-auth-token').trim();
    if (!token) {
      ctx.set('WWW-Authenticate', challenge);
      throw new NotAuthorized('The request you have made requires authentication.');
    }
    const creds = token.length <= 8192 ? await validator.validate(token) : null;
    if (!creds) {
      log.warn({ addr: clientAddress(ctx), path: ctx.path }, 'invalid Keystone token');
      ctx.set('WWW-Authenticate', challenge);
      throw new NotAuthorized('The request you have made requires authentication: the token is invalid or expired.');
    }
    (ctx.state as { keystone?: KeystoneCredentials }).keystone = creds;
    await next();
  };
}

export function authMiddleware(cfg: ConductorConfig): (ctx: Context, next: Next) => Promise<void> {
  if (cfg.auth.strategy === 'noauth') return async (_ctx, next) => { await next(); };
  if (cfg.auth.strategy === 'keystone') return keystoneAuth(cfg);
  if (!cfg.auth.htpasswd_file) throw new ConfigError('auth.strategy http_basic needs auth.htpasswd_file');
  const users = new HtpasswdFile(cfg.auth.htpasswd_file);
  void dummyHash(users.cost());
  const limiter = new FailureLimiter(cfg.auth.max_failures, cfg.auth.failure_window * 1000);
  const verified = new Map<string, string>();
  let verifiedGeneration = users.generation;
  return async (ctx, next) => {
    if (isPublicPath(ctx.path, ctx.method)) return next();
    const header = ctx.get('authorization');
    const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
    if (!m?.[1]) throw new NotAuthorized('Authentication required');
    const decoded = Buffer.from(m[1], 'base64').toString('utf8');
    const i = decoded.indexOf(':');
    const user = i >= 0 ? decoded.slice(0, i) : decoded;
    const hash = users.get(user);
    if (users.generation !== verifiedGeneration) {
      verified.clear();
      verifiedGeneration = users.generation;
    }
    const key = createHash('sha256').update(decoded).digest('hex');
    if (hash !== undefined && verified.get(key) === hash) return next();
    const addr = clientAddress(ctx);
    const wait = limiter.retryAfter(addr);
    if (wait > 0) {
      ctx.set('Retry-After', String(wait));
      throw new IronicError(`Too many failed authentication attempts from ${addr}; retry after ${wait} seconds.`, 429,
        'TooManyRequests');
    }
    limiter.fail(addr);
    const password = i >= 0 ? decoded.slice(i + 1) : '';
    // Unknown user: the same bcrypt work against a dummy hash, and the same answer.
    const ok = await bcrypt.compare(password, hash ?? await dummyHash(users.cost()));
    if (!ok || hash === undefined) {
      log.warn({ addr, user: user.slice(0, 64) }, 'authentication failed');
      throw new NotAuthorized('Invalid credentials');
    }
    limiter.succeed(addr);
    if (verified.size >= 1024) verified.clear();
    verified.set(key, hash);
    await next();
  };
}
