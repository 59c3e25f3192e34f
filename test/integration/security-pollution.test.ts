/**
 * Prototype pollution and oversized input, as an attacker on the provisioning network would try them (issue 13):
 * the `PATCH /extra/__proto__/shell` exploit, the same payloads through every JSON-taking endpoint of both APIs,
 * the node lists that turned into 500s once a patch had written Object.prototype (the random-workload bug), an
 * Object.prototype written anyway not reaching SQL parameters or how a program is started, and deep or huge
 * bodies answered 400 rather than 500. Each test failed on the code before the fix.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { z } from 'zod';
import { CommandExecutor } from '../../agent/commands/executor.js';
import { CommandRegistry, defineCommand } from '../../agent/commands/registry.js';
import { createApp, startServer, type AgentHttpServer } from '../../agent/server.js';
import { run } from '../../common/exec.js';
import { startTestConductor, type TestConductor } from '../fixtures/conductor.js';
import { prototypeChange, rawRequest } from '../fixtures/fuzz.js';

let c: TestConductor;
let node: string;
let port: string;
const MAC = '52:54:00:12:34:56';

before(async () => {
  // plain (noauth, HTTP): raw requests probe input handling; auth and TLS are covered by security-conductor-auth.
  c = await startTestConductor({ plain: true, config: { automated_clean: false, restrict_lookup: false } });
  const n = await c.api('POST', '/v1/nodes', { driver: 'fake-hardware', name: 'victim' });
  assert.equal(n.status, 201);
  node = (n.body as { uuid: string }).uuid;
  const p = await c.api('POST', '/v1/ports', { node_uuid: node, address: MAC });
  assert.equal(p.status, 201);
  port = (p.body as { uuid: string }).uuid;
});

after(async () => {
  await c.close();
});

/** Sends raw JSON text (an own `__proto__` key survives only this way). */
async function send(method: string, path: string, body: string): Promise<{ status: number; text: string }> {
  return rawRequest(c.url, { kind: 'x', method, path, body }, { 'x-openstack-ironic-api-version': '1.82' });
}

function faultstring(text: string): string {
  const outer = JSON.parse(text) as { error_message: string };
  return (JSON.parse(outer.error_message) as { faultstring: string }).faultstring;
}

test('the exploit: PATCH /extra/__proto__/shell is refused with 400 Invalid patch path and Object.prototype stays clean', async () => {
  const r = await send('PATCH', `/v1/nodes/${node}`, '[{"op":"add","path":"/extra/__proto__/shell","value":true}]');
  try {
    assert.equal(r.status, 400, r.text);
    assert.match(faultstring(r.text), /^Invalid patch path/);
    assert.equal(({} as Record<string, unknown>).shell, undefined);
    assert.equal(prototypeChange(), undefined);
  } finally {
    delete (Object.prototype as Record<string, unknown>).shell;
  }
});

test('constructor/prototype walks and escaped forms of __proto__ are refused too, for nodes and ports', async () => {
  const paths = ['/extra/constructor/prototype/shell', '/properties/__proto__/shell', '/extra/__proto__',
    '/extra/a~1b/constructor', '/driver_info/prototype', '/instance_info/__proto__/__proto__/shell'];
  for (const path of paths) {
    for (const target of [`/v1/nodes/${node}`, `/v1/ports/${port}`]) {
      const body = JSON.stringify([{ op: 'add', path: target.includes('ports') ? path.replace(/^\/\w+/, '/extra') : path, value: true }]);
      const r = await send('PATCH', target, body);
      assert.equal(r.status, 400, `${target} ${path}: ${r.text}`);
      assert.match(faultstring(r.text), /^Invalid patch path/, `${target} ${path}`);
      assert.equal(prototypeChange(), undefined, `${target} ${path}`);
    }
  }
});

const POLLUTERS = [
  '{"__proto__":{"shell":true,"owner":true}}',
  '{"constructor":{"prototype":{"shell":true,"owner":true}}}',
  '{"\\u005f_proto__":{"shell":true,"owner":true}}',
];

