/**
 * Agent-facing API (lookup, heartbeat, token rules), the heartbeat hook, power-off token wipe, callback
 * timeouts, stale reservations at start-up and http_basic auth.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import bcrypt from 'bcryptjs';
import type { DeployInterface, DriverRegistry } from '../../conductor/drivers/index.js';
import { fakeDeploy } from '../../conductor/drivers/fake.js';
import { startConductor } from '../../conductor/main.js';
import { checkCallbackTimeouts, cleanupReservations, syncPowerStates } from '../../conductor/periodic.js';
import { fakePower } from '../../conductor/drivers/fake.js';
import { finishDeploy } from '../../conductor/services/provision.js';
import { startTestConductor, type TestConductor } from '../fixtures/conductor.js';

type Obj = Record<string, unknown>;
const MAC = '52:54:00:12:34:99';

/** A deploy interface that parks the node in `wait call-back`, as the agent-driven one does. */
const waitingDeploy: DeployInterface = { ...fakeDeploy, name: 'test-wait', async deploy() { return 'wait'; } };
/** A "real" power driver whose hardware state the test flips behind the conductor's back. */
const hw = { state: 'power on' as 'power on' | 'power off', fail: false };
function testDrivers(reg: DriverRegistry): void {
  reg.registerInterface('deploy', waitingDeploy);
  reg.registerInterface('power', { ...fakePower, name: 'test-bmc',
    async getPowerState() { if (hw.fail) throw new Error('BMC unreachable'); return hw.state; } });
  reg.registerHardwareType({ name: 'test-wait-hw', supported: { power: ['fake', 'test-bmc'], management: ['fake'], boot: ['fake'],
    deploy: ['test-wait'], network: ['noop'], storage: ['noop'], bios: ['no-bios'], console: ['no-console'],
    inspect: ['no-inspect'], raid: ['no-raid'], rescue: ['no-rescue'], vendor: ['no-vendor'] } });
}

