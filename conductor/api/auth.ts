/**
 * Operator authentication: `noauth` (every request passes, any X-Auth-Token ignored) or `http_basic` against an
 * htpasswd-style file of bcrypt hashes. The root documents and the agent endpoints (lookup, heartbeat) are
 * always public. bcrypt is deliberately slow, so successful credentials are remembered by their SHA-256.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import bcrypt from 'bcryptjs';
import type { Context, Next } from 'koa';
import { ConfigError } from '../../common/errors.js';
import type { ConductorConfig } from '../config.js';
import { NotAuthorized } from '../errors.js';

export function loadHtpasswd(file: string): Map<string, string> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read htpasswd file ${file}: ${(e as Error).message}`);
  }
  const users = new Map<string, string>();
  for (const line of text.split('\n')) {
    const l = line.trim();
    if (!l || l.startsWith('#')) continue;
    const i = l.indexOf(':');
    if (i <= 0) continue;
    const hash = l.slice(i + 1);
    if (!/^\$2[abxy]\$/.test(hash)) throw new ConfigError(`htpasswd entry for ${l.slice(0, i)} is not a bcrypt hash`);
    users.set(l.slice(0, i), hash);
  }
  return users;
}

export function isPublicPath(path: string): boolean {
  return path === '/' || path === '/v1' || path === '/v1/' || path.startsWith('/v1/lookup') ||
    path.startsWith('/v1/heartbeat/');
}

export function authMiddleware(cfg: ConductorConfig): (ctx: Context, next: Next) => Promise<void> {
  if (cfg.auth.strategy === 'noauth') return async (_ctx, next) => { await next(); };
  if (!cfg.auth.htpasswd_file) throw new ConfigError('auth.strategy http_basic needs auth.htpasswd_file');
  const users = loadHtpasswd(cfg.auth.htpasswd_file);
  const verified = new Set<string>();
  return async (ctx, next) => {
    if (isPublicPath(ctx.path)) return next();
    const header = ctx.get('authorization');
    const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
    if (!m?.[1]) throw new NotAuthorized('Authentication required');
    const decoded = Buffer.from(m[1], 'base64').toString('utf8');
    const key = createHash('sha256').update(decoded).digest('hex');
    if (!verified.has(key)) {
      const i = decoded.indexOf(':');
      const user = i >= 0 ? decoded.slice(0, i) : decoded;
      const hash = users.get(user);
      if (!hash || !(await bcrypt.compare(decoded.slice(i + 1), hash))) {
        throw new NotAuthorized('Invalid credentials');
      }
      verified.add(key);
    }
    await next();
  };
}
