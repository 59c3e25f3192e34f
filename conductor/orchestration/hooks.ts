/**
 * Registration points between the conductor core and the orchestration (agent-driven deploy/clean/rescue).
 * The core calls the heartbeat handler after it has validated a heartbeat and recorded agent_url,
 * agent_version, agent_last_heartbeat (and agent_verify_ca / agent_status) in driver_internal_info, without
 * holding any lock; the handler takes its own task (`ctx.tasks.withNodeTask(uuid, {exclusive: true, retry: false,
 * ...})`) and drives the state machine. The HTTP answer (202) does not wait for it.
 */
import type { ConductorContext } from '../context.js';

/**
 * What a heartbeat asks to record in driver_internal_info (a value of undefined removes the key). Passed when the
 * core could not record it itself because the node was reserved: the handler records it once it holds the lock,
 * so no heartbeat is lost.
 */
export type HeartbeatFacts = Record<string, unknown>;

export type HeartbeatHandler = (nodeUuid: string, ctx: ConductorContext, facts?: HeartbeatFacts) => Promise<void> | void;

let heartbeatHandler: HeartbeatHandler | null = null;

/** Installs (or, with null, removes) the process-wide heartbeat handler. */
export function setHeartbeatHandler(fn: HeartbeatHandler | null): void {
  heartbeatHandler = fn;
}

export function getHeartbeatHandler(): HeartbeatHandler | null {
  return heartbeatHandler;
}
