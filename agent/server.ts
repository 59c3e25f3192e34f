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
import {
  AGENT_VERSION,
  AgentError,
  CommandRequestSchema,
  TokenInvalid,
  faultBody,
} from '../protocol/agent-api.js';
import type { CommandExecutor } from './commands/executor.js';
import { errorMessage } from '../common/errors.js';

export const DEFAULT_BODY_LIMIT = 64 * 1024 * 1024;
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
  /** Ironic 21.4 lists commands without a token; set to insist on it anyway. */
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

async function readBody(ctx: Context, limit: number): Promise<Buffer> {
  const declared = Number(ctx.get('content-length') || '0');
  if (declared > limit) throw new HttpFault(413, TOO_LARGE);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new HttpFault(413, TOO_LARGE);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** Ironic sends the JSON with Content-Type application/json, but IPA parses whatever arrives (force=True). */
function parseCommand(raw: Buffer): { name: string; params: Record<string, unknown> } {
  let body: unknown;
  try {
    body = JSON.parse(raw.toString('utf8'));
  } catch (e) {
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
  // IPA latches: once a read carried a token, reads without one are refused.
  let readsCarryToken = opts.requireTokenForReads;

  const checkToken = (ctx: Context, read: boolean): void => {
    const given = queryToken(ctx);
    const held = opts.token();
    if (read) {
      if (given !== null) readsCarryToken = true;
      if (given === null && !readsCarryToken) return;
    }
    if (held === null) {
      if (opts.standalone) return;
      throw new TokenInvalid('Token invalid.');
    }
    if (given !== held) throw new TokenInvalid('Token invalid.');
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
      checkToken(ctx, true);
      ctx.body = { commands: opts.executor.list() };
    });

    router.get(`${prefix}/commands/:id`, async (ctx) => {
      checkToken(ctx, true);
      const id = ctx.params.id ?? '';
      ctx.body = wantWait(ctx) ? await opts.executor.wait(id) : opts.executor.get(id);
    });

    router.post(`${prefix}/commands`, async (ctx) => {
      const { name, params } = parseCommand(await readBody(ctx, limit));
      checkToken(ctx, false);
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

export interface AgentHttpServer {
  server: Server;
  port: number;
  protocol: 'http' | 'https';
  close(): Promise<void>;
}

/** Listen on host:port (port 0 = any free port), over TLS when key/cert are given. */
export async function startServer(
  app: Koa,
  listen: { host: string; port: number; tls?: TlsMaterial | null },
): Promise<AgentHttpServer> {
  const handler = app.callback();
  const server: Server = listen.tls
    ? createHttpsServer({ key: listen.tls.key, cert: listen.tls.cert, minVersion: 'TLSv1.2' }, handler)
    : createHttpServer(handler);
  // Large configdrives arrive slowly over TCG guest networking; keep requests alive long enough.
  server.requestTimeout = 0;
  server.headersTimeout = 60_000;
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
