import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  ALL_STATES, canFire, EVENTS, type ProvisionEvent, STABLE_STATES, transition, VERBS,
} from '../../conductor/states.js';

/**
 * Ironic 21.4's provision-state machine, written out here from Ironic's own definition (its automaton
 * definition in ironic/common/states.py of the 21.4 release) rather than imported: the test compares conductor/states.ts against
 * it, so a wrong edge in the code's table cannot also be the expected value.
 */
const IRONIC_21_4: readonly (readonly [string, string, string])[] = [
  ['enroll', 'manage', 'verifying'],
  ['verifying', 'done', 'manageable'],
  ['verifying', 'fail', 'enroll'],
  ['manageable', 'provide', 'cleaning'],
  ['manageable', 'clean', 'cleaning'],
  ['manageable', 'inspect', 'inspecting'],
  ['manageable', 'adopt', 'adopting'],
  ['available', 'deploy', 'deploying'],
  ['available', 'manage', 'manageable'],
  ['deploying', 'wait', 'wait call-back'],
  ['deploying', 'done', 'active'],
  ['deploying', 'fail', 'deploy failed'],
  ['wait call-back', 'resume', 'deploying'],
  ['wait call-back', 'fail', 'deploy failed'],
  ['wait call-back', 'delete', 'deleting'],
  ['deploy failed', 'rebuild', 'deploying'],
  ['deploy failed', 'deploy', 'deploying'],
  ['deploy failed', 'delete', 'deleting'],
  ['active', 'rebuild', 'deploying'],
  ['active', 'delete', 'deleting'],
  ['active', 'rescue', 'rescuing'],
  ['error', 'rebuild', 'deploying'],
  ['error', 'delete', 'deleting'],
  ['deleting', 'clean', 'cleaning'],
  ['deleting', 'fail', 'error'],
  ['cleaning', 'wait', 'clean wait'],
  ['cleaning', 'done', 'available'],
  ['cleaning', 'fail', 'clean failed'],
  ['cleaning', 'manage', 'manageable'],
  ['clean wait', 'resume', 'cleaning'],
  ['clean wait', 'fail', 'clean failed'],
  ['clean wait', 'abort', 'clean failed'],
  ['clean failed', 'manage', 'manageable'],
  ['inspecting', 'wait', 'inspect wait'],
  ['inspecting', 'done', 'manageable'],
  ['inspecting', 'fail', 'inspect failed'],
  ['inspect wait', 'done', 'manageable'],
  ['inspect wait', 'fail', 'inspect failed'],
  ['inspect wait', 'abort', 'inspect failed'],
  ['inspect failed', 'manage', 'manageable'],
  ['inspect failed', 'inspect', 'inspecting'],
  ['adopting', 'done', 'active'],
  ['adopting', 'fail', 'adopt failed'],
  ['adopt failed', 'adopt', 'adopting'],
  ['adopt failed', 'manage', 'manageable'],
  ['rescuing', 'wait', 'rescue wait'],
  ['rescuing', 'done', 'rescue'],
  ['rescuing', 'fail', 'rescue failed'],
  ['rescue wait', 'resume', 'rescuing'],
  ['rescue wait', 'fail', 'rescue failed'],
  ['rescue wait', 'abort', 'rescue failed'],
  ['rescue wait', 'delete', 'deleting'],
  ['rescue', 'rescue', 'rescuing'],
  ['rescue', 'unrescue', 'unrescuing'],
  ['rescue', 'delete', 'deleting'],
  ['rescue failed', 'rescue', 'rescuing'],
  ['rescue failed', 'unrescue', 'unrescuing'],
  ['rescue failed', 'delete', 'deleting'],
  ['unrescuing', 'done', 'active'],
  ['unrescuing', 'fail', 'unrescue failed'],
  ['unrescue failed', 'rescue', 'rescuing'],
  ['unrescue failed', 'unrescue', 'unrescuing'],
  ['unrescue failed', 'delete', 'deleting'],
];

