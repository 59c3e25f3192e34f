import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { run } from '../../common/exec.js';
import { buildConfig, loadConfig, parseFlags } from '../../conductor/config.js';
import { applyJsonPatch, parsePatch } from '../../conductor/services/jsonpatch.js';
import { initialState } from '../../conductor/states.js';
import { DuplicateNodeOnLookup } from '../../conductor/errors.js';
import { DuplicateError } from '../../conductor/store/types.js';
import { labPostgres, STORE_BACKENDS } from '../fixtures/stores.js';
import { MIGRATIONS } from '../../conductor/store/migrations.js';
import { PostgresStore } from '../../conductor/store/postgres.js';

for (const b of STORE_BACKENDS) test(`${b.name} store: create, unique name, JSON validation, paging, reservations, cascade delete`, { skip: b.skip }, async (t) => {
  const store = await b.open(t);
  const mk = (name: string | null, extra = {}) => store.createNode({ uuid: randomUUID(), driver: 'fake-hardware', name,
    ...initialState(82), ...extra });
  const a = await mk('a', { driver_info: { ipmi_address: '1.2.3.4' }, maintenance: true });
  assert.equal(a.provision_state, 'enroll');
  assert.deepEqual(a.driver_info, { ipmi_address: '1.2.3.4' });
  assert.equal(a.maintenance, true);
  assert.deepEqual(a.extra, {});
  await assert.rejects(mk('a'), (e: unknown) => e instanceof DuplicateError && e.field === 'name');
  await assert.rejects(mk('b', { extra: [1, 2] }), /must be a JSON object/);
  for (let i = 0; i < 25; i++) await mk(`n${String(i).padStart(2, '0')}`);

  const seen: string[] = [];
  let marker: string | undefined;
  for (;;) {
    const page = await store.listNodes({ limit: 10, sort_key: 'name', sort_dir: 'desc', ...(marker ? { marker } : {}) });
    seen.push(...page.map((n) => n.name ?? ''));
    if (page.length < 10) break;
    marker = page[page.length - 1]?.uuid;
  }
  assert.equal(seen.length, 26);
  assert.deepEqual(seen, [...seen].sort().reverse());
  assert.equal((await store.listNodes({ maintenance: true })).length, 1);
  await assert.rejects(store.listNodes({ sort_key: 'driver_info' }), /invalid field for sorting/);

  const r1 = await store.reserveNode(a.uuid, 'host1');
  assert.equal(r1.ok, true);
  const r2 = await store.reserveNode(a.uuid, 'host2');
  assert.deepEqual(r2, { ok: false, holder: 'host1' });
  assert.deepEqual(await store.clearReservations('host1'), [a.uuid]);
  assert.equal((await store.reserveNode(a.uuid, 'host2')).ok, true);
  assert.equal(await store.releaseNode(a.uuid, 'host1'), false);
  assert.equal(await store.releaseNode(a.uuid, 'host2'), true);

  await store.createPort({ uuid: randomUUID(), address: '52:54:00:aa:bb:cc', node_uuid: a.uuid });
  await assert.rejects(store.createPort({ uuid: randomUUID(), address: '52:54:00:aa:bb:cc', node_uuid: a.uuid }),
    (e: unknown) => e instanceof DuplicateError && e.field === 'address');
  assert.equal((await store.getNodeByMacs(['52:54:00:aa:bb:cc']))?.uuid, a.uuid);
  await store.deleteNode(a.uuid);
  assert.equal(await store.getPortByAddress('52:54:00:aa:bb:cc'), undefined);
});

for (const b of STORE_BACKENDS) test(`${b.name} store: two stores race for one node's reservation, exactly one wins each round`, { skip: b.skip }, async (t) => {
  const one = await b.open(t);
  const two = await b.reopen(t, one);
  const nodes = await Promise.all(Array.from({ length: 5 }, () => one.createNode({ uuid: randomUUID(),
    driver: 'fake-hardware', ...initialState(82) })));
  for (const n of nodes) {
    const attempts = await Promise.all([one.reserveNode(n.uuid, 'c1'), two.reserveNode(n.uuid, 'c2'),
      one.reserveNode(n.uuid, 'c3'), two.reserveNode(n.uuid, 'c4')]);
    const winners = attempts.filter((a) => a.ok);
    assert.equal(winners.length, 1, JSON.stringify(attempts));
    const holder = (await two.getNodeByUuid(n.uuid))?.reservation;
    assert.ok(holder && ['c1', 'c2', 'c3', 'c4'].includes(holder));
    for (const a of attempts) if (!a.ok) assert.equal(a.holder, holder, 'losers are told who holds it');
    assert.equal(winners[0]?.ok && winners[0].node.reservation, holder);
  }
  // Released by one store, free for the other.
  const n0 = nodes[0]?.uuid ?? '';
  const holder = (await one.getNodeByUuid(n0))?.reservation ?? '';
  assert.equal(await two.releaseNode(n0, holder), true);
  assert.equal((await one.reserveNode(n0, 'c9')).ok, true);
});

