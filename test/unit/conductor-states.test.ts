import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  ALL_STATES, canFire, EVENTS, FAILURE_STATES, STABLE_STATES, STATE_TARGETS, transition, TRANSITIONS, VERBS,
} from '../../conductor/states.js';

const node = (provision_state: string, target: string | null = null) =>
  ({ uuid: '11111111-2222-3333-4444-555555555555', provision_state, target_provision_state: target });

test('the table has exactly the 63 transitions of Ironic 21.4, no duplicates', () => {
  assert.equal(TRANSITIONS.length, 63);
  const keys = new Set(TRANSITIONS.map(([s, e]) => `${s}|${e}`));
  assert.equal(keys.size, 63);
  assert.equal(ALL_STATES.length, 24);
});

test('every transition of the table is walked and lands where the table says', () => {
  for (const [from, event, to] of TRANSITIONS) {
    const p = transition(node(from), event, event === 'fail' || event === 'abort' ? { lastError: 'boom' } : {});
    assert.equal(p.provision_state, to, `${from} --${event}-->`);
    if (STABLE_STATES.has(to)) assert.equal(p.target_provision_state, null, `${from} --${event}--> ${to} target`);
    else assert.equal(p.target_provision_state, STATE_TARGETS[to], `${from} --${event}--> ${to} target`);
    assert.match(p.provision_updated_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$/);
  }
});

test('every missing (state, event) pair is refused with a 400 InvalidState', () => {
  let refused = 0;
  for (const s of ALL_STATES) {
    for (const e of EVENTS) {
      if (TRANSITIONS.some(([a, b]) => a === s && b === e)) continue;
      assert.equal(canFire(s, e), false);
      assert.throws(() => transition(node(s), e), (err: Error & { status?: number; code?: string }) => {
        assert.equal(err.status, 400);
        assert.equal(err.code, 'InvalidState');
        assert.match(err.message, new RegExp(`"${e}".*"${s}"`));
        return true;
      });
      refused++;
    }
  }
  assert.equal(refused, ALL_STATES.length * EVENTS.length - 63);
});

test('failure edges always carry last_error (explicit or generated)', () => {
  for (const [from, event, to] of TRANSITIONS) {
    if (!FAILURE_STATES.has(to) && event !== 'fail' && event !== 'abort') continue;
    const explicit = transition(node(from), event, { lastError: 'disk on fire' });
    assert.equal(explicit.last_error, 'disk on fire');
    const generated = transition(node(from), event);
    assert.equal(typeof generated.last_error, 'string', `${from} --${event}--> ${to}`);
    assert.ok((generated.last_error ?? '').length > 0);
  }
});

test('operator verbs clear last_error; internal events leave it alone', () => {
  assert.equal(transition(node('manageable'), 'provide').last_error, null);
  assert.equal(transition(node('available'), 'deploy').last_error, null);
  assert.equal('last_error' in transition(node('deploying'), 'wait'), false);
  assert.equal('last_error' in transition(node('cleaning', 'available'), 'done'), false);
});

test('manual cleaning keeps its manageable target through wait/resume/fail and ends via manage', () => {
  let n = node('manageable');
  const step = (ev: Parameters<typeof transition>[1], opts = {}) => {
    const p = transition(n, ev, opts);
    n = { ...n, provision_state: p.provision_state, target_provision_state: p.target_provision_state };
    return p;
  };
  assert.equal(step('clean', { target: 'manageable' }).target_provision_state, 'manageable');
  assert.equal(step('wait').target_provision_state, 'manageable');
  assert.equal(step('resume').target_provision_state, 'manageable');
  assert.equal(step('manage').provision_state, 'manageable');
  assert.equal(n.target_provision_state, null);
  // Automated cleaning aims at available.
  const auto = transition(node('manageable'), 'provide');
  assert.equal(auto.target_provision_state, 'available');
});

test('a target override must be a stable state', () => {
  assert.throws(() => transition(node('manageable'), 'clean', { target: 'cleaning' }), /not a 'stable' state/);
});

test('API verbs map to FSM events with Ironic minimum microversions', () => {
  assert.deepEqual(VERBS.active, { event: 'deploy', minVersion: 1 });
  assert.deepEqual(VERBS.deploy, { event: 'deploy', minVersion: 73 });
  assert.deepEqual(VERBS.deleted, { event: 'delete', minVersion: 1 });
  assert.deepEqual(VERBS.undeploy, { event: 'delete', minVersion: 73 });
  assert.equal(VERBS.manage?.minVersion, 4);
  assert.equal(VERBS.adopt?.minVersion, 17);
  assert.equal(VERBS.rescue?.minVersion, 38);
  for (const v of Object.values(VERBS)) assert.ok((EVENTS as readonly string[]).includes(v.event));
});
