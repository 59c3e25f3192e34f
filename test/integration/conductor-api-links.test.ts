/**
 * The API tells the truth about itself: every link it hands out is routed, `?shard=` on ports filters, a config
 * drive dictionary is built into a config-2 ISO (or refused with 400), and drivers list only interfaces that exist.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { have } from '../../common/exec.js';
import { NODE_INTERFACE_KINDS } from '../../conductor/drivers/index.js';
import { startTestConductor, type TestConductor } from '../fixtures/conductor.js';

type Obj = Record<string, unknown>;

/** Every `href` with rel=self anywhere in a body. */
function selfLinks(body: unknown, out: string[] = []): string[] {
  if (Array.isArray(body)) for (const x of body) selfLinks(x, out);
  else if (body && typeof body === 'object') {
    const o = body as Obj;
    if (typeof o.href === 'string' && o.rel === 'self') out.push(o.href);
    for (const v of Object.values(o)) selfLinks(v, out);
  }
  return out;
}

async function expectRouted(c: TestConductor, hrefs: string[]): Promise<void> {
  assert.ok(hrefs.length > 0);
  for (const href of hrefs) {
    const path = href.slice(c.url.length);
    assert.ok(href.startsWith(c.url), href);
    const r = await c.api('GET', path);
    assert.notEqual(r.status, 404, `${path} is linked but not routed`);
    assert.ok(r.status < 500, `${path}: ${r.status}`);
  }
}

