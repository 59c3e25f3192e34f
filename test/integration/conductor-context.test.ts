/**
 * Two conductors in one process (two data dirs) keep their state apart: each has its own drivers (configured
 * from its own config), its own fake-driver memory and its own heartbeat bookkeeping (conductor/context.ts).
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { startTestConductor } from '../fixtures/conductor.js';

type Obj = Record<string, unknown>;
const UUID = '00000000-0000-4000-8000-0000000000c1';

test('two conductors in one process do not share state', async (t) => {
  const plain = await startTestConductor({ config: { automated_clean: false } });
  t.after(() => plain.close());
  // Started second: with process-wide drivers its configured ipxe would have replaced the first one's.
  const booting = await startTestConductor({ config: { automated_clean: false,
    boot: { http_root: join(plain.dataDir, 'http'), tftp_root: join(plain.dataDir, 'tftp'), http_url: 'http://10.0.2.100:8089' } } });
  t.after(() => booting.close());

  await t.test('each conductor validates nodes with its own configured boot interface', async () => {
    for (const c of [plain, booting]) {
      const r = await c.api('POST', '/v1/nodes', { uuid: UUID, driver: 'ipmi', boot_interface: 'ipxe',
        driver_info: { deploy_kernel: 'http://10.0.2.100/k', deploy_ramdisk: 'http://10.0.2.100/r' } });
      assert.equal(r.status, 201, JSON.stringify(r.body));
    }
    const boot = async (c: typeof plain) => ((await c.api('GET', `/v1/nodes/${UUID}/validate`)).body as { boot: Obj }).boot;
    const unconfigured = await boot(plain);
    assert.equal(unconfigured.result, false);
    assert.match(String(unconfigured.reason), /boot\.http_root and boot\.http_url/);
    assert.equal((await boot(booting)).result, true, JSON.stringify(await boot(booting)));
    assert.notEqual(plain.ctx?.drivers.getInterfaceImpl('boot', 'ipxe'), booting.ctx?.drivers.getInterfaceImpl('boot', 'ipxe'));
    assert.equal(plain.ctx?.bootServer, undefined);
    assert.ok(booting.ctx?.bootServer);
  });

  await t.test('fake management remembers boot devices per conductor', async () => {
    const id = '00000000-0000-4000-8000-0000000000c2';
    for (const c of [plain, booting]) {
      assert.equal((await c.api('POST', '/v1/nodes', { uuid: id, driver: 'fake-hardware' })).status, 201);
    }
    const set = await plain.api('PUT', `/v1/nodes/${id}/management/boot_device`, { boot_device: 'disk', persistent: true });
    assert.equal(set.status, 204, JSON.stringify(set.body));
    assert.deepEqual((await plain.api('GET', `/v1/nodes/${id}/management/boot_device`)).body,
      { boot_device: 'disk', persistent: true });
    assert.deepEqual((await booting.api('GET', `/v1/nodes/${id}/management/boot_device`)).body,
      { boot_device: 'pxe', persistent: false }, 'the other conductor\'s node of the same UUID is untouched');
  });

  await t.test('heartbeats are counted and handled by the conductor that received them', async () => {
    const a = plain.ctx?.heartbeats;
    const b = booting.ctx?.heartbeats;
    assert.ok(a && b && a !== b);
    const seenA: string[] = [];
    const seenB: string[] = [];
    a.handler = (uuid, ctx) => { assert.equal(ctx, plain.ctx); seenA.push(uuid); };
    b.handler = (uuid, ctx) => { assert.equal(ctx, booting.ctx); seenB.push(uuid); };
    const id = '00000000-0000-4000-8000-0000000000c3';
    const mac = '52:54:00:00:c3:01';
    const n = (await plain.api('POST', '/v1/nodes', { uuid: id, driver: 'fake-hardware', deploy_interface: 'fake' })).body as Obj;
    assert.equal((await plain.api('POST', '/v1/ports', { address: mac, node_uuid: n.uuid })).status, 201);
    // Put the node where heartbeats are handed over (clean wait), straight through the state machine.
    await plain.ctx?.tasks.withNodeTask(id, { exclusive: true, purpose: 'test' }, async (task) => {
      await task.fire('manage');
      await task.fire('done');
      await task.fire('provide');
      await task.fire('wait');
    });
    const lookup = await plain.api('GET', `/v1/lookup?addresses=${mac}`);
    assert.equal(lookup.status, 200, JSON.stringify(lookup.body));
    const token = (lookup.body as { config: { agent_token: string } }).config.agent_token;
    const r = await plain.api('POST', `/v1/heartbeat/${id}`, { callback_url: 'http://127.0.0.1:9', agent_token: token,
      agent_version: '11.1.0' });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const deadline = Date.now() + 10_000;
    while (seenA.length === 0 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
    assert.deepEqual(seenA, [id]);
    assert.deepEqual(seenB, []);
    assert.equal(b.stats.received, 0);
  });
});