const EXPECTED_STATES = [...new Set(IRONIC_21_4.flatMap(([from, , to]) => [from, to]))].sort();
const EXPECTED_EVENTS = [...new Set(IRONIC_21_4.map(([, e]) => e))].sort();
const expectedTo = (s: string, e: string): string | undefined => IRONIC_21_4.find(([a, b]) => a === s && b === e)?.[2];

/** Ironic's stable states, and the target each unstable one shows while in it (automated cleaning aims at available). */
const EXPECTED_STABLE = ['active', 'available', 'enroll', 'error', 'manageable', 'rescue'];
const EXPECTED_TARGET: Record<string, string> = {
  verifying: 'manageable', deploying: 'active', 'wait call-back': 'active', 'deploy failed': 'active',
  cleaning: 'available', 'clean wait': 'available', 'clean failed': 'available', deleting: 'available',
  inspecting: 'manageable', 'inspect wait': 'manageable', 'inspect failed': 'manageable', adopting: 'active',
  'adopt failed': 'active', rescuing: 'rescue', 'rescue wait': 'rescue', 'rescue failed': 'rescue',
  unrescuing: 'active', 'unrescue failed': 'active',
};
const EXPECTED_FAILURE = ['adopt failed', 'clean failed', 'deploy failed', 'inspect failed', 'rescue failed', 'unrescue failed'];

const node = (provision_state: string, target: string | null = null) =>
  ({ uuid: '11111111-2222-3333-4444-555555555555', provision_state, target_provision_state: target });

test('the states and events are Ironic 21.4\'s, no more, no fewer', () => {
  assert.equal(IRONIC_21_4.length, 63);
  assert.equal(EXPECTED_STATES.length, 24);
  assert.deepEqual([...ALL_STATES].sort(), EXPECTED_STATES);
  assert.deepEqual([...EVENTS].sort(), EXPECTED_EVENTS);
  assert.deepEqual([...STABLE_STATES].sort(), EXPECTED_STABLE);
});

test('every (state, event) pair moves exactly as Ironic 21.4 does, or is refused with a 400 InvalidState', () => {
  let walked = 0;
  let refused = 0;
  for (const s of EXPECTED_STATES) {
    for (const e of EXPECTED_EVENTS as ProvisionEvent[]) {
      const to = expectedTo(s, e);
      if (to === undefined) {
        assert.equal(canFire(s, e), false, `${s} --${e}--> must be refused`);
        assert.throws(() => transition(node(s), e), (err: Error & { status?: number; code?: string }) => {
          assert.equal(err.status, 400);
          assert.equal(err.code, 'InvalidState');
          assert.match(err.message, new RegExp(`"${e}".*"${s}"`));
          return true;
        });
        refused++;
        continue;
      }
      assert.equal(canFire(s, e), true, `${s} --${e}--> ${to} must be allowed`);
      const p = transition(node(s), e, e === 'fail' || e === 'abort' ? { lastError: 'boom' } : {});
      assert.equal(p.provision_state, to, `${s} --${e}-->`);
      assert.equal(p.target_provision_state, EXPECTED_STABLE.includes(to) ? null : EXPECTED_TARGET[to], `${s} --${e}--> ${to} target`);
      assert.match(p.provision_updated_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$/);
      walked++;
    }
  }
  assert.equal(walked, 63);
  assert.equal(refused, 24 * EXPECTED_EVENTS.length - 63);
});

test('failure edges always carry last_error (explicit or generated)', () => {
  for (const [from, event, to] of IRONIC_21_4) {
    if (!EXPECTED_FAILURE.includes(to) && event !== 'fail' && event !== 'abort') continue;
    const explicit = transition(node(from), event as ProvisionEvent, { lastError: 'disk on fire' });
    assert.equal(explicit.last_error, 'disk on fire');
    const generated = transition(node(from), event as ProvisionEvent);
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
