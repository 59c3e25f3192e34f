/**
 * Heartbeats for a busy node are accepted, recorded once the node is free, and their processing coalesced —
 * where Ironic answers 409 or silently skips them.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startTestConductor } from '../fixtures/conductor.js';

test('busy-node heartbeats are never lost and are coalesced', async (t) => {
  const c = await startTestConductor({ config: { require_tls: false } });
  t.after(() => c.close());
  const ctx = c.ctx!;
  const created = await c.api('POST', '/v1/nodes', { driver: 'fake-hardware', name: 'hb', deploy_interface: 'direct' });
  assert.equal(created.status, 201);
  const uuid = (created.body as { uuid: string }).uuid;
  assert.equal((await c.api('POST', '/v1/ports', { address: '52:54:00:00:00:aa', node_uuid: uuid })).status, 201);
  for (const target of ['manage', 'provide']) {
    assert.equal((await c.api('PUT', `/v1/nodes/${uuid}/states/provision`, { target })).status, 202);
    await ctx.tasks.idle();
  }
  // provide with the direct interface boots the (fake) node into the ramdisk: the node waits in `clean wait`.
  assert.equal(((await c.api('GET', `/v1/nodes/${uuid}`)).body as { provision_state: string }).provision_state, 'clean wait');
  const lookup = await c.api('GET', '/v1/lookup?addresses=52:54:00:00:00:aa');
  assert.equal(lookup.status, 200);
  const token = (lookup.body as { config: { agent_token: string } }).config.agent_token;
  assert.ok(token.length >= 32);
  // Maintenance keeps the real handler from acting on the node (no agent runs here); facts must still be kept.
  assert.equal((await c.api('PUT', `/v1/nodes/${uuid}/maintenance`, { reason: 'test' })).status, 202);
  const before = { ...ctx.heartbeats.stats };
  // Hold the node's reservation while two agents' heartbeat streams arrive.
  let release!: () => void;
  const held = new Promise<void>((r) => { release = r; });
  const holding = ctx.tasks.withNodeTask(uuid, { exclusive: true, purpose: 'long operation' }, () => held);
  const beat = (i: number) => c.api('POST', `/v1/heartbeat/${uuid}`, { callback_url: 'http://127.0.0.1:9', agent_token: token,
    agent_version: `11.1.${i}` });
  const results = await Promise.all(Array.from({ length: 40 }, (_, i) => beat(i)));
  for (const r of results) assert.equal(r.status, 202, JSON.stringify(r.body));
  const mid = await c.api('GET', `/v1/nodes/${uuid}`);
  assert.equal((mid.body as { driver_internal_info: Record<string, unknown> }).driver_internal_info.agent_url, undefined,
    'nothing is written while another task holds the node');
  release();
  await holding;
  const deadline = Date.now() + 10_000;
  let dii: Record<string, unknown> = {};
  while (Date.now() < deadline) {
    dii = ((await c.api('GET', `/v1/nodes/${uuid}`)).body as { driver_internal_info: Record<string, unknown> }).driver_internal_info;
    if (dii.agent_url) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(dii.agent_url, 'http://127.0.0.1:9', 'the deferred heartbeat was recorded');
  assert.match(String(dii.agent_version), /^11\.1\.\d+$/);
  assert.ok(dii.agent_last_heartbeat, 'the time of the heartbeat is recorded');
  const after = { ...ctx.heartbeats.stats };
  assert.equal(after.received - before.received, 40, 'every heartbeat reached the handler');
  assert.equal(after.deferred - before.deferred, 40, 'every heartbeat was deferred while the node was busy');
  assert.ok(after.runs - before.runs <= 3, `40 heartbeats were coalesced into ${after.runs - before.runs} runs`);
});
