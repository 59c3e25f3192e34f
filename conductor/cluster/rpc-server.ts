/**
 * The serving side of the internal RPC: one POST endpoint taking JSON-RPC 2.0 calls from other conductors,
 * authenticated by the shared secret (compared in constant time), dispatched to rpc-methods.ts. It listens on
 * its own address (conductor.rpc_host/rpc_port), apart from the public API and its operator auth, as Ironic's
 * json-rpc server does; with the API on TLS it serves the same certificate.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { errorMessage } from '../../common/errors.js';
import { parseJsonSafe, PEER_JSON_LIMITS } from '../../common/safe-json.js';
import type { ConductorContext } from '../context.js';
import { RPC_METHODS } from './rpc-methods.js';

export interface RpcServerOptions {
  host: string;
  port: number;
  secret: string;
  maxBodyBytes: number;
  tls?: { cert: string; key: string } | undefined;
}

export interface RunningRpcServer {
  url: string;
  close(): Promise<void>;
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function readBody(req: IncomingMessage, max: number): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > max) return undefined;
    chunks.push(c);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export async function startRpcServer(c: ConductorContext, opts: RpcServerOptions): Promise<RunningRpcServer> {
  const want = digest(opts.secret);
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (req.method !== 'POST' || (req.url !== '/' && req.url !== '/rpc')) {
      send(res, 405, { jsonrpc: '2.0', id: null, error: { code: -32600, message: 'POST a JSON-RPC call to /' } });
      return;
    }
    const auth = req.headers.authorization ?? '';
    const given = auth.startsWith('Bearer ') ? auth.slice(7) : '';
    if (!given || !timingSafeEqual(digest(given), want)) {
      send(res, 401, { jsonrpc: '2.0', id: null, error: { code: 401, message: 'unauthenticated RPC call' } });
      return;
    }
    const text = await readBody(req, opts.maxBodyBytes);
    if (text === undefined) {
      send(res, 413, { jsonrpc: '2.0', id: null, error: { code: 413, message: 'RPC call too large' } });
      return;
    }
    let call: { method?: unknown; params?: unknown; id?: unknown };
    try {
      call = parseJsonSafe(text, PEER_JSON_LIMITS) as typeof call;
      if (!call || typeof call !== 'object') throw new Error('not an object');
    } catch (e) {
      send(res, 400, { jsonrpc: '2.0', id: null, error: { code: -32700, message: `parse error: ${errorMessage(e)}` } });
      return;
    }
    const id = typeof call.id === 'string' || typeof call.id === 'number' ? call.id : null;
    const method = typeof call.method === 'string' ? RPC_METHODS[call.method] : undefined;
    if (!method || !Array.isArray(call.params)) {
      send(res, 200, { jsonrpc: '2.0', id, error: { code: -32601,
        message: `unknown RPC method or params not a list: ${String(call.method).slice(0, 64)}` } });
      return;
    }
    try {
      const result = await method(c, call.params as unknown[]);
      send(res, 200, { jsonrpc: '2.0', id, result: result ?? null });
    } catch (e) {
      const err = e as { status?: unknown; code?: unknown };
      const status = typeof err.status === 'number' ? err.status : 500;
      if (status >= 500) c.log.warn({ method: call.method, err: errorMessage(e) }, 'RPC call failed');
      send(res, 200, { jsonrpc: '2.0', id, error: { code: status, message: errorMessage(e),
        data: { class: typeof err.code === 'string' ? err.code : 'IronicError' } } });
    }
  };
  const listener = (req: IncomingMessage, res: ServerResponse): void => {
    handle(req, res).catch((e: unknown) => {
      if (!res.headersSent) send(res, 500, { jsonrpc: '2.0', id: null, error: { code: 500, message: errorMessage(e) } });
      else res.destroy();
    });
  };
  const server: Server | HttpsServer = opts.tls ? createHttpsServer({ cert: opts.tls.cert, key: opts.tls.key }, listener)
    : createServer(listener);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => { server.off('error', reject); resolve(); });
  });
  const port = (server.address() as AddressInfo).port;
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  return {
    url: `${opts.tls ? 'https' : 'http'}://${host}:${port}/`,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeIdleConnections();
      setTimeout(() => server.closeAllConnections(), 2000).unref();
    }),
  };
}
