import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assignLanes } from '../../scripts/test-runner/lanes.js';

test('lanes: machine files stay in the machine lane; the rest go longest first to the least loaded lane', () => {
  const files = ['a.test.ts', 'b.test.ts', 'c.test.ts', 'd.test.ts', 'vm.test.ts'];
  const weights = new Map([['vm.test.ts', 100], ['a.test.ts', 90], ['b.test.ts', 50], ['c.test.ts', 40]]);
  const lanes = assignLanes(files, 3, new Set(['vm.test.ts']), weights);
  // Each file also costs 6 s to start: machine 106, then a (96) -> light1, b (56) -> light2, c (46) -> light2 (56),
  // d (14) -> light1 (96 < 102 < 106).
  assert.deepEqual(lanes.get('machine'), ['vm.test.ts']);
  assert.deepEqual(lanes.get('light1'), ['a.test.ts', 'd.test.ts']);
  assert.deepEqual(lanes.get('light2'), ['b.test.ts', 'c.test.ts']);
  const all = [...lanes.values()].flat().sort();
  assert.deepEqual(all, [...files].sort(), 'every file exactly once');
});

test('lanes: one lane takes every file in order; empty lanes are left out', () => {
  const files = ['x.test.ts', 'y.test.ts'];
  assert.deepEqual([...assignLanes(files, 1, new Set(), new Map())], [['machine', files]]);
  assert.deepEqual([...assignLanes(['x.test.ts'], 3, new Set(['x.test.ts']), new Map()).keys()], ['machine']);
});
