/**
 * Security regressions of the agent (issue 13, "Agent API"): token checked before the body is read, command
 * bodies capped, request timeouts, constant-time token comparison, token-less reads limited to a redacted list,
 * redirects that never carry credentials cross-origin nor downgrade https, firmware downloads http(s) only and
 * size-capped, ephemeral_format from an allow-list. Everything on 127.0.0.1; the hang guards below (`timeout`) only
 * stop a test that never gets its answer, nothing asserts on elapsed time.
 */
import assert from 'node:assert/strict';
import crypto, { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, mock, test } from 'node:test';
import { CommandRegistry } from '../../agent/commands/registry.js';
import { CommandExecutor } from '../../agent/commands/executor.js';
import { ConductorClient } from '../../agent/conductor-client.js';
import { downloadImage } from '../../image/download.js';
import { formatAuxiliary } from '../../block/partition.js';
import { resetImageSettings, setImageSettings } from '../../image/settings.js';
import { downloadCap, streamImageToDevice } from '../../image/write.js';
import { have, run } from '../../common/exec.js';
import { AgentError, DeploymentError, HeartbeatError, ImageDownloadError } from '../../protocol/agent-api.js';
import { createApp, startServer, type AgentHttpServer, type ServerTimeouts } from '../../agent/server.js';
import { generateSelfSigned } from '../../agent/tls.js';
import { downloadVerified } from '../../hardware-managers/generic/firmware.js';
import { httpCall } from '../fixtures/agent-http.js';

const TOKEN = 't'.repeat(40);
const HANG_GUARD = { timeout: 20_000 };

const registry = new CommandRegistry();
registry.register('fake', {
  echo: { async: false, run: async (p: Record<string, unknown>) => ({ echoed: Object.keys(p).length }) },
  logs: { async: false, confidentialResult: true, run: async () => ({ system_logs: 'U0VDUkVUIExPR1M=' }) },
});

interface Agent {
  srv: AgentHttpServer;
  base: string;
  executor: CommandExecutor;
}

const agents: Agent[] = [];
async function startAgent(o: { limit?: number; timeouts?: ServerTimeouts; requireTokenForReads?: boolean } = {}): Promise<Agent> {
  const executor = new CommandExecutor(registry);
  const app = createApp({
    executor,
    token: () => TOKEN,
    standalone: false,
    requireTokenForReads: o.requireTokenForReads ?? false,
    startedAt: 1,
    ...(o.limit !== undefined ? { bodyLimitBytes: o.limit } : {}),
  });
  const srv = await startServer(app, { host: '127.0.0.1', port: 0, ...(o.timeouts ? { timeouts: o.timeouts } : {}) });
  const a = { srv, base: `http://127.0.0.1:${srv.port}`, executor };
  agents.push(a);
  return a;
}

after(async () => {
  for (const a of agents) await a.srv.close();
  resetImageSettings();
});

/** Raw HTTP over one socket: resolves with everything the server sent once it closes the connection. */
function rawExchange(port: number, head: string, body: (sock: net.Socket) => void): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    let got = '';
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => (got += d));
    sock.on('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' || e.code === 'EPIPE' ? resolve(got) : reject(e)));
    sock.on('close', () => resolve(got));
    sock.on('connect', () => {
      sock.write(head);
      body(sock);
    });
  });
}

test('token before body: a wrong or missing token and a never-ending body are answered 401 at once, then the connection is dropped', HANG_GUARD, async () => {
  const a = await startAgent();
  for (const q of ['agent_token=wrong', '']) {
    let writes = 0;
    const answer = await rawExchange(
      a.srv.port,
      `POST /v1/commands/?${q} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`,
      (sock) => {
        // One chunk now and more on a timer that never ends the body: only a server that answers without
        // reading (and then closes) lets this exchange finish.
        const chunk = `${(64 * 1024).toString(16)}\r\n${'{'.repeat(64 * 1024)}\r\n`;
        sock.write(chunk);
        const t = setInterval(() => {
          if (sock.destroyed || writes > 2000) return clearInterval(t);
          writes++;
          sock.write(chunk);
        }, 5);
        sock.on('close', () => clearInterval(t));
      },
    );
    assert.match(answer, /^HTTP\/1\.1 401 /, q);
    const body = answer.slice(answer.indexOf('\r\n\r\n') + 4);
    assert.deepEqual(JSON.parse(body), { faultcode: 'Client', faultstring: '401 Unauthorized: Token invalid.' });
  }
  assert.equal(a.executor.list().length, 0);
});