for (const b of STORE_BACKENDS) test(`${b.name} store: lookups by MAC asked together (one statement on PostgreSQL) each get their own node`, { skip: b.skip }, async (t) => {
  const store = await b.open(t);
  const other = await b.reopen(t, store);
  const nodes = await Promise.all(['a', 'b', 'c'].map((name) => store.createNode({ uuid: randomUUID(), driver: 'fake-hardware',
    name, ...initialState(82) })));
  const mac = (i: number): string => `52:54:00:00:bb:0${i}`;
  for (const [i, n] of nodes.entries()) await store.createPort({ uuid: randomUUID(), address: mac(i), node_uuid: n.uuid });
  await store.createPort({ uuid: randomUUID(), address: mac(9), node_uuid: nodes[2]?.uuid as string });
  const asks: string[][] = [[mac(0)], [mac(1)], [mac(0)], ['52:54:00:00:bb:ff'], ['52:54:00:00:bb:ff', mac(2)], [mac(9), mac(2)], []];
  const got = await Promise.all(asks.map((m) => other.getNodeByMacs(m)));
  assert.deepEqual(got.map((n) => n?.name), ['a', 'b', 'a', undefined, 'c', 'c', undefined],
    'the node of the addresses found (an unknown address among them is no matter)');
  assert.notEqual(got[0], got[2], 'two answers for one address are separate records');
  assert.deepEqual(got[0]?.driver_info, {});
  (got[0] as { driver_info: Record<string, unknown> }).driver_info.x = 1;
  assert.deepEqual(got[2]?.driver_info, {}, 'changing one answer leaves the other alone');
  // A write through one store is seen by the next lookup through the other.
  await store.updateNode(nodes[0]?.uuid as string, { driver_internal_info: { agent_secret_token: 't' } });
  assert.equal((await other.getNodeByMacs([mac(0)]))?.driver_internal_info.agent_secret_token, 't');
  // Addresses of two nodes are refused, also when asked together with lookups that are fine.
  const [dup, fine] = await Promise.allSettled([other.getNodeByMacs([mac(0), mac(9), mac(2)]), other.getNodeByMacs([mac(1)])]);
  assert.equal(dup.status, 'rejected');
  assert.ok(dup.reason instanceof DuplicateNodeOnLookup, String(dup.reason));
  assert.deepEqual([...dup.reason.nodes].sort(), [nodes[0]?.uuid, nodes[2]?.uuid].sort());
  assert.equal(fine.status === 'fulfilled' && fine.value?.name, 'b');
  await store.deletePort((await store.getPortByAddress(mac(1)))?.uuid as string);
  assert.equal(await other.getNodeByMacs([mac(1)]), undefined);
});

for (const b of STORE_BACKENDS) test(`${b.name} store: shard counts group nodes by shard, unsharded as null, largest first`, { skip: b.skip }, async (t) => {
  const store = await b.open(t);
  for (const shard of ['s1', 's2', 's1', null, 's1']) {
    await store.createNode({ uuid: randomUUID(), driver: 'fake-hardware', shard, ...initialState(82) });
  }
  const all = await store.shardCounts();
  assert.equal(all.length, 3);
  assert.deepEqual(all[0], { shard: 's1', count: 3 });
  assert.deepEqual(new Set(all.slice(1).map((x) => `${x.shard}:${x.count}`)), new Set(['null:1', 's2:1']));
});

test('postgres store: conductors opening an empty database together migrate it once (advisory lock)', { skip: STORE_BACKENDS[1]?.skip ?? false }, async (t) => {
  const lab = await labPostgres();
  const url = await lab.createDatabase();
  const name = new URL(url).pathname.slice(1);
  t.after(() => lab.dropDatabase(name));
  const stores = await Promise.all(Array.from({ length: 4 }, () => PostgresStore.open({ url, poolSize: 2 })));
  t.after(() => Promise.all(stores.map((s) => s.close())));
  const rows = await lab.query<{ version: number; n: string }>(name,
    'SELECT version, COUNT(*) AS n FROM schema_version GROUP BY version ORDER BY version');
  assert.deepEqual(rows.map((r) => [r.version, Number(r.n)]), MIGRATIONS.map((m) => [m.version, 1]));
  // And the schema works for each of them.
  await stores[0]?.createNode({ uuid: randomUUID(), driver: 'fake-hardware', ...initialState(82) });
  assert.equal(await stores[3]?.countNodes(), 1);
});

