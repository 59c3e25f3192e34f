/**
 * Periodic tasks: callback timeouts for the wait states, power-state sync for nodes with a
 * real power driver (record what the hardware says, never fight it), and cleanup of reservations this
 * conductor holds without a live task. Each task never overlaps itself; intervals come from config (0 = off).
 */
import { errorMessage } from '../common/errors.js';
import type { ConductorContext } from './context.js';
import type { NodeTask } from './drivers/index.js';
import { failCleaning, failDeploy } from './services/provision.js';
import { wipeAgentToken } from './services/power.js';
import type { NodeRecord } from './store/types.js';
import { isoTime } from './time.js';
import { checkOrphanAllocations } from './services/allocations.js';

const PAGE = 500;
/** Power sync leaves these alone: the conductor itself is driving power there. */
const NO_POWER_SYNC_STATES = new Set(['wait call-back', 'clean wait', 'enroll', 'adopt failed', 'deploying',
  'cleaning', 'deleting', 'verifying', 'rescuing', 'unrescuing']);

/** Iterates nodes page by page (bounded memory with 10,000s of nodes). */
async function* eachNode(ctx: ConductorContext, query: Parameters<ConductorContext['store']['listNodes']>[0]):
  AsyncGenerator<NodeRecord> {
  let marker: string | undefined;
  for (;;) {
    const page = await ctx.store.listNodes({ ...query, limit: PAGE, ...(marker ? { marker } : {}) });
    for (const n of page) yield n;
    if (page.length < PAGE) return;
    marker = page[page.length - 1]?.uuid;
  }
}

async function withQuietTask(ctx: ConductorContext, node: NodeRecord, purpose: string,
  fn: (task: NodeTask) => Promise<void>): Promise<void> {
  try {
    await ctx.tasks.withNodeTask(node, { exclusive: true, retry: false, purpose }, fn);
  } catch (e) {
    if ((e as { code?: string }).code === 'NodeLocked' || (e as { code?: string }).code === 'NodeNotFound') return;
    ctx.log.warn({ node: node.uuid, purpose, err: errorMessage(e) }, 'periodic task failed for node');
  }
}

/** Fails nodes that waited for an agent callback longer than the configured timeout. */
export async function checkCallbackTimeouts(ctx: ConductorContext, now = Date.now()): Promise<number> {
  const cfg = ctx.config;
  const checks: [string, number, (task: NodeTask) => Promise<void>][] = [
    ['wait call-back', cfg.deploy_callback_timeout, (t) => failDeploy(t,
      `Timeout reached while waiting for callback for node ${t.node.uuid}`)],
    ['clean wait', cfg.clean_callback_timeout, (t) => failCleaning(t,
      `Timeout reached while cleaning the node. Please check if the ramdisk responsible for the cleaning is running ` +
      `on the node.${t.node.clean_step.step ? ` Failed on step ${JSON.stringify(t.node.clean_step)}.` : ''}`)],
    ['rescue wait', cfg.rescue_callback_timeout, async (t) => {
      await t.fire('fail', { lastError: 'Timeout reached while waiting for rescue ramdisk callback for node ' +
        `${t.node.uuid}` });
      await wipeAgentToken(t);
    }],
    ['inspect wait', cfg.inspect_wait_timeout, async (t) => {
      await t.fire('fail', { lastError: `Timeout waiting for node inspection. Node ${t.node.uuid}` });
    }],
  ];
  let failed = 0;
  for (const [state, timeoutS, fail] of checks) {
    if (timeoutS <= 0) continue;
    const before = isoTime(new Date(now - timeoutS * 1000));
    for await (const node of eachNode(ctx, { provision_state: [state], maintenance: false, reserved: false,
      provision_updated_before: before })) {
      if (ctx.cluster && !ctx.cluster.owns(node)) continue;
      await withQuietTask(ctx, node, 'callback timeout', async (task) => {
        // Re-check under the lock: a heartbeat may have touched the node meanwhile.
        if (task.node.provision_state !== state || (task.node.provision_updated_at ?? '') >= before) return;
        await fail(task);
        failed++;
      });
    }
  }
  return failed;
}

