/**
 * Two conductors in one process on one SQLite file (cheap: no child processes): the internal RPC's shared secret
 * and its error mapping, a second conductor refused under a live conductor's name, and a clean stop that hands the
 * nodes over at once (no heartbeat_timeout to wait for).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { logLevelFrom, setLogLevel } from '../../common/logger.js';
import type { ConfigInput } from '../../conductor/config.js';
import { startConductor, type RunningConductor } from '../../conductor/main.js';
import { eventually } from '../fixtures/agent-http.js';

const SECRET = 'rpc-test-secret-0123456789abcdef';

/** Console ports of this file's conductors: high and per-pid, clear of other tests' ephemeral ports. */
const CONSOLE_BASE = 43000 + (process.pid % 400) * 10;

function config(dir: string, name: string): ConfigInput {
  return { host: '127.0.0.1', port: 0, data_dir: dir, auth: { strategy: 'noauth' }, tls: { mode: 'off' },
    // public_host names the conductor in console_info URLs, so a test sees which one runs a console.
    console: { port_range: `${CONSOLE_BASE}:${CONSOLE_BASE + 9}`, public_host: `console-${name}.test` },
    conductor: { hostname: name, heartbeat_interval: 0.2, heartbeat_timeout: 30, rpc_secret: SECRET },
    periodic: { sync_power_state_interval: 0, check_provision_state_interval: 0, reservation_cleanup_interval: 0 } };
}

async function call(url: string, body: unknown, secret = SECRET): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json',
    ...(secret ? { authorization: `Bearer ${secret}` } : {}) }, body: JSON.stringify(body) });
  return { status: res.status, body: await res.json() as Record<string, unknown> };
}

