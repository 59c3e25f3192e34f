import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { HashRing } from '../../conductor/cluster/hash-ring.js';

/** Fixed, UUID-shaped keys: the spread checks below are deterministic. */
function uuid(i: number): string {
  const h = createHash('sha1').update(`node-${i}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}
const NODES = Array.from({ length: 300 }, (_, i) => uuid(i));

function owners(ring: HashRing): Map<string, string> {
  return new Map(NODES.map((n) => [n, ring.primary(n) as string]));
}

test('3 conductors x 300 nodes: each gets 100 +- 20%', () => {
  const ring = new HashRing(['conductor-1', 'conductor-2', 'conductor-3']);
  const count = new Map<string, number>();
  for (const o of owners(ring).values()) count.set(o, (count.get(o) ?? 0) + 1);
  assert.deepEqual([...count.keys()].sort(), ['conductor-1', 'conductor-2', 'conductor-3']);
  for (const [host, n] of count) assert.ok(n >= 80 && n <= 120, `${host} owns ${n} of 300`);
});

test('the mapping depends on the host set only, not on its order', () => {
  const a = owners(new HashRing(['c1', 'c2', 'c3']));
  const b = owners(new HashRing(['c3', 'c1', 'c2', 'c1']));
  assert.deepEqual([...a], [...b]);
});

test('a conductor joining takes about a quarter of the nodes, from the others, and nothing else moves', () => {
  const before = owners(new HashRing(['c1', 'c2', 'c3']));
  const after = owners(new HashRing(['c1', 'c2', 'c3', 'c4']));
  let moved = 0;
  for (const n of NODES) {
    if (before.get(n) === after.get(n)) continue;
    moved++;
    assert.equal(after.get(n), 'c4', `node ${n} moved between old conductors`);
  }
  assert.ok(moved >= 45 && moved <= 105, `moved ${moved} of 300 (expected about 75)`);
});

test('a conductor leaving: only its nodes move, spread over the others', () => {
  const before = owners(new HashRing(['c1', 'c2', 'c3']));
  const after = owners(new HashRing(['c1', 'c3']));
  const to = new Map<string, number>();
  for (const n of NODES) {
    if (before.get(n) !== 'c2') {
      assert.equal(after.get(n), before.get(n), `node ${n} of a live conductor moved`);
    } else {
      const o = after.get(n) as string;
      to.set(o, (to.get(o) ?? 0) + 1);
    }
  }
  assert.ok((to.get('c1') ?? 0) > 0 && (to.get('c3') ?? 0) > 0, `c2's nodes went to ${JSON.stringify([...to])}`);
  // The conductor that rejoins gets exactly its nodes back.
  assert.deepEqual([...owners(new HashRing(['c1', 'c2', 'c3']))], [...before]);
});

test('replicas: distinct hosts, primary first, ignored hosts skipped, empty ring maps to nobody', () => {
  const ring = new HashRing(['a', 'b', 'c']);
  for (const n of NODES.slice(0, 50)) {
    const all = ring.getHosts(n, 5);
    assert.equal(all.length, 3);
    assert.equal(new Set(all).size, 3);
    assert.equal(all[0], ring.primary(n));
    const two = ring.getHosts(n, 2, [all[0] as string]);
    assert.deepEqual(two, all.slice(1));
  }
  assert.deepEqual(ring.getHosts(NODES[0] as string, 1, ['a', 'b', 'c']), []);
  assert.equal(new HashRing([]).primary(NODES[0] as string), null);
});
