/**
 * What keeps one conductor steady with many nodes in flight: Ironic's concurrency limits for deploy and clean
 * (503 ConcurrentActionLimit, counted from the nodes' provision states), a bounded worker pool for background
 * work, and bounds on BMC calls in total and per BMC address. One FleetState per conductor, in its context.
 */
import type { ConductorConfig } from './config.js';
import { ConcurrentActionLimit } from './errors.js';
import type { Store } from './store/types.js';

/** A counting semaphore with a FIFO queue. */
export class Semaphore {
  private active = 0;
  private readonly queue: Array<() => void> = [];
  constructor(private readonly size: number) {}

  get inUse(): number { return this.active; }
  get waiting(): number { return this.queue.length; }

  async acquire(): Promise<() => void> {
    if (this.active < this.size) this.active++;
    else await new Promise<void>((r) => this.queue.push(r)); // the releaser hands its slot over
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.queue.shift();
      if (next) next();
      else this.active--;
    };
  }

  async run<T>(work: () => Promise<T>): Promise<T> {
    const release = await this.acquire();
    try {
      return await work();
    } finally {
      release();
    }
  }
}

/** Semaphores per key (a BMC address), dropped when idle. */
export class KeyedSemaphore {
  private readonly byKey = new Map<string, Semaphore>();
  constructor(private readonly size: number) {}

  async run<T>(key: string, work: () => Promise<T>): Promise<T> {
    let s = this.byKey.get(key);
    if (!s) {
      s = new Semaphore(this.size);
      this.byKey.set(key, s);
    }
    try {
      return await s.run(work);
    } finally {
      if (s.inUse === 0 && s.waiting === 0) this.byKey.delete(key);
    }
  }
}

export type LimitedAction = 'provisioning' | 'unprovisioning' | 'cleaning';

const COUNTED: Record<LimitedAction, string[]> = {
  provisioning: ['deploying', 'wait call-back'],
  unprovisioning: ['deleting', 'cleaning', 'clean wait'],
  cleaning: ['deleting', 'cleaning', 'clean wait'],
};

export class FleetState {
  /** Background workers (spawned provisioning work, heartbeat processing runs). */
  readonly workers: Semaphore;
  /** BMC calls in total, and per BMC address. */
  readonly bmc: Semaphore;
  readonly bmcPerAddress: KeyedSemaphore;
  /** Serialises limit check + state change, so N parallel requests cannot all pass a check made before any moved. */
  private readonly admission = new Semaphore(1);
  /** Counters for tests and benchmarks. */
  readonly stats = { rejected: 0, bmcCalls: 0, bmcWaited: 0 };

  constructor(private readonly config: ConductorConfig) {
    this.workers = new Semaphore(config.conductor.workers_pool_size);
    this.bmc = new Semaphore(config.conductor.max_bmc_calls);
    this.bmcPerAddress = new KeyedSemaphore(config.conductor.max_bmc_calls_per_address);
  }

  /**
   * Runs `transition` (which moves the node into a counted state) only if the limit for `action` is not reached;
   * else ConcurrentActionLimit (503), as Ironic's _concurrent_action_limit.
   */
  async admit<T>(store: Store, action: LimitedAction, transition: () => Promise<T>): Promise<T> {
    return this.admission.run(async () => {
      const max = action === 'provisioning' ? this.config.conductor.max_concurrent_deploy
        : this.config.conductor.max_concurrent_clean;
      const busy = (await store.listNodes({ provision_state: COUNTED[action] })).length;
      if (busy >= max) {
        this.stats.rejected++;
        throw new ConcurrentActionLimit(action);
      }
      return transition();
    });
  }

  /** A BMC call under both bounds (the per-address one first, so one slow BMC cannot hold global slots). */
  async bmcCall<T>(address: string, work: () => Promise<T>): Promise<T> {
    this.stats.bmcCalls++;
    return this.bmcPerAddress.run(address, async () => {
      if (this.bmc.inUse >= this.config.conductor.max_bmc_calls) this.stats.bmcWaited++;
      return this.bmc.run(work);
    });
  }
}