test('command bodies are capped at 1 MiB by default: 413 with the IPA fault body, nothing runs', async () => {
  const a = await startAgent();
  const params = { pad: 'x'.repeat(1024 * 1024) };
  const r = await httpCall(`${a.base}/v1/commands/?agent_token=${TOKEN}`, { method: 'POST', body: { name: 'fake.echo', params } });
  assert.equal(r.status, 413);
  assert.deepEqual(Object.keys(r.json).sort(), ['faultcode', 'faultstring']);
  assert.equal(r.json.faultcode, 'Client');
  assert.match(r.json.faultstring, /^413 Request Entity Too Large/);
  assert.equal(a.executor.list().length, 0);
  const small = await httpCall(`${a.base}/v1/commands/?agent_token=${TOKEN}`, { method: 'POST', body: { name: 'fake.echo', params: { a: 1 } } });
  assert.equal(small.status, 200);
});

test('request timeouts are on by default (node:http would otherwise wait forever for a body)', async () => {
  const a = await startAgent();
  assert.ok(a.srv.server.requestTimeout > 0, `requestTimeout ${a.srv.server.requestTimeout}`);
  assert.ok(a.srv.server.headersTimeout > 0 && a.srv.server.headersTimeout <= a.srv.server.requestTimeout);
});

test('slowloris: a body trickled slower than the request timeout is cut off with 408', HANG_GUARD, async () => {
  const a = await startAgent({ timeouts: { requestMs: 500, headersMs: 500, checkIntervalMs: 100 } });
  const answer = await rawExchange(
    a.srv.port,
    `POST /v1/commands/?agent_token=${TOKEN} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n`,
    (sock) => {
      const t = setInterval(() => (sock.destroyed ? clearInterval(t) : sock.write(' ')), 50);
      sock.on('close', () => clearInterval(t));
    },
  );
  assert.match(answer, /^HTTP\/1\.1 408 /);
  assert.equal(a.executor.list().length, 0);
});

test('token comparison goes through crypto.timingSafeEqual on equal-length digests', async (t) => {
  const a = await startAgent();
  const spy = mock.method(crypto, 'timingSafeEqual');
  t.after(() => spy.mock.restore());
  for (const given of ['short', TOKEN, `${TOKEN}-longer-than-the-held-one`]) {
    await httpCall(`${a.base}/v1/commands/?agent_token=${given}`, { method: 'POST', body: { name: 'fake.echo', params: {} } });
  }
  assert.ok(spy.mock.callCount() >= 3, `timingSafeEqual called ${spy.mock.callCount()} times`);
  for (const call of spy.mock.calls) {
    const [x, y] = call.arguments as [Buffer, Buffer];
    assert.equal(x.length, y.length);
  }
});

test('reads: GET of one command needs the token once one is held; the token-less list hides confidential results', async () => {
  const a = await startAgent();
  const logs = await httpCall(`${a.base}/v1/commands/?agent_token=${TOKEN}&wait=true`, { method: 'POST', body: { name: 'fake.logs', params: {} } });
  assert.equal(logs.status, 200);
  assert.deepEqual(logs.json.command_result, { system_logs: 'U0VDUkVUIExPR1M=' });
  const id = logs.json.id as string;

  const one = await httpCall(`${a.base}/v1/commands/${id}`);
  assert.equal(one.status, 401);
  assert.deepEqual(one.json, { faultcode: 'Client', faultstring: '401 Unauthorized: Token invalid.' });

  // Ironic 21.4's poll: no token, still answered, but without the logs.
  const list = await httpCall(`${a.base}/v1/commands/`);
  assert.equal(list.status, 200);
  const listed = (list.json.commands as Array<Record<string, unknown>>).find((c) => c.id === id);
  assert.ok(listed);
  assert.equal(listed.command_status, 'SUCCEEDED');
  assert.equal(listed.command_result, null);
  assert.doesNotMatch(list.text, /U0VDUkVUIExPR1M=/);

  // A stranger's wrong-token read neither gets in nor locks the token-less conductor out.
  assert.equal((await httpCall(`${a.base}/v1/commands/?agent_token=nope`)).status, 401);
  assert.equal((await httpCall(`${a.base}/v1/commands/`)).status, 200);

  const withToken = await httpCall(`${a.base}/v1/commands/${id}?agent_token=${TOKEN}`);
  assert.equal(withToken.status, 200);
  assert.deepEqual(withToken.json.command_result, { system_logs: 'U0VDUkVUIExPR1M=' });
  // A valid token on a read latches (as IPA): from now on token-less reads are refused.
  assert.equal((await httpCall(`${a.base}/v1/commands/`)).status, 401);
});

