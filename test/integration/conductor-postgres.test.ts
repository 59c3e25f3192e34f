/**
 * Conductor processes on a real PostgreSQL 15 (one throw-away cluster for the file, lab/postgres.ts): starting
 * together on an empty database, what a 201 promises after a crash, URL passwords kept out of the output,
 * prepared statements across a schema change.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { spawnLong } from '../../common/exec.js';
import { MIGRATIONS } from '../../conductor/store/migrations.js';
import { PostgresStore } from '../../conductor/store/postgres.js';
import type { NewNode, NewPort } from '../../conductor/store/types.js';
import { havePostgres } from '../../lab/postgres.js';
import { freePort, startTestConductor } from '../fixtures/conductor.js';
import { labPostgres } from '../fixtures/stores.js';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const skip = havePostgres() ? false : 'PostgreSQL 15 is not installed (scripts/setup-system.sh installs it)';
type Obj = Record<string, unknown>;

async function freshDatabase(t: { after(fn: () => Promise<void>): void }): Promise<{ url: string; name: string }> {
  const lab = await labPostgres();
  const url = await lab.createDatabase();
  const name = new URL(url).pathname.slice(1);
  t.after(() => lab.dropDatabase(name));
  return { url, name };
}

test('two conductor processes started at once on an empty database migrate it once and share it', { skip }, async (t) => {
  const lab = await labPostgres();
  const { url, name } = await freshDatabase(t);
  const [a, b] = await Promise.all(['cond-a', 'cond-b'].map((host) => startTestConductor({ child: true, plain: true,
    databaseUrl: url, config: { conductor_host: host } })));
  t.after(() => a?.close());
  t.after(() => b?.close());
  assert.ok(a && b);
  const rows = await lab.query<{ version: number; n: string }>(name,
    'SELECT version, COUNT(*) AS n FROM schema_version GROUP BY version ORDER BY version');
  assert.deepEqual(rows.map((r) => [r.version, Number(r.n)]), MIGRATIONS.map((m) => [m.version, 1]));
  const hosts = await lab.query<{ hostname: string }>(name, 'SELECT hostname FROM conductors ORDER BY hostname');
  assert.deepEqual(hosts.map((h) => h.hostname), ['cond-a', 'cond-b']);
  // One database: a node made through one conductor is seen, and changed, through the other.
  const made = await a.api('POST', '/v1/nodes', { driver: 'fake-hardware', name: 'shared' });
  assert.equal(made.status, 201);
  const uuid = (made.body as Obj).uuid as string;
  assert.equal(((await b.api('GET', '/v1/nodes/shared')).body as Obj).uuid, uuid);
  assert.equal((await b.api('PATCH', `/v1/nodes/${uuid}`, [{ op: 'add', path: '/extra/by', value: 'b' }])).status, 200);
  assert.deepEqual(((await a.api('GET', `/v1/nodes/${uuid}`)).body as Obj).extra, { by: 'b' });
  // Both list it (a's render cache, if any, does not hide b's change).
  for (let i = 0; i < 2; i++) {
    const list = (await a.api('GET', '/v1/nodes/detail')).body as { nodes: Obj[] };
    assert.deepEqual(list.nodes.map((n) => n.extra), [{ by: 'b' }]);
  }
  assert.equal((await b.api('PATCH', `/v1/nodes/${uuid}`, [{ op: 'add', path: '/extra/by', value: 'b2' }])).status, 200);
  const list = (await a.api('GET', '/v1/nodes/detail')).body as { nodes: Obj[] };
  assert.deepEqual(list.nodes.map((n) => n.extra), [{ by: 'b2' }]);
  // A reservation held by one conductor (as during a running operation) locks the node for the other: 409 naming it.
  await lab.query(name, "UPDATE nodes SET reservation = 'cond-a' WHERE uuid = $1", [uuid]);
  const locked = await b.api('PATCH', `/v1/nodes/${uuid}`, [{ op: 'add', path: '/extra/by', value: 'b3' }]);
  assert.equal(locked.status, 409);
  assert.match(String((locked.body as Obj).error_message), /locked by host cond-a/);
  await lab.query(name, 'UPDATE nodes SET reservation = NULL WHERE uuid = $1', [uuid]);
  assert.equal((await b.api('PATCH', `/v1/nodes/${uuid}`, [{ op: 'add', path: '/extra/by', value: 'b3' }])).status, 200);
});

test('every acknowledged write is committed: a conductor killed right after its 201s lost none of them', { skip }, async (t) => {
  const lab = await labPostgres();
  const { url, name } = await freshDatabase(t);
  const c = await startTestConductor({ child: true, plain: true, databaseUrl: url });
  t.after(() => c.close());
  // Concurrent creates (the group-commit path), each acknowledged, then the process dies without a shutdown.
  const made = await Promise.all(Array.from({ length: 40 }, (_, i) =>
    c.api('POST', '/v1/nodes', { driver: 'fake-hardware', name: `n${i}` })));
  assert.deepEqual([...new Set(made.map((r) => r.status))], [201]);
  await c.kill?.('SIGKILL');
  const stored = await lab.query<{ uuid: string }>(name, 'SELECT uuid FROM nodes');
  assert.deepEqual(stored.map((r) => r.uuid).sort(), made.map((r) => (r.body as Obj).uuid as string).sort());
});

test('a password in the database URL never reaches the output: start-up log, connection errors', { skip }, async (t) => {
  const { url } = await freshDatabase(t);
  const secret = 'Sup3r-S3cret-pw';
  // The lab cluster trusts loopback: the password is accepted and ignored, as far as the server goes.
  const withPassword = url.replace('postgres@', `postgres:${secret}@`);
  const runConductor = async (dbUrl: string, stopWhen: RegExp | undefined): Promise<{ out: string; code: number | undefined }> => {
    const port = await freePort();
    const child = spawnLong(process.execPath, ['--import', 'tsx', resolve(ROOT, 'conductor/main.ts'), '--port',
      String(port), '--auth', 'noauth', '--tls', 'off', '--database-url', dbUrl, '--data-dir',
      join(tmpdir(), `bmts-pg-mask-${process.pid}-${port}`)],
    { cwd: ROOT, env: { LOG_LEVEL: 'info', BMTS_DATABASE_URL: '' } });
    let out = '';
    child.stdout?.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr?.on('data', (d: Buffer) => { out += d.toString(); });
    // Generous: a loaded machine starts tsx slowly; the test never asserts on time.
    const timer = setTimeout(() => child.kill('SIGKILL'), 180_000);
    try {
      if (stopWhen) {
        while (!stopWhen.test(out) && child.exitCode === null) await new Promise((r) => setTimeout(r, 100));
        child.kill('SIGTERM');
      }
      const r = await child.catch((e: { exitCode?: number }) => e);
      return { out, code: (r as { exitCode?: number }).exitCode };
    } finally {
      clearTimeout(timer);
      await rm(join(tmpdir(), `bmts-pg-mask-${process.pid}-${port}`), { recursive: true, force: true });
    }
  };
  const ok = await runConductor(withPassword, /conductor listening/);
  assert.match(ok.out, /conductor listening/, ok.out.slice(-2000));
  assert.match(ok.out, /"database":"postgresql:\/\/\*{6}@127\.0\.0\.1/, ok.out.slice(-2000));
  assert.equal(ok.out.includes(secret), false, 'the password is not in the log');
  // Nothing listens on this port: the start-up fails, and says where without the password.
  const closed = await freePort();
  const bad = await runConductor(`postgresql://postgres:${secret}@127.0.0.1:${closed}/nope`, undefined);
  assert.notEqual(bad.code, 0);
  assert.match(bad.out, /PostgreSQL store postgresql:\/\/\*{6}@127\.0\.0\.1:\d+\/nope/, bad.out.slice(-2000));
  assert.equal(bad.out.includes(secret), false, 'the password is not in the error');
});

test('prepared reads keep working when another conductor\'s migration adds a column (rolling upgrade)', { skip }, async (t) => {
  const lab = await labPostgres();
  const { url, name } = await freshDatabase(t);
  // One connection, so the second read runs on the connection that prepared the statement.
  const store = await PostgresStore.open({ url, poolSize: 1 });
  t.after(() => store.close());
  const node = await store.createNode({ uuid: randomUUID(), name: 'upgraded', driver: 'fake-hardware',
    provision_state: 'enroll' } as NewNode);
  await store.createPort({ uuid: randomUUID(), address: '52:54:00:aa:bb:01', node_uuid: node.uuid } as NewPort);
  assert.equal((await store.getNodeByUuid(node.uuid))?.name, 'upgraded');
  assert.equal((await store.getNodeByMacs(['52:54:00:aa:bb:01']))?.uuid, node.uuid);
  await lab.query(name, 'ALTER TABLE nodes ADD COLUMN from_a_newer_release TEXT');
  assert.equal((await store.getNodeByUuid(node.uuid))?.name, 'upgraded');
  assert.equal((await store.getNodeByMacs(['52:54:00:aa:bb:01', '52:54:00:aa:bb:02']))?.uuid, node.uuid);
  assert.equal((await store.reserveNode(node.uuid, 'me')).ok, true);
  assert.equal(await store.getNodeByMacs(['52:54:00:aa:bb:02']), undefined);
});
