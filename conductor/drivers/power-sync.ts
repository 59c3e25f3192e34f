/**
 * One node's periodic power-state sync, with Ironic's default semantics (force_power_state_during_sync=False):
 * the hardware is the truth. A change made behind the conductor's back is recorded, never undone; repeated
 * failures to read the state end in maintenance with fault "power failure". The caller (conductor/periodic.ts)
 * owns the node lock, the store write and the failure counter; this decides and explains.
 */
import { errorMessage } from '../../common/errors.js';
import type { DriverNode, PowerInterface, PowerState } from './types.js';

export interface PowerSyncResult {
  /** The recorded state should be updated to `to`. */
  changed: boolean;
  from: string | null;
  to: PowerState | null;
  /** Consecutive read failures after this run (0 after a successful read). */
  failures: number;
  /** Failures reached the limit: put the node in maintenance with fault "power failure". */
  maintenance: boolean;
  /** Node history text: INFO for a change seen outside the conductor, ERROR for maintenance. None for the first read. */
  event?: { message: string; severity: 'INFO' | 'ERROR' };
  error?: string;
}

export async function syncPowerState(
  node: DriverNode,
  power: PowerInterface,
  opts: { failures?: number; maxRetries?: number } = {},
): Promise<PowerSyncResult> {
  const from = node.power_state ?? null;
  let actual: PowerState;
  try {
    actual = await power.getPowerState(node);
    if (actual === 'error') throw new Error('the power interface reported an error state');
  } catch (e) {
    const failures = (opts.failures ?? 0) + 1;
    const max = Math.max(1, opts.maxRetries ?? 3);
    const error = errorMessage(e);
    if (failures < max) return { changed: false, from, to: null, failures, maintenance: false, error };
    const message = `During sync_power_state, max retries exceeded for node ${node.uuid}: could not read its power ` +
      `state ${failures} times in a row (recorded ${String(from)}). Switching the node to maintenance with fault ` +
      `"power failure". Last error: ${error}`;
    return { changed: from !== null, from, to: null, failures, maintenance: true, event: { message, severity: 'ERROR' }, error };
  }
  if (actual === from) return { changed: false, from, to: actual, failures: 0, maintenance: false };
  if (from === null) return { changed: true, from, to: actual, failures: 0, maintenance: false };
  return {
    changed: true, from, to: actual, failures: 0, maintenance: false,
    event: {
      severity: 'INFO',
      message: `During sync_power_state, node ${node.uuid} was found "${actual}" but recorded "${from}" (changed outside ` +
        `the conductor). Updating the recorded state to "${actual}"; the hardware is left as it is.`,
    },
  };
}
