/**
 * Per-node reservations and the task API every node mutation goes through (Ironic's task_manager).
 *
 *   await tasks.withNodeTask(ident, { exclusive: true, purpose: 'power on' }, async (task) => {
 *     task.node / task.ports / task.driver.power ...
 *     await task.fire('deploy');                       // state machine edge, saved
 *     await task.save({ power_state: 'power on' });    // plain fields
 *     task.spawn(async (t) => { ... });                // keep the lock for background work after returning
 *   });
 *
 * An exclusive task sets `nodes.reservation` to this conductor's host with a conditional UPDATE; a busy node is
 * retried `node_locked_retry_attempts` times, then NodeLocked (409). The reservation is released on every path:
 * when the callback settles, or when the spawned worker settles.
 */
import { scrubText, secretValues } from '../common/secrets.js';
import { randomUUID } from 'node:crypto';
import { getLogger } from '../common/logger.js';
import { errorMessage } from '../common/errors.js';
import type { DriverNode } from './drivers/types.js';
import { IronicError, NodeLocked, NodeNotFound } from './errors.js';
import { transition, type ProvisionEvent, type TransitionOptions } from './states.js';
import type { NodeFields, NodeRecord, PortRecord, Store } from './store/types.js';

const log = getLogger('locks');

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export function isUuid(s: string): boolean {
  return UUID_RE.test(s);
}

export interface TaskOptions {
  exclusive?: boolean;
  purpose: string;
  /** Retry a locked node (default true); heartbeats use false and give up at once. */
  retry?: boolean;
}

export interface LockSettings {
  retryAttempts: number;
  retryIntervalMs: number;
}

/**
 * What a task needs of the driver registry. The task is generic in the driver it resolves, so this module never
 * imports conductor/drivers/: the drivers' interfaces take tasks (drivers/index.ts: LockedTask<D> = LockedTask of a
 * ResolvedDriver), and a concrete import here would close a circle.
 */
export interface DriverResolver<D> { resolveDriver(node: NodeRecord): D }

export class LockedTask<D> {
  private spawned: ((task: LockedTask<D>) => Promise<void>) | undefined;
  private released = false;
  private afterReleaseHooks: Array<() => void> = [];

  constructor(
    private readonly manager: TaskManager<D>,
    public node: NodeRecord,
    public ports: PortRecord[],
    private exclusiveLock: boolean,
    readonly purpose: string,
  ) {}

  get shared(): boolean { return !this.exclusiveLock; }
  get exclusive(): boolean { return this.exclusiveLock; }
  get driver(): D { return this.manager.drivers.resolveDriver(this.node); }
  get host(): string { return this.manager.host; }
  get store(): Store { return this.manager.store; }

  private requireExclusive(what: string): void {
    if (!this.exclusiveLock) throw new IronicError(`${what} needs an exclusive lock on node ${this.node.uuid}`, 500);
    if (this.released) throw new IronicError(`${what} after the task on node ${this.node.uuid} was released`, 500);
  }

  /** Applies a state-machine event (InvalidState if not allowed) together with `extra` fields, and saves. */
  async fire(event: ProvisionEvent, opts: TransitionOptions & { extra?: Partial<NodeFields> } = {}): Promise<NodeRecord> {
    this.requireExclusive(`event ${event}`);
    const before = this.node.provision_state;
    const raw = transition(this.node, event, opts);
    const patch = typeof raw.last_error === 'string' ? { ...raw, last_error: this.scrub(raw.last_error) } : raw;
    const extra = opts.extra && typeof opts.extra.last_error === 'string' ? { ...opts.extra, last_error: this.scrub(opts.extra.last_error) } : opts.extra;
    this.node = await this.manager.store.updateNode(this.node.uuid, { ...(extra ?? {}), ...patch });
    log.info({ node: this.node.uuid, event, from: before, to: this.node.provision_state }, 'provision state changed');
    if (patch.last_error) await this.history(patch.last_error, 'ERROR', eventType(event, before));
    return this.node;
  }