async function until(what: string, fn: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function nodeOf(c: TestConductor, id: string): Promise<Obj> {
  return (await c.api('GET', `/v1/nodes/${id}`)).body as Obj;
}

async function toWaitCallback(c: TestConductor, name: string, mac: string): Promise<string> {
  const n = (await c.api('POST', '/v1/nodes', { driver: 'test-wait-hw', name })).body as Obj;
  const id = n.uuid as string;
  assert.equal((await c.api('POST', '/v1/ports', { address: mac, node_uuid: id })).status, 201);
  for (const [verb, state] of [['manage', 'manageable'], ['provide', 'available'], ['active', 'wait call-back']]) {
    assert.equal((await c.api('PUT', `/v1/nodes/${id}/states/provision`, { target: verb })).status, 202);
    await until(state as string, async () => {
      const x = await nodeOf(c, id);
      return x.provision_state === state && x.reservation === null;
    });
  }
  return id;
}

test('agent lookup and heartbeat', async (t) => {
  const c = await startTestConductor({ config: { enabled_hardware_types: ['fake-hardware', 'test-wait-hw'],
    deploy_callback_timeout: 60 }, drivers: testDrivers });
  t.after(() => c.close());
  const seen: string[] = [];
  c.ctx!.heartbeats.handler = (uuid, ctx) => { assert.equal(ctx.host, 'test-conductor'); seen.push(uuid); };

  const id = await toWaitCallback(c, 'agent-node', MAC);
  const v = (ver: string) => ({ 'X-OpenStack-Ironic-API-Version': ver });

  await t.test('lookup: restricted states, token issued once', async () => {
    const other = (await c.api('POST', '/v1/nodes', { driver: 'fake-hardware' })).body as Obj;
    await c.api('POST', '/v1/ports', { address: '52:54:00:12:34:98', node_uuid: other.uuid });
    const restricted = await c.api('GET', '/v1/lookup?addresses=52:54:00:12:34:98', undefined, v('1.68'));
    assert.equal(restricted.status, 404, 'enroll nodes are not looked up');
    const first = await c.api('GET', `/v1/lookup?addresses=${MAC.toUpperCase()},garbage`, undefined, v('1.68'));
    assert.equal(first.status, 200);
    const body = first.body as { node: Obj; config: Obj };
    assert.equal(body.node.uuid, id);
    assert.deepEqual(Object.keys(body.node).sort(), ['driver_internal_info', 'instance_info', 'links', 'properties', 'uuid']);
    assert.equal(body.config.heartbeat_timeout, 300);
    assert.equal(body.config.agent_token_required, true);
    assert.match(String(body.config.agent_token), /^[A-Za-z0-9_-]{43}$/);
    assert.equal((body.node.driver_internal_info as Obj).agent_secret_token, '******');
    const second = await c.api('GET', `/v1/lookup?node_uuid=${id}`, undefined, v('1.68'));
    assert.equal((second.body as { config: Obj }).config.agent_token, '******');
    const old = await c.api('GET', `/v1/lookup?addresses=${MAC}`, undefined, v('1.50'));
    assert.equal((old.body as { config: Obj }).config.agent_token, undefined, 'no token below 1.62');
    const unknown = await c.api('GET', '/v1/lookup?addresses=52:54:00:ff:ff:ff', undefined, v('1.68'));
    assert.equal(unknown.status, 404);
    // Addresses of two nodes that could each be looked up (restrict_lookup off for the enroll one): Ironic's
    // DuplicateNodeOnLookup, answered as the same plain 404.
    const config = c.ctx?.config as { restrict_lookup: boolean };
    config.restrict_lookup = false;
    try {
      assert.equal((await c.api('GET', '/v1/lookup?addresses=52:54:00:12:34:98', undefined, v('1.68'))).status, 200);
      const both = await c.api('GET', `/v1/lookup?addresses=52:54:00:12:34:98,${MAC}`, undefined, v('1.68'));
      assert.equal(both.status, 404, 'a lookup matching two nodes picks neither');
      assert.deepEqual(both.body, unknown.body);
    } finally {
      config.restrict_lookup = true;
    }
  });

  const tokenOf = async (): Promise<string> => {
    const n = await c.ctx?.store.getNodeByUuid(id);
    return String(n?.driver_internal_info.agent_secret_token);
  };

  await t.test('heartbeat: token, version, callback pinning, recording, hook', async () => {
    const token = await tokenOf();
    const hb = (body: Obj, ver = '1.68') => c.api('POST', `/v1/heartbeat/${id}`, body, v(ver));
    const base = { callback_url: 'http://127.0.0.1:9999', agent_version: '9.9.0' };
    let r = await hb(base);
    assert.equal(r.status, 400);
    assert.match(JSON.stringify(r.body), /Agent token is required/);
    r = await hb({ ...base, agent_token: 'wrong' });
    assert.match(JSON.stringify(r.body), /Invalid or missing agent token/);
    assert.equal(r.status, 400);
    r = await hb({ callback_url: base.callback_url, agent_token: token });
    assert.equal(r.status, 400);
    assert.match(JSON.stringify(r.body), /Agent version is required/);
    r = await hb({ ...base, agent_token: token, agent_verify_ca: 'PEM' }, '1.62');
    assert.equal(r.status, 400, 'agent_verify_ca needs 1.68');
    r = await hb({ ...base, agent_token: token, agent_verify_ca: 'PEM' });
    assert.equal(r.status, 202);
    assert.equal(r.headers.get('content-type'), null);
    const dii = (await c.ctx?.store.getNodeByUuid(id))?.driver_internal_info ?? {};
    assert.equal(dii.agent_url, 'http://127.0.0.1:9999');
    assert.equal(dii.agent_version, '9.9.0');
    assert.equal(dii.agent_verify_ca, 'PEM');
    assert.match(String(dii.agent_last_heartbeat), /^\d{4}-/);
    await until('heartbeat hook', async () => seen.includes(id));
    r = await hb({ ...base, callback_url: 'http://127.0.0.1:9998', agent_token: token });
    assert.equal(r.status, 400);
    assert.match(JSON.stringify(r.body), /Detected change in ramdisk provided/);
    r = await c.api('POST', '/v1/heartbeat/no-such-node', { ...base, agent_token: token });
    assert.equal(r.status, 404);
  });

  await t.test('power off wipes token and agent_url; the next lookup issues a new token', async () => {
    const before = await tokenOf();
    assert.equal((await c.api('PUT', `/v1/nodes/${id}/states/power`, { target: 'power off' })).status, 202);
    await until('power off', async () => (await nodeOf(c, id)).reservation === null);
    const dii = (await c.ctx?.store.getNodeByUuid(id))?.driver_internal_info ?? {};
    assert.equal(dii.agent_secret_token, undefined);
    assert.equal(dii.agent_url, undefined);
    const again = await c.api('GET', `/v1/lookup?addresses=${MAC}`, undefined, v('1.68'));
    const fresh = String((again.body as { config: Obj }).config.agent_token);
    assert.match(fresh, /^[A-Za-z0-9_-]{43}$/);
    assert.notEqual(fresh, before);
  });

  await t.test('finishing the deploy wipes the token and lands in active', async () => {
    const ctx = c.ctx;
    assert.ok(ctx);
    await ctx.tasks.withNodeTask(id, { exclusive: true, purpose: 'test finish' }, (task) => finishDeploy(task));
    const n = await ctx.store.getNodeByUuid(id);
    assert.equal(n?.provision_state, 'active');
    assert.equal(n?.target_provision_state, null);
    assert.equal(n?.driver_internal_info.agent_secret_token, undefined);
  });

  await t.test('callback timeout fails a node in wait call-back with last_error', async () => {
    const ctx = c.ctx;
    assert.ok(ctx);
    const id2 = await toWaitCallback(c, 'slow-agent', '52:54:00:12:34:97');
    assert.equal(await checkCallbackTimeouts(ctx), 0, 'not timed out yet');
    assert.equal(await checkCallbackTimeouts(ctx, Date.now() + 61_000), 1);
    const n = await nodeOf(c, id2);
    assert.equal(n.provision_state, 'deploy failed');
    assert.equal(n.target_provision_state, 'active');
    assert.match(String(n.last_error), /Timeout reached while waiting for callback/);
    const history = (await c.api('GET', `/v1/nodes/${id2}/history`)).body as { history: Obj[] };
    assert.ok(history.history.some((h) => h.severity === 'ERROR' && /Timeout reached/.test(String(h.event))));
  });

  await t.test('power sync records the hardware state and history, then maintenance after repeated failures', async () => {
    const ctx = c.ctx;
    assert.ok(ctx);
    const n = (await c.api('POST', '/v1/nodes', { driver: 'test-wait-hw', power_interface: 'test-bmc', name: 'bmc' })).body as Obj;
    const pid = n.uuid as string;
    assert.equal(await syncPowerStates(ctx), 0, 'enroll nodes are not synced');
    assert.equal((await c.api('PUT', `/v1/nodes/${pid}/states/provision`, { target: 'manage' })).status, 202);
    await until('manageable', async () => (await nodeOf(c, pid)).reservation === null &&
      (await nodeOf(c, pid)).provision_state === 'manageable');
    assert.equal((await nodeOf(c, pid)).power_state, 'power on', 'manage (verify) reads the BMC');
    assert.equal(await syncPowerStates(ctx), 0, 'nothing changed');
    hw.state = 'power off';
    assert.equal(await syncPowerStates(ctx), 1);
    assert.equal((await nodeOf(c, pid)).power_state, 'power off', 'hardware state recorded, not fought');
    const h = (await c.api('GET', `/v1/nodes/${pid}/history`)).body as { history: Obj[] };
    assert.ok(h.history.some((e) => /recorded power on, hardware reports power off/.test(String(e.event))));
    hw.fail = true;
    for (let i = 0; i < 3; i++) await syncPowerStates(ctx);
    const failed = await nodeOf(c, pid);
    assert.equal(failed.maintenance, true);
    assert.equal(failed.fault, 'power failure');
    assert.match(String(failed.last_error), /BMC unreachable/);
    hw.fail = false;
  });

  await t.test('reservation cleanup releases only locks no live task holds', async () => {
    const ctx = c.ctx;
    assert.ok(ctx);
    await ctx.store.reserveNode(id, ctx.host);
    assert.deepEqual(await cleanupReservations(ctx), [id]);
    assert.equal((await ctx.store.getNodeByUuid(id))?.reservation, null);
  });
});

test('start-up clears this host\'s stale reservations and fails stuck nodes', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bmts-restart-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const cfg = { host: '127.0.0.1', port: 0, data_dir: dir, conductor_host: 'restart-host',
    periodic: { sync_power_state_interval: 0, check_provision_state_interval: 0, reservation_cleanup_interval: 0 } };
  const first = await startConductor(cfg);
  const { tasks, store } = first.ctx;
  const a = await store.createNode({ uuid: '00000000-0000-4000-8000-00000000000a', driver: 'fake-hardware',
    ...(await import('../../conductor/states.js')).initialState(82) });
  await tasks.withNodeTask(a.uuid, { exclusive: true, purpose: 't' }, async (task) => { await task.fire('manage'); });
  await store.reserveNode(a.uuid, 'restart-host');
  await first.close();
  const second = await startConductor(cfg);
  t.after(() => second.close());
  const n = await second.ctx.store.getNodeByUuid(a.uuid);
  assert.equal(n?.reservation, null);
  assert.equal(n?.provision_state, 'enroll', 'verifying -> fail -> enroll');
  assert.match(String(n?.last_error), /restarted/);
});

