/**
 * Agent-facing lookup and heartbeat: the agent token is issued once, at the first
 * lookup, and required on every heartbeat; callback URLs are pinned once recorded.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { errorMessage } from '../../common/errors.js';
import type { ConductorContext } from '../context.js';
import { DuplicateNodeOnLookup, IncompleteLookup, InvalidParameterValue, NodeNotFound, NotFound } from '../errors.js';
import { isUuid } from '../locks.js';
import type { NodeTask } from '../drivers/index.js';
import { MASKED_TOKEN, type HeartbeatBody } from '../../protocol/lookup.js';
import {
  FASTTRACK_HEARTBEAT_RECORD_STATES, FASTTRACK_LOOKUP_STATES, HEARTBEAT_RECORD_ONLY_STATES, HEARTBEAT_STATES, LOOKUP_STATES,
} from '../states.js';
import { fastTrackAble, fastTrackEnabled } from '../fast-track.js';
import type { NodeRecord } from '../store/types.js';
import { isoTime } from '../time.js';

const MAC_RE = /^([0-9a-f]{2}[:-]){5}[0-9a-f]{2}$/i;

export function newAgentToken(): string {
  return randomBytes(32).toString('base64url');
}

function tokensEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export interface LookupResult {
  node: NodeRecord;
  token: string | undefined;
}

/** Finds the node for an agent and issues its token (API >= 1.62) if it has none yet. */
export async function lookup(ctx: ConductorContext, addresses: string | undefined, nodeUuid: string | undefined,
  apiMinor: number): Promise<LookupResult> {
  const macs = (addresses ?? '').split(',').map((s) => s.trim()).filter((s) => MAC_RE.test(s))
    .map((s) => s.toLowerCase().replace(/-/g, ':'));
  if (nodeUuid !== undefined && !isUuid(nodeUuid)) {
    throw new InvalidParameterValue(`Expected a UUID but received ${nodeUuid}.`);
  }
  if (macs.length === 0 && !nodeUuid) throw new IncompleteLookup();
  let node: NodeRecord | undefined;
  if (nodeUuid) node = await ctx.store.getNodeByUuid(nodeUuid.toLowerCase());
  else {
    try {
      node = await ctx.store.getNodeByMacs(macs);
    } catch (e) {
      if (!(e instanceof DuplicateNodeOnLookup)) throw e;
      // As Ironic: the agent gets the plain "not found" (which nodes exist is none of its business); the log says why.
      ctx.log.error({ macs, nodes: e.nodes }, `lookup refused: ${e.message}`);
    }
  }
  if (!node) throw new NotFound('Node with the given addresses could not be found.');
  const lookupStates = enabledQuietly(ctx, node) ? FASTTRACK_LOOKUP_STATES : LOOKUP_STATES;
  if (ctx.config.restrict_lookup && !lookupStates.has(node.provision_state)) {
    throw new NotFound('Node with the given addresses could not be found.');
  }
  if (apiMinor < 62) return { node, token: undefined };
  if (typeof node.driver_internal_info.agent_secret_token === 'string') return { node, token: MASKED_TOKEN };
  return ctx.tasks.withNodeTask(node, { exclusive: true, purpose: 'issuing agent token' }, async (task) => {
    const existing = task.node.driver_internal_info.agent_secret_token;
    if (typeof existing === 'string') return { node: task.node, token: MASKED_TOKEN };
    const token = newAgentToken();
    await task.updateInternalInfo({ agent_secret_token: token });
    return { node: task.node, token };
  });
}

/** Version-gated heartbeat fields (checked before the conductor sees the heartbeat). */
export function checkHeartbeatVersion(body: HeartbeatBody, apiMinor: number): void {
  const gated: [keyof HeartbeatBody, number][] = [['agent_version', 36], ['agent_token', 62],
    ['agent_verify_ca', 68], ['agent_status', 72], ['agent_status_message', 72]];
  for (const [k, min] of gated) {
    if (body[k] !== undefined && body[k] !== null && apiMinor < min) {
      throw new InvalidParameterValue(`Field "${k}" not recognised in this API version.`);
    }
  }
}

/** Stores a heartbeat's facts on the node (caller holds the exclusive lock). */
export async function recordHeartbeat(task: NodeTask, changes: Record<string, unknown>): Promise<void> {
  const dii = { ...task.node.driver_internal_info };
  for (const [k, v] of Object.entries(changes)) if (v === undefined) delete dii[k]; else dii[k] = v;
  await task.save({ driver_internal_info: dii,
    ...(HEARTBEAT_STATES.has(task.node.provision_state) ? { provision_updated_at: isoTime() } : {}) });
}

