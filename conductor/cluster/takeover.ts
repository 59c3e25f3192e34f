/**
 * What a conductor does at each cluster beat when conductors died or the ring moved (Ironic's takeover,
 * _check_deploying_status and _sync_local_state, in one pass):
 *  1. reservations held by a dead conductor on nodes this one now owns are released (nodes nobody can own: by the
 *     first live conductor by name);
 *  2. owned nodes left in a working state (deploying, cleaning, ...) with no reservation had their work die with
 *     their conductor: they fail with a last_error naming it, and their agent token is wiped (the agent looks up
 *     again); nodes waiting for an agent (wait call-back, clean wait) are left alone and go on at the next heartbeat,
 *     which any conductor forwards here;
 *  3. owned active nodes last prepared by another conductor get their boot configuration (iPXE script, kernels)
 *     rebuilt on this conductor's boot server, and driver_internal_info.conductor_affinity records it.
 */
import { errorMessage } from '../../common/errors.js';
import type { ConductorContext } from '../context.js';
import type { NodeTask } from '../drivers/index.js';
import { wipeAgentToken } from '../services/power.js';
import { STUCK_STATES } from '../states.js';
import type { NodeQuery, NodeRecord } from '../store/types.js';
import type { BeatReport, Cluster } from './membership.js';

const PAGE = 500;

async function* pages(ctx: ConductorContext, query: NodeQuery): AsyncGenerator<NodeRecord> {
  let marker: string | undefined;
  for (;;) {
    const page = await ctx.store.listNodes({ ...query, limit: PAGE, ...(marker ? { marker } : {}) });
    for (const n of page) yield n;
    if (page.length < PAGE) return;
    marker = page[page.length - 1]?.uuid;
  }
}

async function quietly(ctx: ConductorContext, node: NodeRecord, purpose: string,
  fn: (task: NodeTask) => Promise<void>): Promise<void> {
  try {
    await ctx.tasks.withNodeTask(node, { exclusive: true, retry: false, purpose }, fn);
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === 'NodeLocked' || code === 'NodeNotFound') return;
    ctx.log.warn({ node: node.uuid, purpose, err: errorMessage(e) }, 'takeover failed for node');
  }
}

export interface TakeoverResult {
  released: string[];
  failed: string[];
  rebuilt: string[];
}

export async function takeOver(ctx: ConductorContext, cluster: Cluster, report: BeatReport):
  Promise<TakeoverResult> {
  const out: TakeoverResult = { released: [], failed: [], rebuilt: [] };
  if (!report.ringChanged && report.dead.length === 0) return out;
  const dead = new Set(report.dead);
  /** node -> the dead conductor whose reservation this pass released. */
  const diedWith = new Map<string, string>();
  if (dead.size) {
    for await (const node of pages(ctx, { reserved: true })) {
      const holder = node.reservation;
      if (!holder || !dead.has(holder) || !cluster.owns(node)) continue;
      if (await ctx.store.releaseNode(node.uuid, holder)) {
        out.released.push(node.uuid);
        diedWith.set(node.uuid, holder);
      }
    }
    if (out.released.length) {
      ctx.log.info({ count: out.released.length, dead: [...dead] }, 'released reservations of offline conductors');
    }
  }

  for await (const node of pages(ctx, { provision_state: [...STUCK_STATES], reserved: false })) {
    if (!cluster.owns(node)) continue;
    await quietly(ctx, node, 'takeover of an orphaned operation', async (task) => {
      const state = task.node.provision_state;
      // Under the lock: live work holds the reservation through these states, so none is running.
      if (!STUCK_STATES.has(state as never)) return;
      const prev = diedWith.get(node.uuid) ?? cluster.previousOwnerOf(node);
      const who = prev && prev !== ctx.host ? `Conductor ${prev}` : 'The conductor running the operation';
      await task.fire('fail', { lastError: `${who} went offline while the node was in state "${state}"; the ` +
        `operation was aborted and the node taken over by conductor ${ctx.host}.` });
      await wipeAgentToken(task);
      out.failed.push(node.uuid);
    });
  }

  if (report.ringChanged) {
    for await (const node of pages(ctx, { provision_state: ['active'], reserved: false })) {
      if (!cluster.owns(node)) continue;
      const affinity = node.driver_internal_info.conductor_affinity;
      const prev = cluster.previousOwnerOf(node);
      const elsewhere = typeof affinity === 'string' ? affinity !== ctx.host : prev !== null && prev !== ctx.host;
      if (!elsewhere) continue;
      await quietly(ctx, node, 'takeover of an active node', async (task) => {
        if (task.node.provision_state !== 'active') return;
        await task.driver.boot.prepareInstance(task.driverNode());
        await task.updateInternalInfo({ conductor_affinity: ctx.host });
        await task.history(`Boot configuration rebuilt by conductor ${ctx.host} (took the node over from ` +
          `${typeof affinity === 'string' ? affinity : String(prev)}).`, 'INFO', 'takeover');
        out.rebuilt.push(node.uuid);
      });
    }
  }
  if (out.failed.length || out.rebuilt.length) {
    ctx.log.info({ failed: out.failed.length, rebuilt: out.rebuilt.length }, 'took nodes over');
  }
  return out;
}
