/**
 * The agent's command API on koa: discovery, status, command list/get/run.
 * Every error leaves as the WSME fault body `{faultcode, faultstring}`, produced only in `faults` below.
 */
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import Koa, { type Context } from 'koa';
import Router from '@koa/router';
import { z } from 'zod';
import { getLogger, type Logger } from '../common/logger.js';
import { JsonInputError, parseJsonSafe, type JsonLimits } from '../common/safe-json.js';
import {
  AGENT_VERSION,
  AgentError,
  CommandRequestSchema,
  TokenInvalid,
  faultBody,
} from '../protocol/agent-api.js';
import type { CommandExecutor } from './commands/executor.js';
import { tokensEqual } from './token-check.js';
import { errorMessage } from '../common/errors.js';

/** Command bodies are small JSON; config drives arrive gzip+base64 and stay far below this (ipa-command-body-limit). */
export const DEFAULT_BODY_LIMIT = 1024 * 1024;
/** Whole request (headers + body) must arrive within this; a trickled body is cut off (408). */
export const DEFAULT_REQUEST_TIMEOUT_MS = 60_000;
export const DEFAULT_HEADERS_TIMEOUT_MS = 30_000;
const DOCS_URL = 'https://docs.openstack.org/ironic-python-agent';
const MEDIA_TYPE = 'application/vnd.openstack.ironic-python-agent.v1+json';

/** An HTTP-level refusal with werkzeug's wording (routing, body parsing). */
export class HttpFault extends Error {
  constructor(
    readonly status: number,
    readonly faultstring: string,
  ) {
    super(faultstring);
  }
}

const NOT_FOUND =
  '404 Not Found: The requested URL was not found on the server. If you entered the URL manually please check ' +
  'your spelling and try again.';
const METHOD_NOT_ALLOWED = '405 Method Not Allowed: The method is not allowed for the requested URL.';
const TOO_LARGE = '413 Request Entity Too Large: The data value transmitted exceeds the capacity limit.';
const BAD_PARAMS = '400 Bad Request: Missing or invalid name or params';

export interface ServerOptions {
  executor: CommandExecutor;
  /** The token the agent holds now (it arrives with the lookup, after the app exists). */
  token: () => string | null;
  standalone: boolean;
  /**
   * Ironic 21.4 lists commands without a token; set to insist on it anyway. Results of confidential commands
   * (system logs) are never in a token-less list, and GET of one command needs the token once one is held.
   */
  requireTokenForReads: boolean;
  /** Unix seconds (float) for /v1/status. */
  startedAt: number;
  bodyLimitBytes?: number;
  log?: Logger;
}

const queryFlag = z.string().optional();

function wantWait(ctx: Context): boolean {
  const w = queryFlag.safeParse(ctx.query.wait);
  return w.success && typeof w.data === 'string' && w.data.toLowerCase() === 'true';
}

function queryToken(ctx: Context): string | null {
  const t = ctx.query.agent_token;
  if (Array.isArray(t)) return t[0] ?? null;
  return t === undefined || t === '' ? null : t;
}

function link(root: string, rel: string, resource = '', bookmark = false): Record<string, string> {
  if (rel === 'describedby') return { href: DOCS_URL, rel, type: 'text/html' };
  return { href: bookmark ? `${root}/${resource}` : `${root}/v1/${resource}`, rel };
}

function version(root: string): Record<string, unknown> {
  return { id: 'v1', links: [link(root, 'self', 'v1', true), link(root, 'describedby')] };
}

/** How much of an unread body node:http may still discard after a refusal before the connection is dropped. */
const LINGER_BYTES = 1024 * 1024;
const LINGER_MS = 2000;

/**
 * A refusal that leaves the body unread. node:http discards the rest after the answer so the connection can be
 * reused (a normal client, its small body already sent, keeps its connection and reads the 401 cleanly); that
 * discarding is bounded here, so a never-ending body costs at most LINGER_BYTES / LINGER_MS before the
 * connection is dropped. Closing at once instead would reset the connection under a client still sending, and
 * it could lose the answer.
 */