test('pollution payloads through every JSON-taking conductor endpoint: never a 5xx, Object.prototype unchanged', async () => {
  const endpoints: [string, string, (p: string) => string][] = [
    ['POST', '/v1/nodes', (p) => `{"driver":"fake-hardware","extra":${p},"properties":${p}}`],
    ['POST', '/v1/nodes', (p) => `${p.slice(0, -1)},"driver":"fake-hardware"}`],
    ['PATCH', `/v1/nodes/${node}`, (p) => `[{"op":"add","path":"/extra/x","value":${p}}]`],
    ['POST', '/v1/ports', (p) => `{"node_uuid":"${node}","address":"52:54:00:aa:aa:01","extra":${p}}`],
    ['PATCH', `/v1/ports/${port}`, (p) => `[{"op":"add","path":"/extra/x","value":${p}}]`],
    ['PUT', `/v1/nodes/${node}/states/provision`, (p) => `{"target":"manage","clean_steps":[${p}],"configdrive":${p}}`],
    ['PUT', `/v1/nodes/${node}/states/power`, (p) => `${p.slice(0, -1)},"target":"power on"}`],
    ['PUT', `/v1/nodes/${node}/states/raid`, (p) => `{"logical_disks":[${p}]}`],
    ['PUT', `/v1/nodes/${node}/maintenance`, (p) => `${p.slice(0, -1)},"reason":"x"}`],
    ['PUT', `/v1/nodes/${node}/management/boot_device`, (p) => `${p.slice(0, -1)},"boot_device":"pxe"}`],
    ['POST', `/v1/heartbeat/${node}`, (p) => `{"callback_url":"http://127.0.0.1:9999","agent_status":${p}}`],
    ['POST', `/v1/heartbeat/${node}`, (p) => `${p.slice(0, -1)},"callback_url":"http://127.0.0.1:9999"}`],
  ];
  for (const [method, path, make] of endpoints) {
    for (const p of POLLUTERS) {
      const r = await send(method, path, make(p));
      assert.ok(r.status < 500, `${method} ${path} ${make(p)}: ${r.status} ${r.text}`);
      assert.equal(prototypeChange(), undefined, `${method} ${path} ${make(p)}`);
    }
  }
  for (const q of ['__proto__[shell]=1', '__proto__.shell=1', 'constructor[prototype][shell]=1']) {
    const r = await send('GET', `/v1/lookup?addresses=${MAC}&${q}`, '');
    assert.equal(r.status, 400, r.text);
    const l = await send('GET', `/v1/nodes?${q}`, '');
    assert.equal(l.status, 400, l.text);
    assert.equal(prototypeChange(), undefined, q);
  }
  // Bodies are plain data: the stored dicts hold no prototype keys.
  const created = await send('POST', '/v1/nodes', `{"driver":"fake-hardware","extra":${POLLUTERS[0]}}`);
  assert.equal(created.status, 201, created.text);
  const extra = (JSON.parse(created.text) as { extra: Record<string, unknown> }).extra;
  assert.deepEqual(Object.keys(extra), []);
});

test('random-workload bug: node lists stay 200 after a patch tried to write Object.prototype.description_contains', async () => {
  const r = await send('PATCH', `/v1/nodes/${node}`, '[{"op":"add","path":"/driver_info/__proto__/description_contains","value":true}]');
  try {
    assert.equal(r.status, 400, r.text);
    for (const q of ['?sort_key=uuid', '?detail=0', '?resource_class=nope', '?limit=1000000', '', '?sort_key=uuid']) {
      const l = await send('GET', `/v1/nodes${q}`, '');
      assert.equal(l.status, 200, `${q}: ${l.text}`);
    }
  } finally {
    delete (Object.prototype as Record<string, unknown>).description_contains;
  }
});

test('node and port lists ignore an Object.prototype written anyway (filters come from own properties only)', async () => {
  const proto = Object.prototype as Record<string, unknown>;
  try {
    proto.owner = true;
    proto.fault = {};
    proto.node_uuid = true;
    for (const path of ['/v1/nodes?sort_key=uuid', '/v1/nodes', '/v1/nodes/detail', '/v1/ports', '/v1/nodes?limit=1']) {
      const l = await send('GET', path, '');
      assert.equal(l.status, 200, `${path}: ${l.text}`);
    }
  } finally {
    delete proto.owner;
    delete proto.fault;
    delete proto.node_uuid;
  }
});

test('an Object.prototype.shell written anyway does not make run() start a shell', async () => {
  const proto = Object.prototype as Record<string, unknown>;
  try {
    proto.shell = true;
    const r = await run('printf', ['%s', '$(echo pwned)']);
    assert.equal(r.stdout, '$(echo pwned)');
    const withInput = await run('cat', [], { input: 'in' });
    assert.equal(withInput.stdout, 'in');
  } finally {
    delete proto.shell;
  }
});

