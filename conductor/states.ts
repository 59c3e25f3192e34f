/**
 * The provisioning state machine, as one declarative table.
 *
 * `transition()` is the only function that produces provision_state/target_provision_state values; the store
 * accepts them only inside a `TransitionPatch`, which only this module can mint. Everything else (API, drivers,
 * orchestration) asks for an event and gets InvalidState when the table has no such edge.
 */
import { InvalidState } from './errors.js';
import { isoTime } from './time.js';

export const States = {
  ENROLL: 'enroll',
  VERIFYING: 'verifying',
  MANAGEABLE: 'manageable',
  AVAILABLE: 'available',
  ACTIVE: 'active',
  DEPLOYING: 'deploying',
  DEPLOYWAIT: 'wait call-back',
  DEPLOYFAIL: 'deploy failed',
  CLEANING: 'cleaning',
  CLEANWAIT: 'clean wait',
  CLEANFAIL: 'clean failed',
  DELETING: 'deleting',
  ERROR: 'error',
  INSPECTING: 'inspecting',
  INSPECTWAIT: 'inspect wait',
  INSPECTFAIL: 'inspect failed',
  ADOPTING: 'adopting',
  ADOPTFAIL: 'adopt failed',
  RESCUE: 'rescue',
  RESCUING: 'rescuing',
  RESCUEWAIT: 'rescue wait',
  RESCUEFAIL: 'rescue failed',
  UNRESCUING: 'unrescuing',
  UNRESCUEFAIL: 'unrescue failed',
} as const;
export type ProvisionState = (typeof States)[keyof typeof States];
export const ALL_STATES: readonly ProvisionState[] = Object.values(States);

export const STABLE_STATES: ReadonlySet<ProvisionState> = new Set<ProvisionState>([
  'enroll', 'manageable', 'available', 'active', 'error', 'rescue',
]);
export const FAILURE_STATES: ReadonlySet<ProvisionState> = new Set<ProvisionState>([
  'deploy failed', 'clean failed', 'inspect failed', 'rescue failed', 'unrescue failed', 'adopt failed', 'error',
]);

/** The target shown while a node sits in a non-stable state (Ironic's `add_state(..., target=...)`). */
export const STATE_TARGETS: Readonly<Partial<Record<ProvisionState, ProvisionState>>> = {
  'verifying': 'manageable',
  'deploying': 'active', 'wait call-back': 'active', 'deploy failed': 'active',
  'cleaning': 'available', 'clean wait': 'available', 'clean failed': 'available',
  'deleting': 'available',
  'inspecting': 'manageable', 'inspect wait': 'manageable', 'inspect failed': 'manageable',
  'adopting': 'active', 'adopt failed': 'active',
  'rescuing': 'rescue', 'rescue wait': 'rescue', 'rescue failed': 'rescue',
  'unrescuing': 'active', 'unrescue failed': 'active',
};

export const EVENTS = [
  'manage', 'provide', 'clean', 'inspect', 'adopt', 'deploy', 'rebuild', 'delete', 'rescue', 'unrescue',
  'abort', 'done', 'fail', 'wait', 'resume',
] as const;
export type ProvisionEvent = (typeof EVENTS)[number];

