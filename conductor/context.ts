/**
 * What every service function gets: the validated config, the store, the task manager and this conductor's
 * host name. One object per running conductor (tests may run several in one process).
 */
import type { Logger } from '../common/logger.js';
import type { ConductorConfig } from './config.js';
import type { TaskManager } from './locks.js';
import type { Store } from './store/types.js';

export interface ConductorContext {
  readonly config: ConductorConfig;
  readonly store: Store;
  readonly tasks: TaskManager;
  readonly host: string;
  readonly log: Logger;
  /** How the API is served: its scheme, and the CA PEM ramdisks verify it with (conductor/api-tls.ts). */
  readonly api?: { readonly scheme: 'http' | 'https'; readonly caPem?: string | undefined } | undefined;
}