async function api(c: RunningConductor, method: string, path: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${c.url}${path}`, { method, headers: { 'X-OpenStack-Ironic-API-Version': '1.82',
    ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
  ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : {}) as Record<string, unknown> };
}

test('internal RPC, duplicate names, clean hand-over between two conductors on one database', { timeout: 120_000 }, async (t) => {
  setLogLevel(logLevelFrom(process.env, 'error'));
  const dir = await mkdtemp(join(tmpdir(), 'bmts-cluster-rpc-'));
  const running: RunningConductor[] = [];
  t.after(async () => {
    for (const c of running) await c.close();
    await rm(dir, { recursive: true, force: true });
  });
  const one = await startConductor(config(dir, 'one'));
  running.push(one);
  const two = await startConductor(config(dir, 'two'));
  running.push(two);
  for (const c of [one, two]) await eventually(() => c.ctx.cluster?.shared, `${c.ctx.host} sees the other`);
  const rpcUrl = (await one.ctx.store.listConductors()).find((r) => r.hostname === 'two')?.rpc_url as string;
  assert.match(rpcUrl, /^http:\/\/127\.0\.0\.1:\d+\/$/);

  // The shared secret guards every call; answers are JSON-RPC 2.0.
  assert.equal((await call(rpcUrl, { jsonrpc: '2.0', method: 'ping', params: [], id: 1 }, '')).status, 401);
  assert.equal((await call(rpcUrl, { jsonrpc: '2.0', method: 'ping', params: [], id: 1 }, 'wrong-secret-wrong-secret')).status, 401);
  const ping = await call(rpcUrl, { jsonrpc: '2.0', method: 'ping', params: [], id: 7 });
  assert.deepEqual(ping.body, { jsonrpc: '2.0', id: 7, result: { hostname: 'two' } });
  const unknown = await call(rpcUrl, { jsonrpc: '2.0', method: 'constructor', params: [], id: 2 });
  assert.equal((unknown.body.error as { code: number }).code, -32601);
  const bad = await call(rpcUrl, { jsonrpc: '2.0', method: 'change_node_power_state', params: [42, 'power on'], id: 3 });
  assert.deepEqual((bad.body.error as { data: unknown }).data, { class: 'InvalidParameterValue' });
  const garbage = await fetch(rpcUrl, { method: 'POST', headers: { authorization: `Bearer ${SECRET}` }, body: '{nope' });
  assert.equal(garbage.status, 400);

  // A node owned by `two`, asked through `one`: the owner's errors come back as the owner raised them.
  const uuids: string[] = [];
  for (let i = 0; i < 20; i++) {
    const r = await api(one, 'POST', '/v1/nodes', { driver: 'fake-hardware' });
    assert.equal(r.status, 201);
    uuids.push(r.body.uuid as string);
  }
  const ofTwo = uuids.find((u) => one.ctx.cluster?.ownerOf({ uuid: u, driver: 'fake-hardware', conductor_group: '' }) === 'two');
  assert.ok(ofTwo, 'some node maps to two');
  const shownOne = await api(one, 'GET', `/v1/nodes/${ofTwo}`);
  assert.equal(shownOne.body.conductor, 'two');
  const wrong = await api(one, 'PUT', `/v1/nodes/${ofTwo}/states/provision`, { target: 'deploy-everything' });
  assert.equal(wrong.status, 400);
  assert.match(String(wrong.body.error_message), /deploy-everything\\?" is not a valid provision state/);
  const managed = await api(one, 'PUT', `/v1/nodes/${ofTwo}/states/provision`, { target: 'manage' });
  assert.equal(managed.status, 202);
  await eventually(async () => (await api(two, 'GET', `/v1/nodes/${ofTwo}`)).body.provision_state === 'manageable', 'managed');
  const history = await api(one, 'GET', `/v1/nodes/${ofTwo}/management/boot_device`);
  assert.equal(history.status, 200);

  // Every BMC-facing request runs on the owner: the fake management keeps its memory per conductor, so the boot
  // mode asked through `one` is in `two`'s and not in `one`'s.
  const nodeTwo = await two.ctx.store.getNodeByUuid(ofTwo);
  assert.ok(nodeTwo);
  assert.equal((await api(one, 'PUT', `/v1/nodes/${ofTwo}/states/boot_mode`, { target: 'uefi' })).status, 202);
  await eventually(async () => (await api(one, 'GET', `/v1/nodes/${ofTwo}`)).body.boot_mode === 'uefi', 'boot mode recorded');
  assert.equal(await two.ctx.drivers.resolveDriver(nodeTwo).management.getBootMode?.({ ...nodeTwo, ports: [] }), 'uefi');
  assert.equal(await one.ctx.drivers.resolveDriver(nodeTwo).management.getBootMode?.({ ...nodeTwo, ports: [] }), null);
  const ind = await api(one, 'GET', `/v1/nodes/${ofTwo}/management/indicators/led@system`);
  assert.deepEqual(ind.body, { state: 'ON' });
  const badInd = await api(one, 'GET', `/v1/nodes/${ofTwo}/management/indicators/nope@system`);
  assert.equal(badInd.status, 400);
  // Vendor passthru through a non-owner: a sync answer, an attachment (a Buffer crosses the RPC as base64),
  // the owner's error for a wrong verb; the console and NMI of a driver without them fail as the owner says.
  const sync = await api(one, 'PUT', `/v1/nodes/${ofTwo}/vendor_passthru?method=second_method`, { x: 1 });
  assert.deepEqual(sync.body, { node: ofTwo, http_method: 'PUT', args: { x: 1 } });
  const attach = await fetch(`${one.url}/v1/nodes/${ofTwo}/vendor_passthru/third_method_attach`,
    { headers: { 'X-OpenStack-Ironic-API-Version': '1.82' } });
  assert.equal(attach.headers.get('content-type'), 'application/octet-stream');
  assert.equal(await attach.text(), `node ${ofTwo}\n`);
  const verb = await api(one, 'POST', `/v1/nodes/${ofTwo}/vendor_passthru?method=second_method`, {});
  assert.equal(verb.status, 400);
  assert.match(String(verb.body.error_message), /second_method/);
  const con = await api(one, 'PUT', `/v1/nodes/${ofTwo}/states/console`, { enabled: true });
  assert.equal(con.status, 400);
  assert.match(String(con.body.error_message), /does not support console/);
  const conGet = await api(one, 'GET', `/v1/nodes/${ofTwo}/states/console`);
  assert.equal(conGet.status, 400);

  // A console runs on its node's owner; socat listens only (SoL starts when a client connects, so no BMC is needed).
  let conNode = '';
  for (let i = 0; i < 20 && !conNode; i++) {
    const r = await api(one, 'POST', '/v1/nodes', { driver: 'ipmi', console_interface: 'ipmitool-socat',
      boot_interface: 'fake', deploy_interface: 'fake',
      driver_info: { ipmi_address: '127.0.0.1', ipmi_port: 9, ipmi_username: 'u', ipmi_password: 'p' } });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    if (r.body.conductor === 'two') conNode = r.body.uuid as string;
  }
  assert.ok(conNode, 'some ipmi node maps to two');
  assert.equal((await api(one, 'PUT', `/v1/nodes/${conNode}/states/console`, { enabled: true })).status, 202);
  const conState = async (c: RunningConductor) => (await api(c, 'GET', `/v1/nodes/${conNode}/states/console`)).body as
    { console_enabled: boolean; console_info: { url: string } | null };
  await eventually(async () => (await conState(one)).console_enabled, 'console enabled');
  assert.match(String((await conState(one)).console_info?.url), /^tcp:\/\/console-two\.test:\d+$/);

  // A second conductor under a live name is refused (its RPC answers), before it touches anything.
  await assert.rejects(startConductor(config(dir, 'two')), /a conductor named "two" is already running/);

  // Clean stop: `two` deregisters, and `one` owns everything at its next beat.
  const i = running.indexOf(two);
  running.splice(i, 1);
  await two.close();
  await eventually(() => !one.ctx.cluster?.shared, 'one alone');
  const alive = await api(one, 'GET', '/v1/conductors?detail=true');
  const rows = alive.body.conductors as { hostname: string; alive: boolean; drivers: string[] }[];
  assert.deepEqual(rows.map((r) => [r.hostname, r.alive]), [['one', true], ['two', false]]);
  assert.ok(rows[0]?.drivers.includes('fake-hardware'));
  assert.equal((await api(one, 'GET', `/v1/nodes/${ofTwo}`)).body.conductor, 'one');
  // ... and its console came along: `one` runs it now (console_enabled was kept through the hand-over).
  await eventually(async () => /console-one\.test/.test(String((await conState(one)).console_info?.url)), 'console on one');
  assert.equal((await api(one, 'PUT', `/v1/nodes/${conNode}/states/console`, { enabled: false })).status, 202);
  await eventually(async () => !(await conState(one)).console_enabled, 'console disabled');
  const brief = await api(one, 'GET', '/v1/conductors');
  assert.deepEqual(Object.keys((brief.body.conductors as Record<string, unknown>[])[0] ?? {}).sort(),
    ['alive', 'conductor_group', 'hostname', 'links']);
  assert.equal((await api(one, 'GET', '/v1/conductors?fields=hostname,bogus')).status, 400);
  const old = await fetch(`${one.url}/v1/conductors`, { headers: { 'X-OpenStack-Ironic-API-Version': '1.48' } });
  assert.equal(old.status, 404);
});