  /** last_error is shown to every API reader: no URL credentials, no value of the node's own secrets. */
  private scrub(text: string): string {
    return scrubText(text, secretValues(this.node.driver_info, this.node.instance_info,
      { agent_secret_token: this.node.driver_internal_info.agent_secret_token }));
  }

  async save(patch: Partial<NodeFields>): Promise<NodeRecord> {
    this.requireExclusive('save');
    if (typeof patch.last_error === 'string') patch = { ...patch, last_error: this.scrub(patch.last_error) };
    this.node = await this.manager.store.updateNode(this.node.uuid, patch);
    return this.node;
  }

  /** The agent that pinned `verifyCa` is gone (token wiped, node powered off). */
  agentGone(verifyCa: unknown): void {
    if (typeof verifyCa === 'string' && verifyCa) this.manager.onAgentGone?.(verifyCa);
  }

  /** Merges into driver_internal_info; a key set to undefined is removed. */
  async updateInternalInfo(changes: Record<string, unknown>): Promise<NodeRecord> {
    const dii: Record<string, unknown> = { ...this.node.driver_internal_info };
    for (const [k, v] of Object.entries(changes)) {
      if (v === undefined) delete dii[k];
      else dii[k] = v;
    }
    return this.save({ driver_internal_info: dii });
  }

  async history(event: string, severity: 'INFO' | 'ERROR', eventType: string, user: string | null = null): Promise<void> {
    if (!this.manager.historyEnabled) return;
    await this.manager.store.addHistory({ uuid: randomUUID(), node_uuid: this.node.uuid, severity, event_type: eventType,
      event, conductor: this.manager.host, user }, this.manager.historyMax);
  }

  async upgradeLock(retry = true): Promise<void> {
    if (this.exclusiveLock) return;
    this.node = await this.manager.reserve(this.node.uuid, retry);
    this.exclusiveLock = true;
  }

  async reload(): Promise<void> {
    const n = await this.manager.store.getNodeByUuid(this.node.uuid);
    if (!n) throw new NodeNotFound(this.node.uuid);
    this.node = n;
    this.ports = await this.manager.store.listPorts({ node_uuid: n.uuid });
  }

  /** Plain data for driver interfaces. */
  driverNode(): DriverNode {
    const n = this.node;
    return {
      uuid: n.uuid, name: n.name, driver: n.driver, driver_info: n.driver_info, instance_info: n.instance_info,
      driver_internal_info: n.driver_internal_info, properties: n.properties, power_state: n.power_state,
      ports: this.ports.map((p) => ({ address: p.address, pxe_enabled: p.pxe_enabled })),
    };
  }

  /**
   * Hands the task (and its reservation) to background work that starts after the current callback returns;
   * the reservation is released when `work` settles. Only one spawn per task.
   */
  spawn(work: (task: LockedTask<D>) => Promise<void>): void {
    this.requireExclusive('spawn');
    if (this.spawned) throw new IronicError('a task can spawn only one worker', 500);
    this.spawned = work;
  }

  /** @internal */
  takeSpawned(): ((task: LockedTask<D>) => Promise<void>) | undefined {
    const s = this.spawned;
    this.spawned = undefined;
    return s;
  }

  /**
   * Run `fn` as soon as this task's reservation is released (at once if it already is): work that needs the
   * node's lock next (a fast-track continuation) starts then, instead of polling for the lock. `fn` handles its
   * own errors.
   */
  afterRelease(fn: () => void): void {
    if (this.released) setImmediate(fn);
    else this.afterReleaseHooks.push(fn);
  }

  /** @internal */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    try {
      if (this.exclusiveLock) {
        this.manager.held.delete(this.node.uuid);
        await this.manager.store.releaseNode(this.node.uuid, this.manager.host);
      }
    } finally {
      const hooks = this.afterReleaseHooks;
      this.afterReleaseHooks = [];
      for (const fn of hooks) setImmediate(fn);
    }
  }
}