test('sqlite store: four conductor processes opening a new file in the same millisecond migrate it once', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bmts-sqlite-race-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'conductor.sqlite');
  const child = fileURLToPath(new URL('../fixtures/open-sqlite-at.ts', import.meta.url));
  const tsx = fileURLToPath(new URL('../../node_modules/.bin/tsx', import.meta.url));
  // Far enough ahead that all four have loaded the code before the instant they wait for.
  const at = String(Date.now() + 4000);
  const outs = await Promise.all(Array.from({ length: 4 }, () => run(tsx, [child, file, at], { timeoutMs: 60_000 })));
  const last = MIGRATIONS[MIGRATIONS.length - 1]?.version;
  for (const o of outs) assert.deepEqual(JSON.parse(o.stdout), { v: last, n: MIGRATIONS.length });
});

test('config: defaults, flags override file, bad values are one ConfigError', async (t) => {
  const c = buildConfig({});
  assert.equal(c.host, '127.0.0.1');
  assert.equal(c.port, 6385);
  assert.equal(c.automated_clean, true);
  assert.equal(c.require_tls, true);
  assert.equal(c.heartbeat_timeout, 300);
  assert.deepEqual(parseFlags(['--host', '0.0.0.0', '--port=7000']), { host: '0.0.0.0', port: 7000 });
  assert.throws(() => parseFlags(['--bogus']), /unknown flag/);
  assert.throws(() => buildConfig({ port: 70000 }), /port/);
  assert.throws(() => buildConfig({ auth: { strategy: 'kerberos' } }), /auth\.strategy/);
  const dir = await mkdtemp(join(tmpdir(), 'bmts-cfg-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const { writeFile } = await import('node:fs/promises');
  await writeFile(join(dir, 'c.json'), JSON.stringify({ port: 7001, automated_clean: false }));
  const l = loadConfig(['--config', join(dir, 'c.json'), '--port', '7002'], {});
  assert.equal(l.port, 7002);
  assert.equal(l.automated_clean, false);
  // The store: SQLite unless a PostgreSQL URL comes from the file, BMTS_DATABASE_URL or --database-url (last wins).
  assert.equal(l.database.url, undefined);
  const pgUrl = 'postgresql://bm:pw@db.example:5432/bmts';
  assert.equal(loadConfig([], { BMTS_DATABASE_URL: pgUrl }).database.url, pgUrl);
  assert.equal(loadConfig(['--database-url', 'postgres://h/x'], { BMTS_DATABASE_URL: pgUrl }).database.url, 'postgres://h/x');
  assert.equal(loadConfig(['--database-url=postgres://h/x'], {}).database.sqlite_file, 'conductor.sqlite');
  assert.throws(() => loadConfig(['--database-url', 'mysql://h/x'], {}), /database\.url: must be a postgresql:\/\/ URL/);
  await writeFile(join(dir, 'bad.json'), '{nope');
  assert.throws(() => loadConfig(['--config', join(dir, 'bad.json')], {}), /not valid JSON/);
});

test('json patch: nested add/replace/remove, errors for missing paths and bad ops', () => {
  const doc = { driver_info: {}, name: null, extra: { a: 1 } };
  const out = applyJsonPatch(doc, parsePatch([
    { op: 'add', path: '/driver_info/ipmi_address', value: '1.2.3.4' },
    { op: 'replace', path: '/name', value: 'x' },
    { op: 'remove', path: '/extra/a' },
    { op: 'add', path: '/extra/a~1b', value: 2 },
  ]));
  assert.deepEqual(out, { driver_info: { ipmi_address: '1.2.3.4' }, name: 'x', extra: { 'a/b': 2 } });
  assert.deepEqual(doc.extra, { a: 1 });
  assert.throws(() => applyJsonPatch(doc, parsePatch([{ op: 'remove', path: '/extra/zzz' }])), /non-existent/);
  assert.throws(() => applyJsonPatch(doc, parsePatch([{ op: 'add', path: '/properties/x/y', value: 1 }])), /does not exist/);
  assert.throws(() => parsePatch([{ op: 'move', path: '/a', from: '/b' }]), /unsupported "op"/);
  assert.throws(() => parsePatch({ op: 'add' }), /must be a list/);
  assert.throws(() => parsePatch([{ op: 'add', path: '/a' }]), /'value' is required/);
});
