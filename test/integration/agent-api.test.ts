/**
 * The agent's command API over real HTTP on loopback, with a test registry of fake sync/async commands:
 * every endpoint, sync + async, wait=true, busy 409, token 401, IPA's fault bodies for malformed input.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { z } from 'zod';
import { CommandRegistry, defineCommand } from '../../agent/commands/registry.js';
import { CommandExecutor } from '../../agent/commands/executor.js';
import { createApp, startServer, type AgentHttpServer } from '../../agent/server.js';
import {
  AGENT_VERSION,
  ImageDownloadError,
  InvalidCommandParamsError,
  VersionMismatch,
  type CommandResult,
} from '../../protocol/agent-api.js';
import { httpCall, eventually, type TestResponse } from '../fixtures/agent-http.js';

const TOKEN = 'x'.repeat(40);
const LIMIT = 1024 * 1024;

/** Async commands block on a gate the test opens, so nothing depends on timing. */
class Gate {
  private open!: () => void;
  promise = new Promise<void>((r) => (this.open = r));
  release(): void {
    this.open();
  }
}
let gate = new Gate();
let asyncDone: CommandResult[] = [];

const registry = new CommandRegistry();
registry.register('fake', {
  echo: defineCommand({ async: false, params: z.object({ value: z.string() }), run: async (p) => ({ value: p.value }) }),
  text: { async: false, run: async () => 'hello' },
  nothing: { async: false, run: async () => undefined },
  fail: {
    async: false,
    run: async () => {
      throw new Error('boom');
    },
  },
  failstring: {
    async: false,
    run: async () => {
      // eslint-disable-next-line @typescript-eslint/only-throw-error
      throw 'plain string error';
    },
  },
  badcontent: {
    async: false,
    run: async () => {
      throw new InvalidCommandParamsError('checked inside the command');
    },
  },
  gated: {
    async: true,
    run: async (_p: Record<string, unknown>, ctx) => {
      ctx.progress({ phase: 'started' });
      await gate.promise;
      ctx.progress({ phase: 'late' });
      return 'done';
    },
  },
  progress: {
    async: true,
    run: async (_p: Record<string, unknown>, ctx) => {
      ctx.progress({ a: 1 });
      ctx.progress({ b: 2 });
      await gate.promise;
      return { final: true };
    },
  },
  afail: {
    async: true,
    run: async () => {
      throw new ImageDownloadError('Download of image x failed: 404');
    },
  },
  aplain: {
    async: true,
    run: async () => {
      throw new TypeError('bad thing');
    },
  },
  mismatch: {
    async: true,
    run: async () => {
      throw new VersionMismatch('Current versions: {}, versions used by ironic: {"x": "1"}');
    },
  },
});
registry.register('fake', {
  // a second module contributing to the same extension
  extra: { async: false, run: async () => ({ merged: true }) },
});

let srv: AgentHttpServer;
let base: string;
let heldToken: string | null = TOKEN;
let executor: CommandExecutor;