/**
 * Validates and records a heartbeat, then hands the node to the orchestration's heartbeat handler (not
 * awaited: the agent gets its 202 at once). A node locked by a running operation skips the heartbeat.
 */
export async function heartbeat(ctx: ConductorContext, ident: string, body: HeartbeatBody): Promise<void> {
  const node = isUuid(ident) ? await ctx.store.getNodeByUuid(ident.toLowerCase()) : await ctx.store.getNodeByName(ident);
  if (!node) throw new NodeNotFound(ident);
  const dii = node.driver_internal_info;
  if (typeof dii.agent_url === 'string' && dii.agent_url !== body.callback_url) {
    throw new InvalidParameterValue(`Detected change in ramdisk provided "callback_url"`);
  }
  // Pinned like the callback URL (Ironic does the same): a replaced CA would let whoever sends it impersonate the agent.
  if (typeof dii.agent_verify_ca === 'string' && body.agent_verify_ca && dii.agent_verify_ca !== body.agent_verify_ca) {
    throw new InvalidParameterValue(`Detected change in ramdisk provided "agent_verify_ca"`);
  }
  if (!body.agent_token) throw new InvalidParameterValue('Agent token is required for heartbeat processing.');
  if (!body.agent_version && !body.agent_status) {
    throw new InvalidParameterValue('Agent version is required for heartbeat processing.');
  }
  const stored = dii.agent_secret_token;
  if (typeof stored !== 'string' || !tokensEqual(stored, body.agent_token)) {
    throw new InvalidParameterValue('Invalid or missing agent token received.');
  }
  let url: URL;
  try {
    url = new URL(body.callback_url);
  } catch {
    throw new InvalidParameterValue(`Invalid callback_url ${body.callback_url}.`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new InvalidParameterValue(`Invalid callback_url ${body.callback_url}.`);
  }
  if (ctx.config.require_tls && url.protocol !== 'https:') {
    throw new InvalidParameterValue(`Agent is not using TLS but TLS is required by configuration ` +
      `(callback_url ${body.callback_url}).`);
  }
  const state = node.provision_state;
  // Under fast-track a node at rest (available, manageable, enroll) records its agent's heartbeats: that is what
  // tells the next deploy the agent is still up (Ironic: heartbeat_allowed or fast_track_able).
  const atRestRecorded = FASTTRACK_HEARTBEAT_RECORD_STATES.has(state) && fastTrackAble(ctx, node);
  if (!HEARTBEAT_STATES.has(state) && !HEARTBEAT_RECORD_ONLY_STATES.has(state) && !atRestRecorded) {
    ctx.log.debug({ node: node.uuid, state }, 'heartbeat ignored in this state');
    return;
  }
  const changes: Record<string, unknown> = {
    agent_url: body.callback_url,
    agent_version: body.agent_version ?? undefined,
    agent_last_heartbeat: isoTime(),
  };
  if (body.agent_verify_ca) changes.agent_verify_ca = body.agent_verify_ca;
  if (body.agent_status) {
    changes.agent_status = body.agent_status;
    changes.agent_status_message = body.agent_status_message ?? undefined;
  }
  if (!body.agent_version) delete changes.agent_version;
  let recorded = false;
  try {
    await ctx.tasks.withNodeTask(node, { exclusive: true, retry: false, purpose: 'heartbeat' }, async (task) => {
      await recordHeartbeat(task, changes);
      recorded = true;
    });
  } catch (e) {
    if ((e as { code?: string }).code !== 'NodeLocked') throw e;
  }
  const handler = ctx.heartbeats.handler;
  if (!recorded) {
    // Busy node: Ironic drops such heartbeats; we hand the facts to the handler, which records them (and does
    // what the heartbeat asks for) as soon as the current work on the node releases it.
    if (!handler) {
      ctx.log.debug({ node: node.uuid }, 'heartbeat skipped: node locked and no handler to defer to');
      return;
    }
  } else if (!HEARTBEAT_STATES.has(state) || node.maintenance || !handler) {
    return;
  }
  const facts = recorded ? undefined : changes;
  void (async () => {
    try {
      await handler(node.uuid, ctx, facts);
    } catch (e) {
      ctx.log.error({ node: node.uuid, err: errorMessage(e) }, 'heartbeat handler failed');
    }
  })();
}

function enabledQuietly(ctx: ConductorContext, node: NodeRecord): boolean {
  try {
    return fastTrackEnabled(ctx, node);
  } catch {
    return false; // a malformed driver_info flag: the normal lookup rules
  }
}
