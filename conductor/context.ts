/**
 * What every service function gets: the validated config, the store, the task manager, this conductor's
 * host name and everything else that lives as long as one conductor (its drivers, boot server, heartbeat
 * bookkeeping). One object per running conductor: no conductor module keeps state of its own, so tests may run
 * several conductors in one process.
 */
import type { Logger } from '../common/logger.js';
import type { BootServer } from './boot-server.js';
import type { ConductorConfig } from './config.js';
import type { DriverRegistry } from './drivers/index.js';
import type { FleetState } from './fleet.js';
import type { TaskManager } from './locks.js';
import type { HeartbeatHub } from './orchestration/hooks.js';
import type { Store } from './store/types.js';

export interface ConductorContext {
  readonly config: ConductorConfig;
  readonly store: Store;
  readonly tasks: TaskManager;
  readonly host: string;
  readonly log: Logger;
  /** How the API is served: its scheme, and the CA PEM ramdisks verify it with (conductor/api-tls.ts). */
  readonly api?: { readonly scheme: 'http' | 'https'; readonly caPem?: string | undefined } | undefined;
  /** This conductor's hardware types and (configured) interface implementations. */
  readonly drivers: DriverRegistry;
  /** The boot server (iPXE scripts, image cache) when boot.http_root is configured. */
  readonly bootServer: BootServer | undefined;
  /** Heartbeat hand-over from the API to the orchestration, and its per-node bookkeeping. */
  readonly heartbeats: HeartbeatHub<ConductorContext>;
  /** Per node: consecutive power-state read failures of the periodic power sync. */
  readonly powerSyncFailures: Map<string, number>;
  /** Concurrency limits, the worker pool and BMC call bounds (conductor/fleet.ts). */
  readonly fleet: FleetState;
}
