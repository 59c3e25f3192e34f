/**
 * Request/response plumbing shared by the routes: microversion negotiation, the error body (produced here and
 * nowhere else), JSON body reading with a size cap, query parsing.
 */
import type { Context, Next } from 'koa';
import { BaremetalError, errorMessage } from '../../common/errors.js';
import { getLogger } from '../../common/logger.js';
import { JsonInputError, parseJsonSafe, type JsonLimits } from '../../common/safe-json.js';
import { InvalidParameterValue, NotAcceptable, RequestEntityTooLarge } from '../errors.js';

const log = getLogger('api');

export const MIN_VERSION = { major: 1, minor: 1 };
export const MAX_VERSION = { major: 1, minor: 82 };
export const MIN_VERSION_STRING = '1.1';
export const MAX_VERSION_STRING = `1.${MAX_VERSION.minor}`;

export interface ApiState {
  minor: number;
  /** Public base URL (no trailing slash) for links. */
  base: string;
}

export function state(ctx: Context): ApiState {
  return ctx.state as ApiState;
}

export function setVersionHeaders(ctx: Context, minor?: number): void {
  ctx.set('X-OpenStack-Ironic-API-Minimum-Version', MIN_VERSION_STRING);
  ctx.set('X-OpenStack-Ironic-API-Maximum-Version', MAX_VERSION_STRING);
  if (minor !== undefined) ctx.set('X-OpenStack-Ironic-API-Version', `1.${minor}`);
}

/** Parses X-OpenStack-Ironic-API-Version (or `OpenStack-API-Version: baremetal X`); missing means 1.1. */
export function parseVersion(header: string | undefined): number {
  if (header === undefined || header === '') return MIN_VERSION.minor;
  const v = header.trim();
  if (v.toLowerCase() === 'latest') return MAX_VERSION.minor;
  const m = /^(\d+)\.(\d+)$/.exec(v);
  if (!m) throw new NotAcceptable(`Invalid value for X-OpenStack-Ironic-API-Version header: ${v}`);
  const major = Number(m[1]);
  const minor = Number(m[2]);
  if (major !== 1 || minor < MIN_VERSION.minor || minor > MAX_VERSION.minor) {
    throw new NotAcceptable(`Version ${v} was requested but the minor version is not supported by this service. ` +
      `The supported version range is: [${MIN_VERSION_STRING}, ${MAX_VERSION_STRING}].`);
  }
  return minor;
}

/** The one producer of Ironic's error body: {"error_message": "<json {faultcode, faultstring, debuginfo}>"}. */
export function sendError(ctx: Context, status: number, message: string): void {
  const inner = JSON.stringify({ faultcode: status < 500 ? 'Client' : 'Server', faultstring: message, debuginfo: null });
  ctx.status = status;
  ctx.body = { error_message: inner };
}

export async function errorMiddleware(ctx: Context, next: Next): Promise<void> {
  try {
    await next();
    if (ctx.status === 404 && ctx.body === undefined) sendError(ctx, 404, 'The resource could not be found.');
  } catch (e) {
    let status = 500;
    let message = 'Internal Server Error';
    if (e instanceof BaremetalError && e.status >= 400 && e.status < 600) {
      status = e.status;
      message = e.status >= 500 ? e.message : e.details;
    } else if (typeof (e as { status?: unknown }).status === 'number' && (e as { expose?: boolean }).expose) {
      status = (e as { status: number }).status;
      message = errorMessage(e);
    }
    if (status >= 500) log.error({ err: errorMessage(e), stack: (e as Error).stack, path: ctx.path }, 'request failed');
    // A Keystone challenge set by the auth middleware stays; http_basic's is the default.
    if (status === 401 && !ctx.response.get('WWW-Authenticate')) ctx.set('WWW-Authenticate', 'Basic realm="Baremetal API"');
    sendError(ctx, status, message);
  }
}

/** 202/204 with no body and no Content-Type (the CLI returns early when Content-Type is absent). */
export function noContent(ctx: Context, status: 202 | 204, location?: string): void {
  ctx.body = null;
  ctx.status = status;
  if (location) ctx.set('Location', location);
}

/** The request body, at most `limit` bytes (413). Events, not `for await`: its iterator costs ~30 µs a request. */
function readBody(req: Context['req'], limit: number): Promise<Buffer> {
  if (req.readableEnded) return Promise.resolve(Buffer.alloc(0));
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        done();
        req.resume();
        reject(new RequestEntityTooLarge(limit));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      done();
      resolve(chunks.length === 1 ? chunks[0] as Buffer : Buffer.concat(chunks));
    };
    const onError = (e: Error): void => {
      done();
      reject(e);
    };
    const done = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('aborted', onAborted);
    };
    const onAborted = (): void => onError(new Error('request aborted'));
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('aborted', onAborted);
  });
}