before(async () => {
  executor = new CommandExecutor(registry, { onAsyncDone: (r) => asyncDone.push(r), progressIntervalMs: 100 });
  const app = createApp({
    executor,
    token: () => heldToken,
    standalone: false,
    requireTokenForReads: false,
    startedAt: 1700000000.5,
    bodyLimitBytes: LIMIT,
  });
  srv = await startServer(app, { host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${srv.port}`;
});

after(async () => {
  gate.release();
  await srv.close();
});

const post = (body: unknown, query = `agent_token=${TOKEN}`, headers: Record<string, string> = {}): Promise<TestResponse> =>
  httpCall(`${base}/v1/commands/?${query}`, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } });

async function finishGated(): Promise<void> {
  gate.release();
  const running = executor.running();
  if (running) await executor.wait(running.id);
  gate = new Gate();
}

test('GET / and /v1 and /v1/ describe the API with links to this host', async () => {
  const root = await httpCall(`${base}/`);
  assert.equal(root.status, 200);
  assert.equal(root.headers['content-type'], 'application/json; charset=utf-8');
  assert.equal(root.json.name, 'OpenStack Ironic Python Agent API');
  assert.equal(root.json.default_version.id, 'v1');
  assert.equal(root.json.versions[0].links[0].href, `${base}/v1`);
  for (const p of ['/v1', '/v1/']) {
    const v1 = await httpCall(`${base}${p}`);
    assert.equal(v1.status, 200, p);
    assert.deepEqual(v1.json.commands, [
      { href: `${base}/v1/commands`, rel: 'self' },
      { href: `${base}/commands`, rel: 'bookmark' },
    ]);
    assert.equal(v1.json.media_types[0].type, 'application/vnd.openstack.ironic-python-agent.v1+json');
    assert.equal(v1.json.id, 'v1');
  }
});

test('GET /v1/status and /status', async () => {
  for (const p of ['/v1/status', '/status']) {
    const r = await httpCall(`${base}${p}`);
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, { started_at: 1700000000.5, version: AGENT_VERSION });
  }
});

test('sync commands: result object, wrapped string, null, merged extension', async () => {
  const echo = await post({ name: 'fake.echo', params: { value: 'v' } });
  assert.equal(echo.status, 200);
  assert.equal(echo.json.command_name, 'echo');
  assert.equal(echo.json.command_status, 'SUCCEEDED');
  assert.equal(echo.json.command_error, null);
  assert.deepEqual(echo.json.command_result, { value: 'v' });
  assert.match(echo.json.id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.deepEqual(Object.keys(echo.json).sort(), ['command_error', 'command_name', 'command_result', 'command_status', 'id']);
  assert.deepEqual((await post({ name: 'fake.text', params: {} })).json.command_result, { result: 'hello' });
  assert.equal((await post({ name: 'fake.nothing', params: {} })).json.command_result, null);
  assert.deepEqual((await post({ name: 'fake.extra', params: {} })).json.command_result, { merged: true });
});

test('sync command failures are 200 FAILED records with IPA error objects', async () => {
  const f = await post({ name: 'fake.fail', params: {} });
  assert.equal(f.status, 200);
  assert.equal(f.json.command_status, 'FAILED');
  assert.deepEqual(f.json.command_error, { type: 'CommandExecutionError', code: 500, message: 'Command execution failed', details: 'boom' });
  const s = await post({ name: 'fake.failstring', params: {} });
  assert.deepEqual(s.json.command_error, { error: 'plain string error' });
});

test('async command: RUNNING at once, busy 409 while it runs, GET one, wait=true, forced completion hook', async () => {
  asyncDone = [];
  const started = await post({ name: 'fake.gated', params: {} });
  assert.equal(started.status, 200);
  assert.equal(started.json.command_status, 'RUNNING');
  assert.equal(started.json.command_name, 'gated');
  const id: string = started.json.id;

  const busy = await post({ name: 'fake.echo', params: { value: 'x' } });
  assert.equal(busy.status, 409);
  assert.deepEqual(busy.json, { faultcode: 'Client', faultstring: 'Agent is busy: executing command gated' });

  const one = await httpCall(`${base}/v1/commands/${id}?agent_token=${TOKEN}`);
  assert.equal(one.json.command_status, 'RUNNING');
  assert.deepEqual(one.json.command_result, { phase: 'started' });

  const waiting = httpCall(`${base}/v1/commands/${id}?agent_token=${TOKEN}&wait=TRUE`);
  gate.release();
  const done = await waiting;
  assert.equal(done.status, 200);
  assert.equal(done.json.command_status, 'SUCCEEDED');
  assert.deepEqual(done.json.command_result, { result: 'gated: done' });
  await eventually(() => asyncDone.length === 1, 'onAsyncDone');
  assert.equal(asyncDone[0]?.id, id);
  gate = new Gate();
});

test('POST with wait=true blocks until an async command ends; async failures serialize', async () => {
  const failed = await post({ name: 'fake.afail', params: {} }, `agent_token=${TOKEN}&wait=true`);
  assert.equal(failed.json.command_status, 'FAILED');
  assert.deepEqual(failed.json.command_error, {
    type: 'ImageDownloadError',
    code: 500,
    message: 'Error downloading image',
    details: 'Download of image x failed: 404',
  });
  const plain = await post({ name: 'fake.aplain', params: {} }, `agent_token=${TOKEN}&wait=true`);
  assert.equal(plain.json.command_error.type, 'CommandExecutionError');
  assert.equal(plain.json.command_error.details, 'bad thing');
  const mm = await post({ name: 'fake.mismatch', params: {} }, `agent_token=${TOKEN}&wait=true`);
  assert.equal(mm.json.command_status, 'CLEAN_VERSION_MISMATCH');
  assert.equal(mm.json.command_error.code, 409);
});

test('progress updates are merged into the running command_result', async () => {
  const started = await post({ name: 'fake.progress', params: {} });
  const id: string = started.json.id;
  const merged = await eventually(async () => {
    const r = await httpCall(`${base}/v1/commands/${id}?agent_token=${TOKEN}`);
    return r.json.command_result?.b === 2 ? r.json.command_result : null;
  }, 'second progress update');
  assert.deepEqual(merged, { a: 1, b: 2 });
  await finishGated();
  assert.deepEqual(executor.get(id).command_result, { final: true });
});

test('GET /v1/commands[/] and /commands/ list every result oldest first', async () => {
  const first = await post({ name: 'fake.echo', params: { value: 'list-1' } });
  const second = await post({ name: 'fake.echo', params: { value: 'list-2' } });
  for (const p of ['/v1/commands', '/v1/commands/', '/commands/', '/commands']) {
    const r = await httpCall(`${base}${p}?agent_token=${TOKEN}`);
    assert.equal(r.status, 200, p);
    const ids = (r.json.commands as CommandResult[]).map((c) => c.id);
    assert.ok(ids.indexOf(first.json.id) >= 0 && ids.indexOf(first.json.id) < ids.indexOf(second.json.id), p);
    assert.equal(ids.at(-1), second.json.id);
  }
  const viaBookmark = await httpCall(`${base}/commands/${first.json.id}?agent_token=${TOKEN}`);
  assert.deepEqual(viaBookmark.json.command_result, { value: 'list-1' });
});

test('unknown command id is 404 with IPA wording', async () => {
  const r = await httpCall(`${base}/v1/commands/nope?agent_token=${TOKEN}`);
  assert.equal(r.status, 404);
  assert.deepEqual(r.json, { faultcode: 'Client', faultstring: 'Not found: Command Result with id nope not found.' });
});

test('token: POST without or with a wrong token is 401; reads accept no token (Ironic 21.4) until a valid one is seen', async () => {
  const unauth = { faultcode: 'Client', faultstring: '401 Unauthorized: Token invalid.' };
  for (const q of ['', 'agent_token=wrong', `agent_token=${TOKEN}x`]) {
    const r = await post({ name: 'fake.echo', params: { value: 'x' } }, q);
    assert.equal(r.status, 401, q);
    assert.deepEqual(r.json, unauth);
  }
  const wrongRead = await httpCall(`${base}/v1/commands/?agent_token=wrong`);
  assert.equal(wrongRead.status, 401);
  // earlier reads carried the valid token, which latched "reads carry tokens" (as IPA): token-less reads are refused
  // (a wrong token alone never latches: see test/integration/security-agent-api.test.ts)
  const tokenless = await httpCall(`${base}/v1/commands/`);
  assert.equal(tokenless.status, 401);
  assert.equal((await httpCall(`${base}/v1/commands/?agent_token=${TOKEN}`)).status, 200);
});

test('token: an agent holding no token refuses commands', async () => {
  heldToken = null;
  try {
    const r = await post({ name: 'fake.echo', params: { value: 'x' } }, '');
    assert.equal(r.status, 401);
    assert.equal(r.json.faultstring, '401 Unauthorized: Token invalid.');
  } finally {
    heldToken = TOKEN;
  }
});

test('body is JSON regardless of content type', async () => {
  const r = await post({ name: 'fake.echo', params: { value: 'ct' } }, `agent_token=${TOKEN}`, { 'content-type': 'text/plain' });
  assert.equal(r.status, 200);
  assert.deepEqual(r.json.command_result, { value: 'ct' });
});

interface Bad {
  name: string;
  method?: string;
  path?: string;
  body?: unknown;
  status: number;
  fault: RegExp;
}

const bad: Bad[] = [
  { name: 'truncated JSON', body: '{"name": "fake.echo"', status: 400, fault: /^400 Bad Request: Failed to decode JSON object/ },
  { name: 'empty body', body: '', status: 400, fault: /^400 Bad Request: Failed to decode JSON object/ },
  { name: 'not JSON at all', body: 'name=fake.echo', status: 400, fault: /^400 Bad Request: Failed to decode JSON object/ },
  { name: 'JSON array', body: [], status: 400, fault: /^400 Bad Request: Missing or invalid name or params$/ },
  { name: 'JSON string', body: '"fake.echo"', status: 400, fault: /^400 Bad Request: Missing or invalid name or params$/ },
  { name: 'JSON null', body: 'null', status: 400, fault: /^400 Bad Request: Missing or invalid name or params$/ },
  { name: 'missing name', body: { params: {} }, status: 400, fault: /^400 Bad Request: Missing or invalid name or params$/ },
  { name: 'missing params', body: { name: 'fake.echo' }, status: 400, fault: /^400 Bad Request: Missing or invalid name or params$/ },
  { name: 'params is an array', body: { name: 'fake.echo', params: [1] }, status: 400, fault: /Missing or invalid name or params/ },
  { name: 'params is a string', body: { name: 'fake.echo', params: 'v' }, status: 400, fault: /Missing or invalid name or params/ },
  { name: 'params is null', body: { name: 'fake.echo', params: null }, status: 400, fault: /Missing or invalid name or params/ },
  { name: 'name is a number', body: { name: 5, params: {} }, status: 400, fault: /Missing or invalid name or params/ },
  { name: 'name is empty', body: { name: '', params: {} }, status: 400, fault: /Missing or invalid name or params/ },
  {
    name: 'name without a dot',
    body: { name: 'echo', params: {} },
    status: 400,
    fault: /^Invalid command: Command name must be of the form <extension>\.<name>$/,
  },
  {
    name: 'unknown extension',
    body: { name: 'nope.echo', params: {} },
    status: 404,
    fault: /^Not found: Extension with id nope not found\.$/,
  },
  { name: 'unknown command', body: { name: 'fake.nope', params: {} }, status: 400, fault: /^Invalid command: Unknown command: nope$/ },
  { name: 'empty command after dot', body: { name: 'fake.', params: {} }, status: 400, fault: /^Invalid command: Unknown command: $/ },
  {
    name: 'wrong param type',
    body: { name: 'fake.echo', params: { value: 5 } },
    status: 400,
    fault: /^Invalid command parameters: value: /,
  },
  { name: 'missing required param', body: { name: 'fake.echo', params: {} }, status: 400, fault: /^Invalid command parameters: value: / },
  {
    name: 'command raising a content error',
    body: { name: 'fake.badcontent', params: {} },
    status: 400,
    fault: /^Invalid command parameters: checked inside the command$/,
  },
  {
    name: 'oversized body',
    body: JSON.stringify({ name: 'fake.echo', params: { value: 'x'.repeat(LIMIT + 10) } }),
    status: 413,
    fault: /^413 Request Entity Too Large/,
  },
  { name: 'PUT on commands', method: 'PUT', body: {}, status: 405, fault: /^405 Method Not Allowed/ },
  { name: 'DELETE a command', method: 'DELETE', path: '/v1/commands/abc', status: 405, fault: /^405 Method Not Allowed/ },
  { name: 'POST on status', method: 'POST', path: '/v1/status', body: {}, status: 405, fault: /^405 Method Not Allowed/ },
  { name: 'POST on root', method: 'POST', path: '/', body: {}, status: 405, fault: /^405 Method Not Allowed/ },
  { name: 'unknown path', method: 'GET', path: '/v2/commands', status: 404, fault: /^404 Not Found/ },
  { name: 'unknown nested path', method: 'GET', path: '/v1/commands/a/b', status: 404, fault: /^404 Not Found/ },
];

for (const c of bad) {
  test(`malformed: ${c.name} → ${c.status}`, async () => {
    const before = executor.list().length;
    const r = await httpCall(`${base}${c.path ?? '/v1/commands/'}?agent_token=${TOKEN}`, {
      method: c.method ?? 'POST',
      ...(c.body !== undefined ? { body: c.body } : {}),
      headers: { 'content-type': 'application/json' },
    });
    assert.equal(r.status, c.status, r.text.slice(0, 300));
    assert.equal(r.headers['content-type'], 'application/json; charset=utf-8');
    assert.equal(r.json.faultcode, c.status >= 500 ? 'Server' : 'Client');
    assert.match(r.json.faultstring, c.fault);
    assert.deepEqual(Object.keys(r.json).sort(), ['faultcode', 'faultstring']);
    assert.equal(executor.list().length, before, 'no command record was created');
  });
}

test('busy check comes before the lookup of an unknown extension (IPA order)', async () => {
  const started = await post({ name: 'fake.gated', params: {} });
  try {
    const r = await post({ name: 'nope.echo', params: {} });
    assert.equal(r.status, 409);
  } finally {
    await finishGated();
  }
  assert.equal(executor.get(started.json.id).command_status, 'SUCCEEDED');
});