/** All 63 transitions of Ironic 21.4: [source, event, destination]. */
export const TRANSITIONS: readonly (readonly [ProvisionState, ProvisionEvent, ProvisionState])[] = [
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

const TABLE = new Map<string, ProvisionState>(TRANSITIONS.map(([s, e, d]) => [`${s}\u0000${e}`, d]));

export function isState(s: unknown): s is ProvisionState {
  return typeof s === 'string' && (ALL_STATES as readonly string[]).includes(s);
}

export function nextState(from: string, event: ProvisionEvent): ProvisionState | undefined {
  return TABLE.get(`${from}\u0000${event}`);
}

export function canFire(from: string, event: ProvisionEvent): boolean {
  return TABLE.has(`${from}\u0000${event}`);
}

/** Operator-initiated events start a new operation: they clear last_error (Ironic does when spawning the worker). */
const STARTING_EVENTS: ReadonlySet<ProvisionEvent> = new Set<ProvisionEvent>([
  'manage', 'provide', 'clean', 'inspect', 'adopt', 'deploy', 'rebuild', 'delete', 'rescue', 'unrescue',
]);

declare const transitionBrand: unique symbol;
/** The only shape in which provision_state may reach the store. */
export interface TransitionPatch {
  readonly [transitionBrand]: true;
  readonly provision_state: ProvisionState;
  readonly target_provision_state: ProvisionState | null;
  readonly provision_updated_at: string;
  readonly last_error?: string | null;
}

export interface TransitionOptions {
  /** Override the FSM target (manual cleaning aims at `manageable`). Must be a stable state. */
  target?: ProvisionState;
  /** Error text for failure paths; required in spirit for every edge into a failure state. */
  lastError?: string | null;
  now?: Date;
}

export interface NodeStateView {
  uuid: string;
  provision_state: string;
  target_provision_state: string | null;
}

/**
 * Computes the state change for `event`. Throws InvalidState (HTTP 400) when there is no such edge.
 * Target rule (Ironic's FSM): stable destination -> null unless an explicit target says otherwise;
 * otherwise the explicit target, else the previous target if it was an override still pending, else the
 * destination's default target.
 */
export function transition(node: NodeStateView, event: ProvisionEvent, opts: TransitionOptions = {}): TransitionPatch {
  const dest = nextState(node.provision_state, event);
  if (dest === undefined) {
    throw new InvalidState(
      `The requested action "${event}" can not be performed on node "${node.uuid}" while it is in state ` +
      `"${node.provision_state}".`);
  }
  if (opts.target !== undefined && !STABLE_STATES.has(opts.target)) {
    throw new InvalidState(`Target state '${opts.target}' is not a 'stable' state`);
  }
  let target: ProvisionState | null;
  if (opts.target !== undefined) {
    target = STABLE_STATES.has(dest) && opts.target === dest ? null : opts.target;
  } else if (STABLE_STATES.has(dest)) {
    target = null;
  } else if (!STARTING_EVENTS.has(event) && isState(node.target_provision_state) && node.target_provision_state !== dest) {
    // A pending override (e.g. manual cleaning's `manageable`) survives wait/resume/fail.
    target = node.target_provision_state;
  } else {
    target = STATE_TARGETS[dest] ?? null;
  }
  let lastError: string | null | undefined = opts.lastError;
  if (FAILURE_STATES.has(dest) || event === 'fail' || event === 'abort') {
    lastError ??= `Node ${node.uuid} moved to "${dest}" on event "${event}" from "${node.provision_state}".`;
  } else if (lastError === undefined && STARTING_EVENTS.has(event)) {
    lastError = null;
  }
  const patch: Record<string, unknown> = {
    provision_state: dest,
    target_provision_state: target,
    provision_updated_at: isoTime(opts.now),
  };
  if (lastError !== undefined) patch.last_error = lastError;
  return patch as unknown as TransitionPatch;
}

/** Mints the initial state of a new node (API >= 1.11 enrolls; older versions start available). */
export function initialState(apiMinor: number): TransitionPatch {
  const state: ProvisionState = apiMinor >= 11 ? 'enroll' : 'available';
  return { provision_state: state, target_provision_state: null, provision_updated_at: isoTime() } as
    unknown as TransitionPatch;
}

/** API verbs (PUT .../states/provision `target`) -> FSM event and minimum microversion. */
export const VERBS: Readonly<Record<string, { event: ProvisionEvent; minVersion: number }>> = {
  manage: { event: 'manage', minVersion: 4 },
  provide: { event: 'provide', minVersion: 4 },
  inspect: { event: 'inspect', minVersion: 6 },
  abort: { event: 'abort', minVersion: 13 },
  clean: { event: 'clean', minVersion: 15 },
  adopt: { event: 'adopt', minVersion: 17 },
  rescue: { event: 'rescue', minVersion: 38 },
  unrescue: { event: 'unrescue', minVersion: 38 },
  active: { event: 'deploy', minVersion: 1 },
  deploy: { event: 'deploy', minVersion: 73 },
  rebuild: { event: 'rebuild', minVersion: 1 },
  deleted: { event: 'delete', minVersion: 1 },
  undeploy: { event: 'delete', minVersion: 73 },
};

/** PATCH allowed while a transition is pending only in these states. */
export const UPDATE_ALLOWED_STATES: ReadonlySet<string> = new Set([
  'deploy failed', 'inspecting', 'inspect failed', 'inspect wait', 'clean failed', 'error', 'verifying',
  'adopt failed', 'rescue failed', 'unrescue failed',
]);
/** DELETE allowed in these states (plus `available`, Ironic's allow_deleting_available_nodes default). */
export const DELETE_ALLOWED_STATES: ReadonlySet<string> = new Set(['manageable', 'enroll', 'adopt failed', 'available']);
/** Interface fields may change only here (or in maintenance). */
export const INTERFACE_UPDATE_STATES: ReadonlySet<string> = new Set([
  'enroll', 'inspecting', 'inspect wait', 'manageable', 'available',
]);
/** States a restarting conductor fails (they cannot resume). */
export const STUCK_STATES: ReadonlySet<ProvisionState> = new Set<ProvisionState>([
  'deploying', 'cleaning', 'verifying', 'inspecting', 'adopting', 'rescuing', 'unrescuing', 'deleting',
]);
/** Lookup is allowed in these states (restrict_lookup). */
export const LOOKUP_STATES: ReadonlySet<string> = new Set([
  'deploying', 'wait call-back', 'cleaning', 'clean wait', 'inspecting', 'inspect wait', 'rescuing', 'rescue wait',
]);
/** Lookup under fast-track (Ironic's FASTTRACK_LOOKUP_ALLOWED_STATES): also a node at rest whose agent is up. */
export const FASTTRACK_LOOKUP_STATES: ReadonlySet<string> = new Set([...LOOKUP_STATES, 'enroll', 'manageable', 'available']);
/** Under fast-track these heartbeats are recorded too (Ironic's FASTTRACK_HEARTBEAT_ALLOWED), nothing more. */
export const FASTTRACK_HEARTBEAT_RECORD_STATES: ReadonlySet<string> = new Set(['enroll', 'manageable', 'available']);
/** Heartbeats are processed in these; the record-only ones stop after storing agent details. */
export const HEARTBEAT_STATES: ReadonlySet<string> = new Set(['wait call-back', 'clean wait', 'rescue wait']);
export const HEARTBEAT_RECORD_ONLY_STATES: ReadonlySet<string> = new Set(['deploying', 'cleaning', 'rescuing']);
