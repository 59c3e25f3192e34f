/**
 * The hand-over between the conductor core and the orchestration (agent-driven deploy/clean/rescue).
 * The core calls the heartbeat handler after it has validated a heartbeat and recorded agent_url,
 * agent_version, agent_last_heartbeat (and agent_verify_ca / agent_status) in driver_internal_info, without
 * holding any lock; the handler takes its own task (`ctx.tasks.withNodeTask(uuid, {exclusive: true, retry: false,
 * ...})`) and drives the state machine. The HTTP answer (202) does not wait for it.
 */
/**
 * What a heartbeat asks to record in driver_internal_info (a value of undefined removes the key). Passed when the
 * core could not record it itself because the node was reserved: the handler records it once it holds the lock,
 * so no heartbeat is lost.
 */
export type HeartbeatFacts = Record<string, unknown>;

// Generic in the context so this module needs nothing from conductor/context.ts, which holds a hub.
export type HeartbeatHandler<C> = (nodeUuid: string, ctx: C, facts?: HeartbeatFacts) => Promise<void> | void;

/** One conductor's heartbeat state (lives in its context). */
export class HeartbeatHub<C> {
  /** Installed by the conductor at start (tests may swap it); null: heartbeats are only recorded. */
  handler: HeartbeatHandler<C> | null = null;
  /** Per node: is a run in progress, and did another heartbeat arrive meanwhile? */
  readonly inflight = new Map<string, { again: boolean }>();
  /** Heartbeat facts the API could not record (node reserved): the latest wins, recorded under the node's lock. */
  readonly pendingFacts = new Map<string, HeartbeatFacts>();
  /** Counters for tests and benchmarks: heartbeats handed over, deferred (node was busy), processing runs. */
  readonly stats = { received: 0, deferred: 0, runs: 0 };

  /** Resolves when no heartbeat processing is in flight (tests, graceful shutdown). */
  async idle(): Promise<void> {
    while (this.inflight.size > 0) await new Promise((r) => setTimeout(r, 20));
  }
}
