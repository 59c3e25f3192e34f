import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { NODE_FIELDS, nodeListSpec, renderNode, renderNodeBrief } from '../../conductor/api/render.js';
import { initialState } from '../../conductor/states.js';
import { RenderCache, rowsText } from '../../conductor/store/render-cache.js';
import { STORE_BACKENDS } from '../fixtures/stores.js';
import type { NodeRecord } from '../../conductor/store/types.js';

const ODD = 'q"uote\\back\u0001\u001f\u007f\n\t é € 😀 \u2028 </script>';

for (const b of STORE_BACKENDS) test(`node lists rendered by the ${b.name} store equal renderNode / renderNodeBrief, byte for byte`, { skip: b.skip }, async (t) => {
  const store = await b.open(t);
  const mk = (extra: Record<string, unknown>): Promise<NodeRecord> => store.createNode({ uuid: randomUUID(),
    driver: 'fake-hardware', ...initialState(82), ...extra });
  await mk({ name: 'plain' });
  await mk({ name: 'secrets', driver_info: { ipmi_address: '10.0.0.1', ipmi_password: 'pw', redfish_PASSWORD: '',
    nested: { password: 'x' }, ipmi_kg_key: null, n: 0.1, big: 12345678901234, neg: -0, f: 1e21 },
    instance_info: { configdrive: 'abc', image_source: 'http://x/y', image_os_hash_value: 'h' },
    driver_internal_info: { agent_secret_token: 'tok', agent_url: 'http://127.0.0.1:9999', z: [1, { a: null }],
      iscsi_chap_password: 'chap-secret-123' },
    properties: { cpus: 8, memory_mb: 16384, cpu_arch: 'x86_64', capabilities: 'boot_mode:uefi' },
    traits: ['CUSTOM_A', 'CUSTOM_B'], extra: { [ODD]: ODD } });
  await mk({ name: 'nested-token', driver_internal_info: { x: { agent_secret_token: 'n' } },
    instance_info: { note: 'no secret here' } });
  await mk({ name: 'odd', description: ODD, owner: ODD, automated_clean: true, secure_boot: false, maintenance: true,
    maintenance_reason: ODD, conductor_group: 'other', resource_class: 'baremetal' });
  await mk({ name: null, driver: 'ipmi', automated_clean: false, retired: true, protected: true });

  const conductor = { host: 'cond-1', group: '', drivers: ['fake-hardware', 'redfish'] };
  const conductorOf = (n: NodeRecord): string | null =>
    n.conductor_group === conductor.group && conductor.drivers.includes(n.driver) ? conductor.host : null;
  const records = await store.listNodes({});
  assert.equal(records.length, 5);
  const fieldSets: (readonly string[] | undefined)[] = [undefined, ['uuid'], ['name', 'conductor', 'driver_info',
    'traits', 'name', 'maintenance', 'driver_internal_info'], NODE_FIELDS];
  for (const base of ['http://127.0.0.1:6385', 'https://[::1]:6385/prefix"x']) {
    for (const minor of [1, 5, 14, 24, 31, 32, 37, 46, 52, 61, 65, 75, 81, 82]) {
      for (const fields of fieldSets) {
        const spec = nodeListSpec({ minor, base, ...(fields ? { fields } : {}), conductor });
        const rows = await store.listNodesJson({}, spec);
        assert.equal(rows.length, records.length);
        rows.forEach((row, i) => {
          const rec = records[i] as NodeRecord;
          const want = JSON.stringify(renderNode(rec, { minor, base, ...(fields ? { fields } : {}),
            conductor: conductorOf(rec) }));
          assert.equal(row.json, want, `${rec.name ?? 'null'} at 1.${minor} fields=${String(fields)}`);
          assert.equal(row.uuid, rec.uuid);
        });
        // Whole pages (rendered by the database itself on PostgreSQL) are the same items.
        assert.equal((await store.renderNodeList({}, spec)).items.toString('utf8'), rows.map((r) => r.json).join(','),
          `page at 1.${minor} fields=${String(fields)}`);
      }
      const briefSpec = nodeListSpec({ minor, base, brief: true, conductor });
      const brief = await store.listNodesJson({}, briefSpec);
      brief.forEach((row, i) => {
        assert.equal(row.json, JSON.stringify(renderNodeBrief(records[i] as NodeRecord, { minor, base })));
      });
      assert.equal((await store.renderNodeList({}, briefSpec)).items.toString('utf8'), brief.map((r) => r.json).join(','));
    }
  }
  // Whole pages: the same items, in the query's order, with the count and the last UUID for `next` links.
  for (let i = 0; i < 40; i++) await mk({ name: `p${String(i * 7 % 40).padStart(2, '0')}`, owner: i % 3 ? 'x' : null });
  const spec = nodeListSpec({ minor: 82, base: 'http://h', conductor });
  for (const q of [{}, { sort_key: 'name', sort_dir: 'desc' as const, limit: 17 }, { sort_key: 'owner', limit: 30 },
    { owner: 'nobody' }]) {
    const rows = await store.listNodesJson(q, spec);
    const page = await store.renderNodeList(q, spec);
    assert.equal(page.items.toString('utf8'), rows.map((r) => r.json).join(','), JSON.stringify(q));
    assert.equal(page.count, rows.length);
    assert.equal(page.lastUuid, rows[rows.length - 1]?.uuid);
  }
  // With other conductors alive the owner comes from the hash ring (JS), between the database-rendered parts.
  const ring = (n: { uuid: string; driver: string }): string | null => (n.driver === 'ipmi' ? null : `ring-${n.uuid.slice(0, 4)}"`);
  const owned = nodeListSpec({ minor: 82, base: 'http://h', conductor: { ...conductor, owners: { of: ring, epoch: 1 } } });
  const ownedRows = await store.listNodesJson({}, owned);
  assert.equal((await store.renderNodeList({}, owned)).items.toString('utf8'), ownedRows.map((r) => r.json).join(','));
  for (const r of ownedRows) assert.equal((JSON.parse(r.json) as { conductor: unknown }).conductor, ring(r));
  const desc = await store.listNodesJson({ sort_key: 'name', sort_dir: 'desc', limit: 17 }, spec);
  const names = desc.map((r) => JSON.parse(r.json).name as string);
  assert.deepEqual(names, [...names].sort().reverse());
  assert.equal(names[0], 'secrets');

  // The secrets really are masked (not merely equal to a wrong reference).
  const secretive = await store.listNodesJson({ limit: 5 }, nodeListSpec({ minor: 82, base: 'http://h', conductor }));
  const s = JSON.parse(secretive[1]?.json ?? '{}') as Record<string, Record<string, unknown>>;
  assert.equal(s.driver_info?.ipmi_password, '******');
  assert.equal(s.driver_info?.redfish_PASSWORD, '');
  assert.deepEqual(s.driver_info?.nested, { password: '******' }, 'masking is recursive, as Ironic masks nested dicts');
  assert.equal(s.instance_info?.configdrive, '******');
  assert.equal(s.driver_internal_info?.agent_secret_token, '******');
  assert.equal(s.driver_internal_info?.iscsi_chap_password, '******', 'the iscsi deploy\'s CHAP secret is masked');
  assert.equal(s.conductor, 'cond-1' as unknown);
  // Filters and paging apply to the rendered form too.
  const maint = await store.listNodesJson({ maintenance: true }, nodeListSpec({ minor: 82, base: 'http://h', brief: true,
    conductor }));
  assert.deepEqual(maint.map((r) => JSON.parse(r.json).name as string), ['odd']);
});