function eventType(event: ProvisionEvent, from: string): string {
  if (from.startsWith('clean') || event === 'clean' || event === 'provide') return 'cleaning';
  if (from.startsWith('deploy') || from === 'wait call-back') return 'deploying';
  if (from === 'deleting') return 'unprovision';
  if (from.includes('inspect')) return 'introspection';
  if (from.includes('rescu')) return 'rescue';
  if (from.includes('adopt')) return 'adoption';
  if (from === 'verifying') return 'verify';
  return 'provisioning';
}

export class TaskManager<D> {
  private readonly workers = new Set<Promise<void>>();
  /** Nodes this process holds a reservation on right now (the periodic cleanup leaves these alone). */
  readonly held = new Set<string>();
  historyEnabled = true;
  historyMax = 300;
  /** Called with an agent's pinned CA when that agent's life ends (the agent client drops its HTTP client). */
  onAgentGone: ((verifyCa: string) => void) | undefined;
  /** Takes a slot of the conductor's worker pool before a spawned worker runs (conductor/fleet.ts); none: unbounded. */
  workerGate: (() => Promise<() => void>) | undefined;

  constructor(readonly store: Store, readonly host: string, private readonly settings: LockSettings,
    readonly drivers: DriverResolver<D>) {}

  /** Finds a node by UUID or name, NodeNotFound otherwise. */
  async findNode(ident: string): Promise<NodeRecord> {
    const node = isUuid(ident) ? await this.store.getNodeByUuid(ident.toLowerCase()) : await this.store.getNodeByName(ident);
    if (!node) throw new NodeNotFound(ident);
    return node;
  }

  /** @internal conditional reservation with Ironic's retry policy. */
  async reserve(uuid: string, retry: boolean): Promise<NodeRecord> {
    const attempts = retry ? Math.max(1, this.settings.retryAttempts) : 1;
    for (let i = 0; ; i++) {
      const r = await this.store.reserveNode(uuid, this.host);
      if (r.ok) {
        this.held.add(uuid);
        return r.node;
      }
      if (r.missing) throw new NodeNotFound(uuid);
      if (i + 1 >= attempts) throw new NodeLocked(uuid, r.holder ?? 'unknown');
      await new Promise((res) => setTimeout(res, this.settings.retryIntervalMs));
    }
  }

  async acquire(ident: string | NodeRecord, opts: TaskOptions): Promise<LockedTask<D>> {
    let node = typeof ident === 'string' ? await this.findNode(ident) : ident;
    if (opts.exclusive) node = await this.reserve(node.uuid, opts.retry ?? true);
    try {
      const ports = await this.store.listPorts({ node_uuid: node.uuid });
      return new LockedTask(this, node, ports, opts.exclusive ?? false, opts.purpose);
    } catch (e) {
      if (opts.exclusive) {
        this.held.delete(node.uuid);
        await this.store.releaseNode(node.uuid, this.host);
      }
      throw e;
    }
  }

  async withNodeTask<T>(ident: string | NodeRecord, opts: TaskOptions, fn: (task: LockedTask<D>) => Promise<T>): Promise<T> {
    const task = await this.acquire(ident, opts);
    let result: T;
    try {
      result = await fn(task);
    } catch (e) {
      task.takeSpawned();
      await task.release();
      throw e;
    }
    const work = task.takeSpawned();
    if (!work) {
      await task.release();
      return result;
    }
    this.runWorker(task, work);
    return result;
  }

  private runWorker(task: LockedTask<D>, work: (task: LockedTask<D>) => Promise<void>): void {
    const p = (async () => {
      await new Promise((r) => setImmediate(r));
      const slot = this.workerGate ? await this.workerGate() : undefined;
      try {
        await work(task);
      } catch (e) {
        log.error({ node: task.node.uuid, purpose: task.purpose, err: errorMessage(e) }, 'background task failed');
      } finally {
        slot?.();
        await task.release().catch((e: unknown) => log.error({ err: errorMessage(e) }, 'release failed'));
      }
    })();
    this.workers.add(p);
    void p.finally(() => this.workers.delete(p));
  }

  get busyWorkers(): number {
    return this.workers.size;
  }

  /** Resolves once every background worker has finished (tests, graceful shutdown). */
  async idle(): Promise<void> {
    while (this.workers.size > 0) await Promise.allSettled([...this.workers]);
  }
}
