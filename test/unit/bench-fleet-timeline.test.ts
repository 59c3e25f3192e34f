/** The fleet bench's per-phase breakdown (test/bench/support/fleet-timeline.ts). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FleetTimeline, phaseOf } from '../bench/support/fleet-timeline.js';

test('fleet timeline: phase entry times and stays per phase, repeated samples collapse', () => {
  const t = new FleetTimeline(1000);
  // node a: deploying at 1 s, write_image at 3 s (seen twice), active at 7 s; node b: 2 s, 5 s, 11 s.
  for (const [n, p, at] of [['a', 'deploying', 2000], ['a', 'wait call-back write_image', 4000], ['a', 'wait call-back write_image', 5000],
    ['a', 'active', 8000], ['b', 'deploying', 3000], ['b', 'wait call-back write_image', 6000], ['b', 'active', 12000]] as const) {
    t.observe(n, p, at);
  }
  const s = t.summary();
  assert.deepEqual(s.map((r) => r.phase), ['deploying', 'wait call-back write_image', 'active']);
  assert.deepEqual(s[0], { phase: 'deploying', nodes: 2, visits: 2, startMedianS: 1.5, startMaxS: 2, durMedianS: 2.5, durMaxS: 3 });
  assert.deepEqual(s[1], { phase: 'wait call-back write_image', nodes: 2, visits: 2, startMedianS: 4, startMaxS: 5, durMedianS: 5, durMaxS: 6 });
  assert.equal(s[2]?.durMedianS, undefined, 'the end state has no stay');
  assert.match(t.format(), /write_image {2}nodes=2 enters at 4\.0 s \(max 5\.0\) {2}lasts 5\.0 s \(max 6\.0\)/);
});

test('fleet timeline: a phase entered again counts its node once and each visit', () => {
  const t = new FleetTimeline(0);
  for (const [p, at] of [['clean wait', 1000], ['cleaning', 2000], ['clean wait', 3000], ['available', 4000]] as const) t.observe('a', p, at);
  const cw = t.summary().find((r) => r.phase === 'clean wait');
  assert.equal(cw?.nodes, 1);
  assert.equal(cw?.visits, 2);
  assert.match(t.format(), /clean wait {2}nodes=1 \(2 visits\)/);
});

test('fleet timeline: phase names carry the step when one runs', () => {
  assert.equal(phaseOf('wait call-back', { step: 'write_image', interface: 'deploy' }), 'wait call-back write_image');
  assert.equal(phaseOf('active', {}), 'active');
  assert.equal(phaseOf('deploying', null), 'deploying');
});
