import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { initialState } from '../../conductor/states.js';
import { GroupCommit } from '../../conductor/store/group-commit.js';
import { SqliteStore } from '../../conductor/store/sqlite.js';
import { DuplicateError } from '../../conductor/store/types.js';

test('group commit: one transaction per turn, a failing write undoes only itself, order kept', async () => {
  const db = new Database(':memory:');
  db.exec('CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)');
  const gc = new GroupCommit(db);
  const results = await Promise.allSettled([
    gc.run(() => {
      assert.equal(db.inTransaction, true);
      return db.prepare('INSERT INTO t VALUES (?, ?)').run('a', 1).changes;
    }),
    gc.run(() => {
      db.prepare('INSERT INTO t VALUES (?, ?)').run('b', 2);
      db.prepare('INSERT INTO t VALUES (?, ?)').run('a', 3); // duplicate: this whole op is undone, 'b' too
    }),
    gc.run(() => db.prepare('UPDATE t SET v = v + 10 WHERE k = ?').run('a').changes),
    gc.run(() => { throw new Error('plain failure'); }),
    gc.run(() => (db.prepare('SELECT v FROM t WHERE k = ?').get('a') as { v: number }).v),
  ]);
  assert.equal(results[0].status, 'fulfilled');
  assert.equal(results[1].status, 'rejected');
  assert.match(String((results[1] as PromiseRejectedResult).reason), /UNIQUE/);
  assert.deepEqual(results[2], { status: 'fulfilled', value: 1 });
  assert.match(String((results[3] as PromiseRejectedResult).reason), /plain failure/);
  assert.deepEqual(results[4], { status: 'fulfilled', value: 11 });
  assert.deepEqual(db.prepare('SELECT k, v FROM t ORDER BY k').all(), [{ k: 'a', v: 11 }]);
  assert.equal(db.inTransaction, false);
  db.close();
});

test('sqlite store writes in one turn share a commit and resolve after it; reads see committed state', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bmts-gc-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const store = SqliteStore.open(dir);
  t.after(() => store.close());
  const mk = (name: string) => store.createNode({ uuid: randomUUID(), driver: 'fake-hardware', name, ...initialState(82) });
  const created = await Promise.allSettled([mk('x'), mk('y'), mk('x'), mk('z')]);
  assert.deepEqual(created.map((r) => r.status), ['fulfilled', 'fulfilled', 'rejected', 'fulfilled']);
  assert.ok((created[2] as PromiseRejectedResult).reason instanceof DuplicateError);
  assert.equal(await store.countNodes(), 3);
  const x = (created[0] as PromiseFulfilledResult<{ uuid: string }>).value;
  // Two reservations issued in the same turn: exactly one wins, the other sees its holder.
  const [r1, r2] = await Promise.all([store.reserveNode(x.uuid, 'h1'), store.reserveNode(x.uuid, 'h2')]);
  assert.equal(r1.ok, true);
  assert.deepEqual(r2, { ok: false, holder: 'h1' });
  // A write not yet committed is not visible to a read issued in the same turn; after the await it is.
  const pending = store.updateNode(x.uuid, { description: 'later' });
  assert.equal((await store.getNodeByUuid(x.uuid))?.description, null);
  await pending;
  assert.equal((await store.getNodeByUuid(x.uuid))?.description, 'later');
  // close() commits what is pending.
  const last = store.updateNode(x.uuid, { description: 'at close' });
  await store.close();
  await last;
  const again = SqliteStore.open(dir);
  try {
    assert.equal((await again.getNodeByUuid(x.uuid))?.description, 'at close');
  } finally {
    await again.close();
  }
});
