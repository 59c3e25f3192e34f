/**
 * The calling side of the internal RPC: JSON-RPC 2.0 over HTTP(S) POST with the shared secret as a bearer
 * token (the shape of Ironic's json-rpc transport). An error the peer raised comes back as the same
 * IronicError class name and status, so the API answers a forwarded request exactly as the owner would.
 */
import { randomUUID } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { parseJsonSafe, PEER_JSON_LIMITS } from '../../common/safe-json.js';
import { IronicError } from '../errors.js';

export interface RpcClientOptions {
  secret: string;
  timeoutS: number;
  /** PEM bundle trusted for https peers (besides the system store). */
  caPem?: string | undefined;
  /** Largest response accepted. */
  maxBytes?: number;
}

interface RpcResponse {
  result?: unknown;
  error?: { code?: unknown; message?: unknown; data?: { class?: unknown } };
}

export function rpcCaller(opts: RpcClientOptions): (url: string, method: string, params: readonly unknown[]) =>
  Promise<unknown> {
  const maxBytes = opts.maxBytes ?? 64 * 2 ** 20;
  return (url, method, params) => new Promise((resolve, reject) => {
    const u = new URL(url);
    const body = Buffer.from(JSON.stringify({ jsonrpc: '2.0', method, params, id: randomUUID() }));
    const unreachable = (why: string): IronicError => new IronicError(
      `The conductor at ${u.host} could not carry out ${method}: ${why}`, 503, 'ConductorUnreachable');
    const req = (u.protocol === 'https:' ? httpsRequest : httpRequest)(u, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': body.length,
        authorization: `Bearer ${opts.secret}` },
      timeout: opts.timeoutS * 1000,
      ...(u.protocol === 'https:' && opts.caPem ? { ca: opts.caPem } : {}),
    }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > maxBytes) { req.destroy(); reject(unreachable('response too large')); return; }
        chunks.push(c);
      });
      res.on('error', (e) => reject(unreachable(e.message)));
      res.on('end', () => {
        let parsed: RpcResponse;
        try {
          parsed = parseJsonSafe(Buffer.concat(chunks).toString('utf8'), PEER_JSON_LIMITS) as RpcResponse;
        } catch {
          reject(unreachable(`HTTP ${res.statusCode ?? '?'} without a JSON-RPC answer`));
          return;
        }
        if (!parsed || typeof parsed !== 'object') { reject(unreachable('malformed answer')); return; }
        const err = parsed.error;
        if (err) {
          const status = typeof err.code === 'number' && err.code >= 400 && err.code < 600 ? err.code : 500;
          const cls = typeof err.data?.class === 'string' ? err.data.class : undefined;
          reject(new IronicError(typeof err.message === 'string' ? err.message : 'remote error', status, cls));
          return;
        }
        resolve(parsed.result ?? null);
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${opts.timeoutS}s`)));
    req.on('error', (e) => reject(unreachable(e.message)));
    req.end(body);
  });
}