async function until(c: TestConductor, id: string, state: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const n = (await c.api('GET', `/v1/nodes/${id}`)).body as Obj;
    if (n.provision_state === state && n.reservation === null) return;
    if (Date.now() > deadline) throw new Error(`node ${id} did not reach ${state} (is ${String(n.provision_state)})`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('the API links only routed resources and tells the truth about its drivers', async (t) => {
  const c = await startTestConductor({ config: { automated_clean: false } });
  t.after(() => c.close());

  await t.test('GET /v1 and node bodies link only routed resources', async () => {
    const root = (await c.api('GET', '/v1')).body as Obj;
    for (const k of ['chassis', 'portgroups', 'volume', 'allocations', 'deploy_templates']) assert.ok(Array.isArray(root[k]), k);
    // The heartbeat link names a POST-only collection (/v1/heartbeat/{node}), as in Ironic: checked by POSTing.
    await expectRouted(c, selfLinks(root).filter((h) => !h.includes('docs.openstack.org') && !h.endsWith('/v1/heartbeat/')));
    const hb = await c.api('POST', '/v1/heartbeat/00000000-0000-4000-8000-000000000000', { callback_url: 'http://127.0.0.1:9' });
    assert.match((hb.body as Obj).error_message as string, /not found|could not be found/i);
    const n = (await c.api('POST', '/v1/nodes', { driver: 'fake-hardware', name: 'links' })).body as Obj;
    const shown = (await c.api('GET', `/v1/nodes/${String(n.uuid)}`)).body as Obj;
    assert.ok(Array.isArray(shown.portgroups));
    assert.ok(Array.isArray(shown.volume));
    await expectRouted(c, selfLinks(shown));
    const detail = (await c.api('GET', '/v1/nodes/detail')).body as { nodes: Obj[] };
    await expectRouted(c, selfLinks(detail.nodes));
  });

  await t.test('node history items link to a routed event', async () => {
    const n = (await c.api('POST', '/v1/nodes', { driver: 'fake-hardware', name: 'hist' })).body as Obj;
    const id = String(n.uuid);
    // A failing verb records an ERROR history entry: deploy from enroll is refused, so fail verification instead.
    await c.ctx?.tasks.withNodeTask(id, { exclusive: true, purpose: 'test' }, async (task) => {
      await task.fire('manage');
      await task.fire('fail', { lastError: 'verification failed on purpose' });
    });
    const h = (await c.api('GET', `/v1/nodes/${id}/history`)).body as { history: Obj[] };
    assert.ok(h.history.length >= 1, JSON.stringify(h));
    const item = h.history[0]!;
    const hrefs = selfLinks(item);
    await expectRouted(c, hrefs);
    const one = await c.api('GET', hrefs[0]!.slice(c.url.length));
    assert.equal(one.status, 200);
    assert.equal((one.body as Obj).uuid, item.uuid);
    assert.equal((one.body as Obj).event, 'verification failed on purpose');
    assert.equal((await c.api('GET', `/v1/nodes/${id}/history/00000000-0000-4000-8000-000000000000`)).status, 404);
  });

  await t.test('?shard= on ports returns the ports of nodes in those shards', async () => {
    const mk = async (shard: string, mac: string): Promise<string> => {
      const n = (await c.api('POST', '/v1/nodes', { driver: 'fake-hardware', shard })).body as Obj;
      const p = await c.api('POST', '/v1/ports', { address: mac, node_uuid: n.uuid });
      assert.equal(p.status, 201, JSON.stringify(p.body));
      return String((p.body as Obj).uuid);
    };
    const a = await mk('shard-a', '52:54:00:aa:00:01');
    const b = await mk('shard-b', '52:54:00:aa:00:02');
    const list = async (q: string) => ((await c.api('GET', `/v1/ports?${q}`)).body as { ports: Obj[] }).ports.map((p) => p.uuid);
    assert.deepEqual(await list('shard=shard-a'), [a]);
    assert.deepEqual((await list('shard=shard-a,shard-b')).sort(), [a, b].sort());
    assert.deepEqual(await list('shard=nowhere'), []);
    const old = await c.api('GET', '/v1/ports?shard=shard-a', undefined, { 'X-OpenStack-Ironic-API-Version': '1.81' });
    assert.equal(old.status, 406);
  });

  await t.test('fake-hardware and the other types list only interfaces that exist', async () => {
    const drivers = ((await c.api('GET', '/v1/drivers?detail=true')).body as { drivers: Obj[] }).drivers;
    assert.ok(drivers.some((d) => d.name === 'fake-hardware'));
    for (const d of drivers) {
      for (const kind of NODE_INTERFACE_KINDS) {
        for (const name of (d[`enabled_${kind}_interfaces`] ?? []) as string[]) {
          assert.ok(c.ctx?.drivers.getInterfaceImpl(kind, name), `${String(d.name)} lists ${kind} ${name}`);
        }
      }
    }
    // The hardware types' own declarations, not just what the API filters: nothing names a missing interface.
    for (const type of c.ctx?.drivers.registeredHardwareTypes() ?? []) {
      for (const [kind, names] of Object.entries(type.supported)) {
        for (const name of names ?? []) {
          assert.ok(c.ctx?.drivers.getInterfaceImpl(kind as 'boot', name), `${type.name} declares ${kind} ${name}`);
        }
      }
    }
  });

  await t.test('a config drive dictionary is built into a config-2 ISO, or refused with 400', async (st) => {
    const n = (await c.api('POST', '/v1/nodes', { driver: 'fake-hardware', name: 'cd-node' })).body as Obj;
    const id = String(n.uuid);
    for (const [verb, state] of [['manage', 'manageable'], ['provide', 'available']] as const) {
      assert.equal((await c.api('PUT', `/v1/nodes/${id}/states/provision`, { target: verb })).status, 202);
      await until(c, id, state);
    }
    const put = (configdrive: unknown) => c.api('PUT', `/v1/nodes/${id}/states/provision`, { target: 'active', configdrive });
    for (const bad of [{ meta_data: 'not a dict' }, { unknown_key: {} }, 5, ['x']]) {
      const r = await put(bad);
      assert.equal(r.status, 400, `${JSON.stringify(bad)}: ${JSON.stringify(r.body)}`);
      assert.match(String((r.body as Obj).error_message), /config ?drive/i);
    }
    assert.equal(((await c.api('GET', `/v1/nodes/${id}`)).body as Obj).provision_state, 'available', 'refused before any change');
    if (!(await have('genisoimage')) && !(await have('mkisofs'))) {
      const r = await put({ meta_data: { hostname: 'h' } });
      assert.equal(r.status, 400, 'without an ISO tool the dictionary is refused, never accepted');
      st.skip('genisoimage/mkisofs not installed: only the refusal was checked');
      return;
    }
    const r = await put({ meta_data: { hostname: 'cd-host' }, user_data: '#cloud-config\n', network_data: { links: [] } });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    await until(c, id, 'active');
    const stored = (await c.ctx?.store.getNodeByUuid(id))?.instance_info.configdrive;
    assert.equal(typeof stored, 'string', 'the conductor stores the built image, not the dictionary');
    const iso = gunzipSync(Buffer.from(stored as string, 'base64'));
    assert.equal(iso.subarray(32769, 32774).toString('latin1'), 'CD001', 'an ISO9660 image');
    assert.equal(iso.subarray(32808, 32840).toString('latin1').trim(), 'config-2', 'labelled config-2');
    const text = iso.toString('latin1');
    assert.ok(text.includes('"hostname":"cd-host"'), 'meta_data.json inside');
    assert.ok(text.includes(`"uuid":"${id}"`), 'the node UUID filled into meta_data as Ironic does');
    assert.ok(text.includes('#cloud-config'), 'user_data inside');
  });
});