for (const b of STORE_BACKENDS) test(`${b.name} store: rendered list pages are reused only while their rows are unchanged: updates, raw SQL updates, re-created UUIDs`, { skip: b.skip }, async (t) => {
  const store = await b.open(t);
  const conductor = { host: 'cond-1', group: '', drivers: ['fake-hardware'] };
  const spec = nodeListSpec({ minor: 82, base: 'http://h', conductor });
  const uuid = randomUUID();
  const mk = (extra: Record<string, unknown> = {}): Promise<NodeRecord> => store.createNode({ uuid,
    driver: 'fake-hardware', ...initialState(82), ...extra });
  const items = async (): Promise<Record<string, unknown>[]> =>
    JSON.parse(`[${(await store.renderNodeList({}, spec)).items.toString('utf8')}]`) as Record<string, unknown>[];
  const fresh = async (): Promise<Record<string, unknown>[]> =>
    (await store.listNodesJson({}, spec)).map((r) => JSON.parse(r.json) as Record<string, unknown>);
  await mk({ name: 'one' });
  assert.deepEqual(await items(), await fresh());
  assert.equal((await items())[0]?.name, 'one');
  await store.updateNode(uuid, { name: 'two' });
  assert.equal((await items())[0]?.name, 'two');
  await store.reserveNode(uuid, 'me');
  assert.equal((await items())[0]?.reservation, 'me');
  await store.releaseNode(uuid, 'me');
  assert.equal((await items())[0]?.reservation, null);
  // A statement outside the store's own UPDATEs still invalidates (the trigger bumps the version).
  await b.exec(store, "UPDATE nodes SET description = 'raw' WHERE uuid = ?", [uuid]);
  assert.equal((await items())[0]?.description, 'raw');
  // Same UUID, new row: never served the old row's rendering.
  await store.deleteNode(uuid);
  assert.deepEqual(await items(), []);
  await mk({ name: 'three' });
  assert.equal((await items())[0]?.name, 'three');
  assert.deepEqual(await items(), await fresh());
  // Stored JSON with a raw newline (written around the store) renders too.
  await store.createNode({ uuid: randomUUID(), driver: 'fake-hardware', ...initialState(82), name: 'four' });
  await b.exec(store, `UPDATE nodes SET extra = '{"a":\n1}' WHERE name = 'three'`);
  const two = await items();
  assert.deepEqual(two.map((n) => [n.name, n.extra]), [['three', { a: 1 }], ['four', {}]]);
  // Another base URL is another rendering.
  const other = nodeListSpec({ minor: 82, base: 'http://other', conductor });
  const o = (JSON.parse(`[${(await store.renderNodeList({}, other)).items.toString('utf8')}]`) as
    { links: { href: string }[] }[])[0];
  assert.match(o?.links[0]?.href ?? '', /^http:\/\/other\/v1\/nodes\//);
});

for (const b of STORE_BACKENDS) test(`${b.name} store: a cached page is not served after another conductor's store changed its rows`, { skip: b.skip }, async (t) => {
  const mine = await b.open(t);
  const theirs = await b.reopen(t, mine);
  const spec = nodeListSpec({ minor: 82, base: 'http://h', conductor: { host: 'c1', group: '', drivers: ['fake-hardware'] } });
  const names = async (): Promise<unknown[]> =>
    (JSON.parse(`[${(await mine.renderNodeList({}, spec)).items.toString('utf8')}]`) as Record<string, unknown>[]).map((n) => n.name);
  const a = await theirs.createNode({ uuid: randomUUID(), driver: 'fake-hardware', ...initialState(82), name: 'a' });
  await theirs.createNode({ uuid: randomUUID(), driver: 'fake-hardware', ...initialState(82), name: 'b' });
  // Rendered twice: from now on the page is kept by `mine`.
  assert.deepEqual(await names(), ['a', 'b']);
  assert.deepEqual(await names(), ['a', 'b']);
  await theirs.updateNode(a.uuid, { name: 'a2' });
  assert.deepEqual(await names(), ['a2', 'b']);
  assert.equal((await theirs.reserveNode(a.uuid, 'c2')).ok, true);
  const item = JSON.parse(`[${(await mine.renderNodeList({}, spec)).items.toString('utf8')}]`) as Record<string, unknown>[];
  assert.equal(item[0]?.reservation, 'c2');
  await theirs.deleteNode(a.uuid);
  assert.deepEqual(await names(), ['b']);
});

test('render cache: kept from the second render on, hit only for identical (id, version) rows, bounded', () => {
  const c = new RenderCache(64 * 1024);
  const rows: [number, number][] = [[1, 0], [2, 3]];
  const page = Buffer.from('{"a":1},{"b":2}');
  c.set('k', rows, page);
  assert.equal(c.get('k', rows), undefined);
  c.set('k', rows, page);
  assert.equal(c.get('k', rows), page);
  assert.equal(c.get('k', [[1, 0], [2, 4]]), undefined);
  assert.equal(c.get('k', [[1, 0]]), undefined);
  assert.equal(c.get('other', rows), undefined);
  const big = Buffer.alloc(20 * 1024);
  for (const k of ['p1', 'p2', 'p3', 'p4']) { c.set(k, rows, big); c.set(k, rows, big); }
  assert.ok(c.size.bytes <= 64 * 1024);
  assert.equal(c.get('p1', rows), undefined);
  assert.equal(c.get('p4', rows), big);
});

test('render cache, text-checked pages (PostgreSQL): hit only for the identical id:version text, first pages kept at once', () => {
  const c = new RenderCache(64 * 1024);
  const page = Buffer.from('{"a":1},{"b":2}');
  const sig = rowsText([[1, 0], [2, 3]]);
  assert.equal(sig, '1:0,2:3');
  c.setText('walk', sig, page, 'u2');
  assert.equal(c.getText('walk', sig), undefined, 'a page with a marker is kept from its second render on');
  c.setText('walk', sig, page, 'u2');
  assert.equal(c.getText('walk', sig)?.items, page);
  c.setText('first', sig, page, 'u2', true);
  const hit = c.getText('first', sig);
  assert.equal(hit?.items, page);
  assert.equal(hit?.lastUuid, 'u2');
  for (const other of ['1:0,2:4', '1:0', '1:0,2:3,3:0', '', '1:02:3']) assert.equal(c.getText('first', other), undefined, other);
  // Row-checked and text-checked pages never answer for each other.
  assert.equal(c.get('first', [[1, 0], [2, 3]]), undefined);
  const big = Buffer.alloc(20 * 1024);
  for (const k of ['p1', 'p2', 'p3', 'p4']) c.setText(k, sig, big, undefined, true);
  assert.ok(c.size.bytes <= 64 * 1024);
  assert.equal(c.getText('p1', sig), undefined);
  assert.equal(c.getText('p4', sig)?.items, big);
});