/** Reads the power state of every eligible node with a non-fake power interface and records changes. */
export async function syncPowerStates(ctx: ConductorContext): Promise<number> {
  let changed = 0;
  for await (const node of eachNode(ctx, { maintenance: false, reserved: false })) {
    if (NO_POWER_SYNC_STATES.has(node.provision_state) || !node.power_interface || node.power_interface === 'fake') continue;
    if (node.target_power_state) continue;
    // Each conductor polls only the BMCs of the nodes the hash ring gives it.
    if (ctx.cluster && !ctx.cluster.owns(node)) continue;
    await withQuietTask(ctx, node, 'power state sync', async (task) => {
      let actual: string;
      try {
        actual = await task.driver.power.getPowerState(task.driverNode());
      } catch (e) {
        const n = (ctx.powerSyncFailures.get(node.uuid) ?? 0) + 1;
        ctx.powerSyncFailures.set(node.uuid, n);
        if (n >= Math.max(1, ctx.config.periodic.power_state_sync_max_retries)) {
          ctx.powerSyncFailures.delete(node.uuid);
          const msg = `During sync_power_state, max retries exceeded for node ${node.uuid}, node state ` +
            `${String(node.power_state)} does not match expected state 'None'. Updating DB state to 'None' ` +
            `Switching node to maintenance mode. Error: ${errorMessage(e)}`;
          await task.save({ power_state: null, maintenance: true, maintenance_reason: msg, fault: 'power failure',
            last_error: msg });
          await task.history(msg, 'ERROR', 'monitoring');
        }
        return;
      }
      ctx.powerSyncFailures.delete(node.uuid);
      if (actual === task.node.power_state) return;
      const previous = task.node.power_state;
      await task.save({ power_state: actual });
      changed++;
      if (previous !== null) {
        await task.history(`Power state changed outside of the conductor: recorded ${previous}, ` +
          `hardware reports ${actual}; recorded the hardware state.`, 'INFO', 'monitoring');
      }
    });
  }
  return changed;
}

/** Releases reservations of this host that no live task holds (e.g. left by a crash mid-request). */
export async function cleanupReservations(ctx: ConductorContext): Promise<string[]> {
  const released: string[] = [];
  for await (const node of eachNode(ctx, { reserved: true })) {
    if (node.reservation !== ctx.host || ctx.tasks.held.has(node.uuid)) continue;
    if (await ctx.store.releaseNode(node.uuid, ctx.host)) released.push(node.uuid);
  }
  return released;
}

export class PeriodicTasks {
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly running = new Map<string, Promise<unknown>>();
  private stopped = false;

  constructor(private readonly ctx: ConductorContext) {}

  start(): void {
    const p = this.ctx.config.periodic;
    this.every('callback-timeouts', p.check_provision_state_interval, () => checkCallbackTimeouts(this.ctx));
    this.every('power-sync', p.sync_power_state_interval, () => syncPowerStates(this.ctx));
    this.every('reservation-cleanup', p.reservation_cleanup_interval, () => cleanupReservations(this.ctx));
    this.every('orphan-allocations', p.check_allocations_interval, () => checkOrphanAllocations(this.ctx));
    // This host's own unfinished allocations are from its previous run: resume them now.
    void checkOrphanAllocations(this.ctx, { own: true })
      .catch((e: unknown) => this.ctx.log.error({ err: errorMessage(e) }, 'resuming unfinished allocations failed'));
  }

  private every(name: string, intervalS: number, fn: () => Promise<unknown>): void {
    if (intervalS <= 0) return;
    const t = setInterval(() => {
      if (this.stopped || this.running.has(name)) return;
      const run = fn().catch((e: unknown) => this.ctx.log.error({ task: name, err: errorMessage(e) }, 'periodic task failed'))
        .finally(() => this.running.delete(name));
      this.running.set(name, run);
    }, intervalS * 1000);
    t.unref();
    this.timers.push(t);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    await Promise.allSettled([...this.running.values()]);
  }
}