test('deep or huge bodies are 400 (never 500) on the conductor, including values grown patch by patch', async () => {
  const deep = (n: number): string => `${'{"a":'.repeat(n)}1${'}'.repeat(n)}`;
  const cases: [string, string, string][] = [
    ['POST', '/v1/nodes', `{"driver":"fake-hardware","extra":${deep(100_000)}}`],
    ['PATCH', `/v1/nodes/${node}`, `[{"op":"add","path":"/extra/deep","value":${deep(100_000)}}]`],
    ['PATCH', `/v1/ports/${port}`, `[{"op":"add","path":"/extra/deep","value":${deep(100_000)}}]`],
    ['PUT', `/v1/nodes/${node}/states/provision`, `{"target":"clean","clean_steps":${deep(100_000)}}`],
    ['POST', `/v1/heartbeat/${node}`, `{"callback_url":"http://127.0.0.1:9","agent_status":${deep(100_000)}}`],
    ['POST', '/v1/nodes', `[${'['.repeat(200_000)}${']'.repeat(200_000)}]`],
    ['PATCH', `/v1/nodes/${node}`, `[{"op":"add","path":"/extra/big","value":"${'x'.repeat(70 * 1024)}"}]`],
    ['PATCH', `/v1/nodes/${node}`, `[{"op":"add","path":"/owner","value":"${'x'.repeat(300)}"}]`],
  ];
  for (const [method, path, body] of cases) {
    const r = await send(method, path, body);
    assert.equal(r.status, 400, `${method} ${path} ${body.slice(0, 60)}: ${r.status} ${r.text.slice(0, 200)}`);
  }
  // Depth built up over several patches, each body within limits, is refused once the field is too deep.
  let path = '/extra';
  let last = { status: 0, text: '' };
  let accepted = 0;
  for (let i = 0; i < 6; i++) {
    const r = await send('PATCH', `/v1/nodes/${node}`, JSON.stringify([{ op: 'add', path: `${path}/d`, value: JSON.parse(deep(9)) }]));
    last = r;
    if (r.status !== 200) break;
    accepted++;
    path += `/d${'/a'.repeat(9)}`.slice(0, -2);
  }
  assert.equal(last.status, 400, last.text);
  assert.match(faultstring(last.text), /nested deeper than 32/);
  assert.equal(accepted, 3);
  const list = await send('GET', '/v1/nodes/detail', '');
  assert.equal(list.status, 200);
});

let agent: AgentHttpServer;
const TOKEN = 'pollution-test-token-0123456789abcdef';
let seen: Record<string, unknown>[] = [];

test('agent POST /v1/commands: pollution payloads leave Object.prototype clean; params are plain data; deep bodies 400', async (t) => {
  const reg = new CommandRegistry();
  reg.register('fake', {
    echo: defineCommand({ async: false, params: z.record(z.string(), z.unknown()), run: async (p) => { seen.push(p); return 'ok'; } }),
  });
  seen = [];
  const executor = new CommandExecutor(reg, { progressIntervalMs: 50 });
  agent = await startServer(createApp({ executor, token: () => TOKEN, standalone: false, requireTokenForReads: false,
    startedAt: 1, bodyLimitBytes: 1024 * 1024 }), { host: '127.0.0.1', port: 0 });
  t.after(() => agent.close());
  const base = `http://127.0.0.1:${agent.port}`;
  for (const p of POLLUTERS) {
    const r = await rawRequest(base, { kind: 'x', method: 'POST', path: `/v1/commands/?agent_token=${TOKEN}`,
      body: `{"name":"fake.echo","params":${p}}` });
    assert.equal(r.status, 200, r.text);
    assert.equal(prototypeChange(), undefined, p);
  }
  for (const p of seen) {
    assert.equal(Object.getPrototypeOf(p), Object.prototype);
    assert.deepEqual(Object.keys(p), []);
  }
  const deep = await rawRequest(base, { kind: 'x', method: 'POST', path: `/v1/commands/?agent_token=${TOKEN}`,
    body: `{"name":"fake.echo","params":{"x":${'['.repeat(100_000)}${']'.repeat(100_000)}}}` });
  assert.equal(deep.status, 400, deep.text);
  assert.match((JSON.parse(deep.text) as { faultstring: string }).faultstring, /nested deeper/);
});

test('found by the fuzzer: node create with null for a NOT NULL boolean is taken as unset (was a 500)', async () => {
  for (const k of ['protected', 'maintenance', 'retired', 'console_enabled']) {
    const r = await c.api('POST', '/v1/nodes', { driver: 'fake-hardware', [k]: null });
    assert.equal(r.status, 201, `${k}: ${JSON.stringify(r.body)}`);
    assert.equal((r.body as Record<string, unknown>)[k], false, k);
  }
});