interface Seen {
  url: string;
  authorization: string | undefined;
}

async function listen(server: http.Server | https.Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}

const IMAGE = Buffer.from('image bytes '.repeat(100));

test('image redirects: Authorization kept on the same origin, dropped cross-origin; https never downgraded; hop limit', async (t) => {
  setImageSettings({ connectionRetries: 0, retryIntervalMs: 1, connectionTimeoutMs: 5_000, insecure: true });
  const seen: Seen[] = [];
  const target = http.createServer((req, res) => {
    seen.push({ url: `target${req.url}`, authorization: req.headers.authorization });
    res.end(IMAGE);
  });
  const targetPort = await listen(target);
  const origin = http.createServer((req, res) => {
    seen.push({ url: `origin${req.url}`, authorization: req.headers.authorization });
    if (req.url === '/same') res.writeHead(302, { location: '/final' }).end();
    else if (req.url === '/cross') res.writeHead(302, { location: `http://127.0.0.1:${targetPort}/img` }).end();
    else if (req.url === '/loop') res.writeHead(302, { location: '/loop' }).end();
    else if (req.url === '/file') res.writeHead(302, { location: 'file:///etc/passwd' }).end();
    else res.end(IMAGE);
  });
  const originPort = await listen(origin);
  const cert = await generateSelfSigned('127.0.0.1');
  const secure = https.createServer({ key: cert.key, cert: cert.cert }, (_req, res) => {
    res.writeHead(302, { location: `http://127.0.0.1:${targetPort}/plain` }).end();
  });
  const securePort = await listen(secure);
  t.after(() => {
    target.close();
    origin.close();
    secure.close();
    resetImageSettings();
  });
  const auth = { authorization: 'Bearer image-secret' };
  const get = async (url: string): Promise<number> => {
    let n = 0;
    await downloadImage({ imageId: 'i', urls: [url], auth }, (c) => {
      n += c.length;
    });
    return n;
  };

  // (Plain http asks twice for the first URL: the raw fast path hands a redirect over to node:http.)
  const unique = (list: Seen[]): Seen[] => list.filter((x, i) => list.findIndex((y) => y.url === x.url) === i);
  assert.equal(await get(`http://127.0.0.1:${originPort}/same`), IMAGE.length);
  assert.deepEqual(unique(seen.splice(0)), [
    { url: 'origin/same', authorization: 'Bearer image-secret' },
    { url: 'origin/final', authorization: 'Bearer image-secret' },
  ]);

  assert.equal(await get(`http://127.0.0.1:${originPort}/cross`), IMAGE.length);
  assert.deepEqual(unique(seen.splice(0)), [
    { url: 'origin/cross', authorization: 'Bearer image-secret' },
    { url: 'target/img', authorization: undefined },
  ]);

  await assert.rejects(get(`https://127.0.0.1:${securePort}/img`), (e: unknown) =>
    e instanceof AgentError && e.code === 'ImageDownloadFatalError' && /https downgrade/.test(e.details));
  assert.deepEqual(seen.splice(0), [], 'nothing was fetched over plain http');

  await assert.rejects(get(`http://127.0.0.1:${originPort}/loop`), (e: unknown) =>
    e instanceof AgentError && e.code === 'ImageDownloadFatalError' && /too many redirects/.test(e.details));
  assert.equal(seen.splice(0).length, 7, 'the fast path try, the node:http request and 5 followed redirects');

  await assert.rejects(get(`http://127.0.0.1:${originPort}/file`), (e: unknown) =>
    e instanceof AgentError && e.code === 'ImageDownloadFatalError' && /unsupported scheme file:/.test(e.details));
});

