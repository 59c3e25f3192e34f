/**
 * What every service function gets: the validated config, the store, the task manager, this conductor's
 * host name and everything else that lives as long as one conductor (its drivers, boot server, heartbeat
 * bookkeeping). One object per running conductor: no conductor module keeps state of its own, so tests may run
 * several conductors in one process.
 */
import type { Logger } from '../common/logger.js';
import type { BootServer } from './boot-server.js';
import type { ConductorConfig } from './config.js';
import type { DriverRegistry, ResolvedDriver } from './drivers/index.js';
import type { ConductorImageCache } from './image-cache/node-images.js';
import type { FleetState } from './fleet.js';
import type { TaskManager } from './locks.js';
import type { HeartbeatHub } from './orchestration/hooks.js';
import type { ConductorRecord, Store } from './store/types.js';

/** The node facts the hash ring keys on. */
export interface RingNode {
  readonly uuid: string;
  readonly driver: string;
  readonly conductor_group: string;
}

/**
 * What the rest of the conductor sees of the other conductors sharing its database (conductor/cluster/
 * membership.ts implements it). Absent: this conductor is alone and owns every node it can drive.
 */
export interface ClusterView {
  /** The live conductor the hash ring of the node's group and hardware type maps it to, or null. */
  ownerOf(node: RingNode): string | null;
  /** Whether this conductor runs the node's periodic work: its owner, or the keeper of nodes nobody can own. */
  owns(node: RingNode): boolean;
  /** More than this conductor is alive. */
  readonly shared: boolean;
  /** Bumped whenever the rings are rebuilt (ownerOf may answer differently from then on). */
  readonly version: number;
  /** Live conductors (any group) that have this hardware type enabled, sorted. */
  hostsFor(driver: string): string[];
  /** The conductor groups of the live conductors, and every hardware type any of them enables. */
  liveScope(): { groups: string[]; drivers: string[] };
  /** Live conductor names (this one included), sorted. */
  liveHosts(): readonly string[];
  /** Whether a registered conductor counts as alive now (online and heartbeating within heartbeat_timeout). */
  isAlive(rec: ConductorRecord): boolean;
  /** Calls a method of another conductor's internal RPC (conductor/cluster/rpc-methods.ts). */
  call(host: string, method: string, params: readonly unknown[]): Promise<unknown>;
}

export interface ConductorContext {
  readonly config: ConductorConfig;
  readonly store: Store;
  readonly tasks: TaskManager<ResolvedDriver>;
  readonly host: string;
  readonly log: Logger;
  /** How the API is served: its scheme, and the CA PEM ramdisks verify it with (conductor/api-tls.ts). */
  readonly api?: { readonly scheme: 'http' | 'https'; readonly caPem?: string | undefined } | undefined;
  /** This conductor's hardware types and (configured) interface implementations. */
  readonly drivers: DriverRegistry;
  /** The boot server (iPXE scripts, image cache) when boot.http_root is configured. */
  readonly bootServer: BootServer | undefined;
  /** The master image cache and per-node image URLs (image_download_source=local); absent in bare test contexts. */
  readonly imageCache?: ConductorImageCache | undefined;
  /** Heartbeat hand-over from the API to the orchestration, and its per-node bookkeeping. */
  readonly heartbeats: HeartbeatHub<ConductorContext>;
  /** Per node: consecutive power-state read failures of the periodic power sync. */
  readonly powerSyncFailures: Map<string, number>;
  /** The other conductors on the same database, when there is a cluster view (conductor/cluster/). */
  readonly cluster?: ClusterView | undefined;
  /** Concurrency limits, the worker pool and BMC call bounds (conductor/fleet.ts). */
  readonly fleet: FleetState;
}
