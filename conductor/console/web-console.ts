/**
 * The web console of one node (the modern stand-in for Ironic's `ipmitool-shellinabox`): an HTTP server on a port
 * from the console range serving a page with xterm.js (from the @xterm/xterm package) whose WebSocket (ws) is
 * piped to the node's SoL bridge (conductor/console/sol-bridge.ts, on loopback).
 *
 * Only authenticated API users get in: GET /v1/nodes/{n}/states/console (authenticated) mints a one-time URL
 * token; loading the page spends it and embeds a one-time WebSocket ticket; the upgrade spends the ticket. A
 * request without a live token or ticket gets 403 and no terminal.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createConnection, type Socket } from 'node:net';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { WebSocket } from 'ws';
import { getLogger } from '../../common/logger.js';

const log = getLogger('web-console');
const TICKET_TTL_MS = 60_000;

let assets: { js: Buffer; css: Buffer } | undefined;
function xtermAssets(): { js: Buffer; css: Buffer } {
  if (!assets) {
    const pkg = dirname(createRequire(import.meta.url).resolve('@xterm/xterm/package.json'));
    assets = { js: readFileSync(join(pkg, 'lib', 'xterm.js')), css: readFileSync(join(pkg, 'css', 'xterm.css')) };
  }
  return assets;
}

function page(nodeLabel: string, ticket: string): string {
  const esc = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>console: ${esc(nodeLabel)}</title>
<link rel="stylesheet" href="/xterm.css">
<style>body{margin:0;background:#000;color:#ccc;font-family:monospace}#status{padding:2px 6px}#term{height:calc(100vh - 24px)}</style>
</head><body><div id="status">connecting to ${esc(nodeLabel)}...</div><div id="term"></div>
<script src="/xterm.js"></script>
<script>
const term = new Terminal({ convertEol: false, cursorBlink: true, scrollback: 5000 });
term.open(document.getElementById('term'));
const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
const ws = new WebSocket(proto + '//' + location.host + '/ws?ticket=' + encodeURIComponent(${JSON.stringify(ticket)}));
ws.binaryType = 'arraybuffer';
const status = document.getElementById('status');
ws.onopen = () => { status.textContent = 'connected: ${esc(nodeLabel)}'; term.focus(); };
ws.onclose = () => { status.textContent = 'disconnected'; };
ws.onmessage = (e) => term.write(typeof e.data === 'string' ? e.data : new Uint8Array(e.data));
term.onData((d) => { if (ws.readyState === 1) ws.send(d); });
window.bmtsTerminal = term;
</script></body></html>`;
}

interface Secret {
  value: Buffer;
  expires: number;
}

function spend(list: Secret[], offered: string | null): boolean {
  if (!offered) return false;
  const b = Buffer.from(offered);
  const now = Date.now();
  for (let i = list.length - 1; i >= 0; i--) {
    const s = list[i] as Secret;
    if (s.expires < now) { list.splice(i, 1); continue; }
    if (s.value.length === b.length && timingSafeEqual(s.value, b)) {
      list.splice(i, 1);
      return true;
    }
  }
  return false;
}

export interface WebConsole {
  port: number;
  /** A one-time token for the page URL, valid for ttlS seconds. */
  issueToken(ttlS: number): string;
  close(): Promise<void>;
}

export async function startWebConsole(opts: { host: string; port: number; nodeLabel: string;
  bridge: { host: string; port: number } }): Promise<WebConsole> {
  const tokens: Secret[] = [];
  const tickets: Secret[] = [];
  const sockets = new Set<Socket>();
  const deny = (res: ServerResponse, why: string): void => {
    res.writeHead(403, { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store' });
    res.end(`${why}\n`);
  };
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://console');
    if (req.method !== 'GET') { res.writeHead(405); res.end(); return; }
    if (url.pathname === '/xterm.js' || url.pathname === '/xterm.css') {
      const a = xtermAssets();
      res.writeHead(200, { 'Content-Type': url.pathname.endsWith('.js') ? 'text/javascript' : 'text/css' });
      res.end(url.pathname.endsWith('.js') ? a.js : a.css);
      return;
    }
    if (url.pathname !== '/') { res.writeHead(404); res.end(); return; }
    if (!spend(tokens, url.searchParams.get('token'))) {
      deny(res, 'Console token missing, expired or already used: get a new console URL from the API.');
      return;
    }
    const ticket = randomBytes(24).toString('base64url');
    tickets.push({ value: Buffer.from(ticket), expires: Date.now() + TICKET_TTL_MS });
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store',
      'Content-Security-Policy': "default-src 'self'; script-src 'self' 'unsafe-inline'; connect-src 'self'; style-src 'self' 'unsafe-inline'" });
    res.end(page(opts.nodeLabel, ticket));
  });
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  // ws is loaded with the first web console, not by every conductor.
  const { WebSocketServer } = await import('ws');
  const wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 });
  server.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url ?? '/', 'http://console');
    if (url.pathname !== '/ws' || !spend(tickets, url.searchParams.get('ticket'))) {
      socket.end('HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      const tcp = createConnection({ host: opts.bridge.host, port: opts.bridge.port });
      tcp.on('data', (d) => { if (ws.readyState === ws.OPEN) ws.send(d); });
      tcp.on('close', () => ws.close());
      tcp.on('error', (e) => { log.warn({ err: e.message }, 'console bridge connection failed'); ws.close(); });
      ws.on('message', (d: Buffer) => tcp.write(d));
      ws.on('close', () => tcp.destroy());
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => { server.off('error', reject); resolve(); });
  });
  return {
    port: opts.port,
    issueToken: (ttlS) => {
      const t = randomBytes(24).toString('base64url');
      tokens.push({ value: Buffer.from(t), expires: Date.now() + ttlS * 1000 });
      if (tokens.length > 100) tokens.splice(0, tokens.length - 100);
      return t;
    },
    close: async () => {
      for (const c of wss.clients) c.terminate();
      wss.close();
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