/**
 * Request bodies: Ironic's documents nest a few levels (RAID configs, network_data); 32 leaves room and keeps
 * recursive walkers (structuredClone, JSON.stringify, zod) far from the stack limit. One string may fill a
 * 1 MiB body (a config drive), so strings are bounded by the body limit and the per-field checks in services.
 */
export const BODY_JSON_LIMITS: JsonLimits = { maxDepth: 32, maxStringLength: 1024 * 1024 };

/**
 * Reads and parses a JSON body, refusing more than `limit` bytes (413), malformed JSON and bodies deeper than
 * BODY_JSON_LIMITS (400). `__proto__`/`constructor`/`prototype` keys are dropped (common/safe-json.ts).
 */
export async function readJson(ctx: Context, limit: number): Promise<unknown> {
  const declared = Number(ctx.get('content-length') || 0);
  if (declared > limit) {
    ctx.req.resume();
    throw new RequestEntityTooLarge(limit);
  }
  // A body the policy middleware already read (its rules depend on it: node PATCH paths, a port's node).
  const early = (ctx.state as { rawBody?: Buffer }).rawBody;
  if (early && early.length > limit) throw new RequestEntityTooLarge(limit);
  const text = (early ?? await readBody(ctx.req, limit)).toString('utf8');
  if (text.trim() === '') return undefined;
  try {
    return parseJsonSafe(text, BODY_JSON_LIMITS);
  } catch (e) {
    if (e instanceof JsonInputError) throw new InvalidParameterValue(`The request body is refused: ${e.message}.`);
    throw new InvalidParameterValue(`The request body is not valid JSON: ${errorMessage(e)}`);
  }
}

export async function readObject(ctx: Context, limit: number, what = 'request body'): Promise<Record<string, unknown>> {
  const body = await readJson(ctx, limit);
  if (body === undefined) return {};
  if (!body || typeof body !== 'object' || Array.isArray(body)) {
    throw new InvalidParameterValue(`Invalid ${what}: expected a JSON object.`);
  }
  return body as Record<string, unknown>;
}

export function rejectUnknownKeys(body: Record<string, unknown>, allowed: ReadonlySet<string> | readonly string[]): void {
  const set = allowed instanceof Set ? allowed : new Set(allowed as readonly string[]);
  const extra = Object.keys(body).filter((k) => !set.has(k));
  if (extra.length) {
    throw new InvalidParameterValue(`Additional properties are not allowed (${extra.map((k) => `'${k}'`).join(', ')} ` +
      `${extra.length > 1 ? 'were' : 'was'} unexpected)`);
  }
}

const TRUE = new Set(['true', '1', 'yes', 'on', 't', 'y']);
const FALSE = new Set(['false', '0', 'no', 'off', 'f', 'n']);

export function parseBool(name: string, v: string | undefined): boolean | undefined {
  if (v === undefined) return undefined;
  const l = v.toLowerCase();
  if (TRUE.has(l)) return true;
  if (FALSE.has(l)) return false;
  throw new InvalidParameterValue(`Invalid boolean value for ${name}: ${v}`);
}

/** Single-valued query parameters; repeated ones are an error, unknown ones too. */
export function queryParams(ctx: Context, allowed: readonly string[]): Record<string, string | undefined> {
  // Null prototype: a parameter the request did not give is undefined, whatever Object.prototype holds.
  const out: Record<string, string | undefined> = Object.create(null) as Record<string, string | undefined>;
  for (const [k, v] of Object.entries(ctx.query)) {
    if (!allowed.includes(k)) throw new InvalidParameterValue(`Unknown argument: "${k}"`);
    if (Array.isArray(v)) throw new InvalidParameterValue(`Argument "${k}" was given more than once.`);
    out[k] = v;
  }
  return out;
}

export function parseLimit(v: string | undefined, max: number): number {
  if (v === undefined) return max;
  if (!/^-?\d+$/.test(v)) throw new InvalidParameterValue(`Invalid limit: ${v} is not an integer.`);
  const n = Number(v);
  if (n <= 0) throw new InvalidParameterValue('Limit must be positive');
  return Math.min(n, max);
}

export function parseSortDir(v: string | undefined): 'asc' | 'desc' {
  if (v === undefined) return 'asc';
  if (v !== 'asc' && v !== 'desc') throw new InvalidParameterValue(`Invalid sort direction: ${v}. Acceptable values are 'asc' or 'desc'`);
  return v;
}

/** Strips Ironic's optional `.json` suffix from a resource ident. */
export function ident(raw: string | undefined): string {
  const s = raw ?? '';
  return s.endsWith('.json') ? s.slice(0, -5) : s;
}
