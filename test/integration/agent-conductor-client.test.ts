/**
 * The agent's conductor client and heartbeat loop against the conductor stub on loopback: backoff, 409 sleeps,
 * lookup timeout, token rules, microversion headers and body fields, URL rotation, heartbeat error classes,
 * forced heartbeats. Sleeps are injected where the real ones would be long.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  backoffSeconds,
  callbackUrl,
  ConductorClient,
  detectAdvertiseHost,
  FatalLookupError,
  ironicFaultstring,
  minVersion,
} from '../../agent/conductor-client.js';
import { Heartbeater, failureIntervalS, successIntervalS } from '../../agent/heartbeat.js';
import { LookupNodeError } from '../../protocol/agent-api.js';
import { startConductorStub, freePort } from '../fixtures/conductor-stub.js';
import { eventually } from '../fixtures/agent-http.js';

const MAC = '52:54:00:12:34:56';

test('backoff is U(min, clamp(2^(n-1), min, 60)); heartbeat intervals follow IPA', () => {
  assert.equal(backoffSeconds(1, 1, 60, () => 0), 1);
  assert.equal(backoffSeconds(1, 1, 60, () => 1), 1);
  assert.equal(backoffSeconds(4, 1, 60, () => 1), 8);
  assert.equal(backoffSeconds(4, 0.5, 60, () => 0), 0.5);
  assert.equal(backoffSeconds(12, 1, 60, () => 1), 60);
  assert.equal(backoffSeconds(3, 10, 60, () => 0.5), 10);
  assert.equal(successIntervalS(300, () => 0), 90);
  assert.equal(successIntervalS(300, () => 1), 180);
  assert.equal(failureIntervalS(5, () => 0), 5);
  assert.equal(failureIntervalS(5, () => 1), 10);
  assert.equal(minVersion('1.99', '1.62'), '1.62');
  assert.equal(minVersion('1.31', '1.62'), '1.31');
  assert.equal(minVersion('1.9', '1.10'), '1.9');
});

test('Ironic error bodies and callback URLs', () => {
  assert.equal(ironicFaultstring(JSON.stringify({ error_message: JSON.stringify({ faultstring: 'Node x locked', debuginfo: null }) })), 'Node x locked');
  assert.equal(ironicFaultstring(JSON.stringify({ error_message: { faultstring: 'obj form' } })), 'obj form');
  assert.equal(ironicFaultstring(JSON.stringify({ title: 'Not Found', description: 'nope' })), 'Not Found');
  assert.equal(ironicFaultstring('<html>bad gateway</html>'), '<html>bad gateway</html>');
  assert.equal(callbackUrl('http', '192.0.2.10', 9999), 'http://192.0.2.10:9999');
  assert.equal(callbackUrl('https', 'fd00::5', 9999), 'https://[fd00::5]:9999');
});

test('the advertise address towards a loopback conductor is loopback', async () => {
  assert.equal(await detectAdvertiseHost('http://127.0.0.1:6385'), '127.0.0.1');
});

test('lookup: retries 404s with growing random waits, sends MACs and the 1.62 header, takes the token', async (t) => {
  const stub = await startConductorStub({ lookup404Times: 4, apiVersion: '1.99' });
  t.after(() => stub.close());
  const client = new ConductorClient({ apiUrls: [stub.url], globalRequestId: 'req-8c1fe7c5-3d2a-4a55-9d61-1f4b2f6a3e10' });
  const waits: number[] = [];
  const r = await client.lookup({
    macs: [MAC, '52:54:00:00:00:02'],
    timeoutS: 600,
    intervalS: 1,
    sleep: async (ms) => void waits.push(ms),
  });
  assert.equal(r.node.uuid, stub.nodeUuid);
  assert.equal(r.token, stub.token);
  assert.equal(r.heartbeatTimeoutS, 300);
  assert.equal(waits.length, 4);
  waits.forEach((w, i) => {
    assert.ok(w >= 1000 && w <= 1000 * Math.max(1, 2 ** i), `wait ${i}: ${w}`);
  });
  const l = stub.lookups[0]!;
  assert.equal(l.query.addresses, `${MAC},52:54:00:00:00:02`);
  assert.equal(l.headers['x-openstack-ironic-api-version'], '1.62');
  assert.equal(l.headers['x-openstack-request-id'], 'req-8c1fe7c5-3d2a-4a55-9d61-1f4b2f6a3e10');
  assert.equal(l.headers.accept, 'application/json');
});

test('lookup: a conductor that does not answer version discovery is retried, not looked up at 1.31 without a token', async (t) => {
  const stub = await startConductorStub({ rootDropTimes: 2, apiVersion: '1.82' });
  t.after(() => stub.close());
  const client = new ConductorClient({ apiUrls: [stub.url] });
  const waits: number[] = [];
  const r = await client.lookup({ macs: [MAC], timeoutS: 600, intervalS: 1, sleep: async (ms) => void waits.push(ms) });
  assert.equal(waits.length, 2, 'two attempts without an answer to GET /, then the lookup');
  assert.equal(stub.lookups.length, 1);
  assert.equal(stub.lookups[0]!.headers['x-openstack-ironic-api-version'], '1.62');
  assert.equal(r.token, stub.token);
});

test('lookup: 409 adds escalating 5/10/30/30 s sleeps before the backoff', async (t) => {
  const stub = await startConductorStub({ lookup409Times: 4 });
  t.after(() => stub.close());
  const client = new ConductorClient({ apiUrls: [stub.url] });
  const waits: number[] = [];
  await client.lookup({ macs: [MAC], timeoutS: 600, intervalS: 1, sleep: async (ms) => void waits.push(ms) });
  const extra = waits.filter((_, i) => i % 2 === 0);
  assert.deepEqual(extra, [5000, 10000, 30000, 30000]);
});

test('lookup: gives up with LookupNodeError after the lookup timeout', async (t) => {
  const stub = await startConductorStub({ lookup404Times: 10_000 });
  t.after(() => stub.close());
  const client = new ConductorClient({ apiUrls: [stub.url] });
  await assert.rejects(client.lookup({ macs: [MAC], timeoutS: 0.5, intervalS: 0.05 }), (e: unknown) => {
    assert.ok(e instanceof LookupNodeError);
    assert.match((e as Error).message, /^Error getting configuration from Ironic: Could not look up node info after \d+ attempts/);
    assert.match((e as Error).message, /Node could not be found/);
    return true;
  });
  assert.ok(stub.lookups.length >= 2);
});

test('token rules: "******" is fatal without ipa-agent-token, the configured one is used with it; short tokens ignored', async (t) => {
  const stub = await startConductorStub({});
  t.after(() => stub.close());
  const client = new ConductorClient({ apiUrls: [stub.url] });
  const first = await client.lookupOnce([MAC], null, null);
  assert.ok(first.ok && first.result.token === stub.token);
  await assert.rejects(client.lookupOnce([MAC], null, null), FatalLookupError);
  const withCfg = await client.lookupOnce([MAC], null, 'c'.repeat(40));
  assert.ok(withCfg.ok && withCfg.result.token === 'c'.repeat(40));

  const short = await startConductorStub({ token: 'too-short' });
  t.after(() => short.close());
  const r = await new ConductorClient({ apiUrls: [short.url] }).lookupOnce([MAC], 'abc', null);
  assert.ok(r.ok);
  assert.equal(r.ok && r.result.token, null);
  assert.equal(short.lookups[0]?.query.node_uuid, 'abc');
});

test('a dead URL in the list is skipped and the working one moves to the front', async (t) => {
  const stub = await startConductorStub({});
  t.after(() => stub.close());
  const dead = `http://127.0.0.1:${await freePort()}`;
  const client = new ConductorClient({ apiUrls: [dead, stub.url], requestTimeoutMs: 3000 });
  const r = await client.lookup({ macs: [MAC], timeoutS: 10, intervalS: 0.05 });
  assert.equal(r.node.uuid, stub.nodeUuid);
  assert.equal(client.apiUrl, stub.url);
});

test('heartbeat bodies follow the microversion: 1.31 fallback, 1.68 with verify_ca, 1.72 with agent_status', async (t) => {
  const stub = await startConductorStub({ apiVersion: '1.72' });
  t.after(() => stub.close());
  const cb = 'https://127.0.0.1:9999';

  await new ConductorClient({ apiUrls: [stub.url], apiVersion: '1.31' }).heartbeat('n1', { callbackUrl: cb, token: 'x'.repeat(32) });
  assert.deepEqual(stub.heartbeats[0]!.body, { callback_url: cb });
  assert.equal(stub.heartbeats[0]!.headers['x-openstack-ironic-api-version'], '1.31');

  const c = new ConductorClient({ apiUrls: [stub.url] });
  await c.heartbeat('n1', { callbackUrl: cb, token: 't'.repeat(32), verifyCa: 'PEM' });
  assert.deepEqual(stub.heartbeats[1]!.body, { callback_url: cb, agent_token: 't'.repeat(32), agent_version: '11.1.0', agent_verify_ca: 'PEM' });
  assert.equal(stub.heartbeats[1]!.headers['x-openstack-ironic-api-version'], '1.68');

  await c.heartbeat('n1', { callbackUrl: cb, token: 't'.repeat(32), status: 'start', statusMessage: 'hello' });
  assert.equal(stub.heartbeats[2]!.headers['x-openstack-ironic-api-version'], '1.72');
  assert.equal(stub.heartbeats[2]!.body.agent_status, 'start');
  assert.equal(stub.heartbeats[2]!.body.agent_status_message, 'hello');
  assert.equal(stub.heartbeats[2]!.uuid, 'n1');
});

test('heartbeat failures map to IPA error classes', async (t) => {
  const stub = await startConductorStub({ heartbeatStatus: 409 });
  t.after(() => stub.close());
  const c = new ConductorClient({ apiUrls: [stub.url] });
  await assert.rejects(c.heartbeat('n', { callbackUrl: 'http://x:1', token: null }), { name: 'HeartbeatConflictError' });
  stub.setHeartbeatStatus(400);
  await assert.rejects(c.heartbeat('n', { callbackUrl: 'http://x:1', token: null }), (e: unknown) => {
    assert.equal((e as Error).name, 'HeartbeatError');
    assert.equal((e as Error).message, 'Error heartbeating to agent API: Error 400: stub answers 400');
    return true;
  });
  const dead = new ConductorClient({ apiUrls: [`http://127.0.0.1:${await freePort()}`], apiVersion: '1.68' });
  await assert.rejects(dead.heartbeat('n', { callbackUrl: 'http://x:1', token: null }), { name: 'HeartbeatConnectionError' });
});

test('heartbeat loop: first at once, forced one soon after, failures retried, stop() ends it', async (t) => {
  let calls = 0;
  let failNext = false;
  const hb = new Heartbeater({
    heartbeatTimeoutS: 10_000,
    minGapS: 0.05,
    send: async () => {
      calls++;
      if (failNext) {
        failNext = false;
        throw new Error('conductor down');
      }
    },
  });
  hb.start();
  await eventually(() => calls === 1, 'first heartbeat');
  hb.force();
  await eventually(() => calls === 2, 'forced heartbeat');
  failNext = true;
  hb.force();
  // the failed one is retried after minGap × U(1,2) without any force
  await eventually(() => calls === 4 && hb.failed === 1 && hb.sent === 3, 'retry after failure');
  assert.equal(hb.lastError, null);
  await hb.stop();
  const after = calls;
  // From here timers are mocked: whatever force() might arm after stop() fires on tick(), no wall-clock wait.
  t.mock.timers.enable({ apis: ['setTimeout'] });
  hb.force();
  t.mock.timers.tick(60_000);
  await Promise.resolve();
  assert.equal(calls, after, 'no heartbeat after stop()');
});