function refuseUnread<E extends Error>(ctx: Context, err: E): E {
  const req = ctx.req;
  ctx.res.once('finish', () => {
    if (req.complete) return;
    let discarded = 0;
    const drop = (): void => {
      clearTimeout(timer);
      req.socket.destroy();
    };
    const timer = setTimeout(drop, LINGER_MS);
    timer.unref();
    req.on('data', (c: Buffer) => {
      discarded += c.length;
      if (discarded > LINGER_BYTES) drop();
    });
    req.once('end', () => clearTimeout(timer));
  });
  return err;
}

async function readBody(ctx: Context, limit: number): Promise<Buffer> {
  const declared = Number(ctx.get('content-length') || '0');
  if (declared > limit) throw refuseUnread(ctx, new HttpFault(413, TOO_LARGE));
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of ctx.req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > limit) throw refuseUnread(ctx, new HttpFault(413, TOO_LARGE));
      chunks.push(chunk);
    }
  } catch (e) {
    if (e instanceof HttpFault) throw e;
    // The client went away (or node:http cut a request that outlived requestTimeout): not a server error.
    throw new HttpFault(400, '400 Bad Request: The request body was not received completely.');
  }
  return Buffer.concat(chunks);
}

/**
 * Command bodies: params nest a few levels (image_info, RAID configs); strings may be as long as the body
 * (a config drive). `__proto__`/`constructor`/`prototype` keys are dropped (common/safe-json.ts).
 */
const COMMAND_JSON_LIMITS: JsonLimits = { maxDepth: 32, maxStringLength: Number.MAX_SAFE_INTEGER };

/** Ironic sends the JSON with Content-Type application/json, but IPA parses whatever arrives (force=True). */
function parseCommand(raw: Buffer): { name: string; params: Record<string, unknown> } {
  let body: unknown;
  try {
    body = parseJsonSafe(raw.toString('utf8'), COMMAND_JSON_LIMITS);
  } catch (e) {
    if (e instanceof JsonInputError) throw new HttpFault(400, `400 Bad Request: ${e.message}`);
    throw new HttpFault(400, `400 Bad Request: Failed to decode JSON object: ${errorMessage(e)}`);
  }
  const r = CommandRequestSchema.safeParse(body);
  if (!r.success) throw new HttpFault(400, BAD_PARAMS);
  // z.record accepts arrays on some inputs; IPA requires a dict.
  if (Array.isArray(r.data.params)) throw new HttpFault(400, BAD_PARAMS);
  return r.data;
}