test('http_basic auth: 401 with WWW-Authenticate, agent endpoints stay public', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bmts-auth-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'htpasswd');
  await writeFile(file, `admin:${bcrypt.hashSync('s3cret', 4)}\n`);
  const c = await startTestConductor({ config: { auth: { strategy: 'http_basic', htpasswd_file: file } } });
  t.after(() => c.close());
  const basic = (u: string, p: string) => ({ Authorization: `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}` });
  let r = await c.api('GET', '/v1/nodes');
  assert.equal(r.status, 401);
  assert.match(String(r.headers.get('www-authenticate')), /^Basic realm=/);
  assert.match(JSON.stringify(r.body), /Authentication required/);
  r = await c.api('GET', '/v1/nodes', undefined, basic('admin', 'wrong'));
  assert.equal(r.status, 401);
  r = await c.api('GET', '/v1/nodes', undefined, basic('admin', 's3cret'));
  assert.equal(r.status, 200);
  assert.equal((await c.fetch('/')).status, 200);
  assert.equal((await c.api('GET', '/v1/lookup?addresses=52:54:00:00:00:09')).status, 404, 'lookup is reachable');
});

test('child-process conductor (npm run conductor) serves and shuts down on SIGTERM', async (t) => {
  const c = await startTestConductor({ child: true });
  t.after(() => c.close());
  const r = await c.api('POST', '/v1/nodes', { driver: 'fake-hardware', name: 'child-node' });
  assert.equal(r.status, 201);
  assert.equal(r.headers.get('location'), `${c.url}/v1/nodes/${String((r.body as Obj).uuid)}`);
  await c.close();
  await assert.rejects(c.fetch('/'), 'the conductor is gone after close');
});