test('firmware downloads: http(s) only (no file://), size-capped', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bmts-sec-fw-'));
  const fw = Buffer.alloc(5000, 7);
  const srv = http.createServer((_req, res) => res.end(fw));
  const port = await listen(srv);
  t.after(async () => {
    srv.close();
    resetImageSettings();
    await rm(dir, { recursive: true, force: true });
  });
  const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
  const local = join(dir, 'local.bin');
  await writeFile(local, fw);

  await assert.rejects(downloadVerified(`file://${local}`, sha(fw), join(dir, 'out1')), (e: unknown) =>
    e instanceof ImageDownloadError && /Unsupported firmware URL scheme file:/.test(e.details));
  for (const url of ['ftp://127.0.0.1/x', 'data:application/octet-stream;base64,AAAA']) {
    await assert.rejects(downloadVerified(url, sha(fw), join(dir, 'out2')), ImageDownloadError);
  }
  assert.equal((await downloadVerified(`http://127.0.0.1:${port}/fw`, sha(fw), join(dir, 'out3'))).bytes, fw.length);
  setImageSettings({ firmwareMaxBytes: 1000 });
  await assert.rejects(downloadVerified(`http://127.0.0.1:${port}/fw`, sha(fw), join(dir, 'out4')), (e: unknown) =>
    e instanceof ImageDownloadError && /1000 bytes allowed/.test(e.details));
});

test('image downloads are capped by the target size: an endless qcow2 stream is refused', HANG_GUARD, async (t) => {
  if (!(await have('qemu-img'))) return t.skip('qemu-img missing');
  const dir = await mkdtemp(join(tmpdir(), 'bmts-sec-img-'));
  const device = join(dir, 'device');
  const limit = 4 * 1024 * 1024;
  await writeFile(device, '');
  await truncate(device, limit);
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', join(dir, 'img.qcow2'), '2M']);
  const qcow = await readFile(join(dir, 'img.qcow2'));
  let sent = 0;
  // The qcow2 file, then clusters no mapping table names, without end (close-delimited, no Content-Length).
  const srv = http.createServer((_req, res) => {
    res.write(qcow);
    const filler = Buffer.alloc(256 * 1024, 1);
    const more = (): void => {
      while (!res.destroyed && sent < 200 * 1024 * 1024) {
        sent += filler.length;
        if (!res.write(filler)) return void res.once('drain', more);
      }
    };
    more();
  });
  const port = await listen(srv);
  t.after(async () => {
    srv.closeAllConnections();
    srv.close();
    resetImageSettings();
    await rm(dir, { recursive: true, force: true });
  });
  setImageSettings({ connectionRetries: 0, retryIntervalMs: 1 });
  await assert.rejects(
    streamImageToDevice({
      info: { id: 'endless', urls: [`http://127.0.0.1:${port}/img.qcow2`] },
      device,
      limit,
      expected: { algo: 'sha256', value: 'ab'.repeat(32) },
    }),
    (e: unknown) => e instanceof AgentError && /does not fit on .*bytes downloaded for a/.test(e.details),
  );
  assert.ok(sent < 200 * 1024 * 1024, 'the download stopped before the server ran out');
  assert.ok(downloadCap(limit) < 2 * limit);
});

test('ephemeral_format outside the allow-list fails with a reason and is never run', async () => {
  const layout = { partitions: { ephemeral: '/nonexistent/bmts-sec-eph' }, root: '/nonexistent/root', rootBytes: 0 };
  const req = {
    rootMb: 1, swapMb: 0, ephemeralMb: 1, configdriveMb: 0, bootMode: 'bios' as const, diskLabel: 'msdos' as const,
    espMb: 0, preserveEphemeral: false, diskBytes: 1 << 30,
  };
  for (const fmt of ['bogus', 'ext4 -E nodiscard', '../../bin/sh']) {
    await assert.rejects(formatAuxiliary(layout, { ...req, ephemeralFormat: fmt }), (e: unknown) =>
      e instanceof DeploymentError && /Unsupported ephemeral_format/.test(e.details), fmt);
  }
});

test('conductor client: a redirect is never followed, so the token in a heartbeat never leaves for another origin', async (t) => {
  const elsewhere: string[] = [];
  const other = http.createServer((req, res) => {
    elsewhere.push(req.url ?? '');
    res.end('{}');
  });
  const otherPort = await listen(other);
  const conductor = http.createServer((req, res) => {
    if (req.url === '/') res.end(JSON.stringify({ default_version: { version: '1.68' } }));
    else res.writeHead(307, { location: `http://127.0.0.1:${otherPort}${req.url}` }).end();
  });
  const port = await listen(conductor);
  t.after(() => {
    other.close();
    conductor.close();
  });
  const client = new ConductorClient({ apiUrls: [`http://127.0.0.1:${port}`] });
  await assert.rejects(client.heartbeat('n1', { callbackUrl: 'http://127.0.0.1:1', token: TOKEN }), HeartbeatError);
  assert.deepEqual(elsewhere, []);
});

before(() => resetImageSettings());