export function createApp(opts: ServerOptions): Koa {
  const log = opts.log ?? getLogger('api');
  const limit = opts.bodyLimitBytes ?? DEFAULT_BODY_LIMIT;
  const app = new Koa();
  app.proxy = false;
  // IPA latches: once a read carried a token, reads without one are refused. Only a *valid* token latches, so a
  // stranger's bogus read cannot lock a token-less (Ironic 21.4) conductor out of the list.
  let readsCarryToken = opts.requireTokenForReads;

  /**
   * 'list': Ironic 21.4 polls GET /v1/commands/ without a token; allowed until reads are latched, but the answer
   * is then redacted. 'one' (a result by id, e.g. collect_system_logs' logs) and 'run' need the token once the
   * agent holds one. Returns whether the caller proved the token (or none is needed: standalone).
   */
  const checkToken = (ctx: Context, kind: 'list' | 'one' | 'run'): boolean => {
    const given = queryToken(ctx);
    const held = opts.token();
    if (held === null) {
      if (opts.standalone) return true;
      // No token issued yet (conductor older than API 1.62): reads stay open as in IPA, commands never run.
      if (kind !== 'run' && given === null && !readsCarryToken) return false;
      throw new TokenInvalid('Token invalid.');
    }
    if (given === null) {
      if (kind === 'list' && !readsCarryToken) return false;
      throw new TokenInvalid('Token invalid.');
    }
    if (!tokensEqual(given, held)) throw new TokenInvalid('Token invalid.');
    if (kind !== 'run') readsCarryToken = true;
    return true;
  };

  app.use(async (ctx, next) => {
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined) throw new HttpFault(404, NOT_FOUND);
    } catch (err) {
      let status = 500;
      let faultstring: string;
      if (err instanceof HttpFault) {
        status = err.status;
        faultstring = err.faultstring;
      } else if (err instanceof AgentError) {
        status = err.status;
        faultstring = err.message;
      } else {
        faultstring = errorMessage(err);
        log.error({ err }, 'internal server error');
      }
      ctx.status = status;
      ctx.type = 'application/json';
      ctx.body = faultBody(status, faultstring);
      if (status >= 500) log.error({ status, faultstring, path: ctx.path }, 'request failed');
      else log.debug({ status, faultstring, path: ctx.path }, 'request refused');
    }
  });

  const router = new Router({ strict: false });
  const root = (ctx: Context): string => `${ctx.protocol}://${ctx.host}`;

  router.get('/', (ctx) => {
    const r = root(ctx);
    ctx.body = {
      name: 'OpenStack Ironic Python Agent API',
      description: 'Ironic Python Agent is a provisioning agent for OpenStack Ironic',
      versions: [version(r)],
      default_version: version(r),
    };
  });

  router.get('/v1', (ctx) => {
    const r = root(ctx);
    ctx.body = {
      commands: [link(r, 'self', 'commands'), link(r, 'bookmark', 'commands', true)],
      status: [link(r, 'self', 'status'), link(r, 'bookmark', 'status', true)],
      media_types: [{ base: 'application/json', type: MEDIA_TYPE }],
      ...version(r),
    };
  });

  for (const prefix of ['/v1', '']) {
    router.get(`${prefix}/status`, (ctx) => {
      ctx.body = { started_at: opts.startedAt, version: AGENT_VERSION };
    });

    router.get(`${prefix}/commands`, (ctx) => {
      const proven = checkToken(ctx, 'list');
      ctx.body = { commands: opts.executor.list({ redactConfidential: !proven }) };
    });

    router.get(`${prefix}/commands/:id`, async (ctx) => {
      checkToken(ctx, 'one');
      const id = ctx.params.id ?? '';
      ctx.body = wantWait(ctx) ? await opts.executor.wait(id) : opts.executor.get(id);
    });

    router.post(`${prefix}/commands`, async (ctx) => {
      // Token first: a caller without it never gets its body read (IPA parses first and answers 400 before 401).
      try {
        checkToken(ctx, 'run');
      } catch (e) {
        throw refuseUnread(ctx, e as Error);
      }
      const { name, params } = parseCommand(await readBody(ctx, limit));
      log.info({ command: name }, 'command requested');
      ctx.body = await opts.executor.execute(name, params, { wait: wantWait(ctx) });
    });
  }

  app.use(router.routes());
  app.use(
    router.allowedMethods({
      throw: true,
      methodNotAllowed: () => new HttpFault(405, METHOD_NOT_ALLOWED),
      notImplemented: () => new HttpFault(405, METHOD_NOT_ALLOWED),
    }),
  );
  return app;
}

export interface TlsMaterial {
  key: string;
  cert: string;
}

export interface ServerTimeouts {
  /** Whole request, headers and body (node:http requestTimeout). */
  requestMs?: number;
  headersMs?: number;
  /** How often node:http checks the two above (default 30 s would let a slow request live that much longer). */
  checkIntervalMs?: number;
}

export interface AgentHttpServer {
  server: Server;
  port: number;
  protocol: 'http' | 'https';
  close(): Promise<void>;
}

/** Listen on host:port (port 0 = any free port), over TLS when key/cert are given. */
export async function startServer(
  app: Koa,
  listen: { host: string; port: number; tls?: TlsMaterial | null; timeouts?: ServerTimeouts },
): Promise<AgentHttpServer> {
  const handler = app.callback();
  const t = listen.timeouts ?? {};
  const requestMs = t.requestMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  const limits = {
    requestTimeout: requestMs,
    headersTimeout: Math.min(t.headersMs ?? DEFAULT_HEADERS_TIMEOUT_MS, requestMs),
    connectionsCheckingInterval: t.checkIntervalMs ?? Math.min(1000, requestMs),
  };
  const server: Server = listen.tls
    ? createHttpsServer({ key: listen.tls.key, cert: listen.tls.cert, minVersion: 'TLSv1.2', ...limits }, handler)
    : createHttpServer(limits, handler);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    port,
    protocol: listen.tls ? 'https' : 'http',
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
