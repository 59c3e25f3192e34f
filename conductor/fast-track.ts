/**
 * Fast-track (Ironic's [deploy]fast_track, conductor/utils.py fast_track_able / agent_is_alive / is_fast_track):
 * a ramdisk that is already up and heartbeating is used as it is, with no power cycle and no network boot.
 *  - enabled: the node's driver_info.fast_track (a strict boolean string) overrides the config;
 *  - able: enabled, and the node has no last_error (a recent failure always gets a clean boot);
 *  - usable now: able, the BMC says power on, and the agent heartbeated (agent_url recorded) within
 *    fast_track_timeout seconds.
 */
import type { ConductorContext } from './context.js';
import { InvalidParameterValue } from './errors.js';
import type { NodeTask } from './drivers/index.js';
import type { NodeRecord } from './store/types.js';

const TRUE = new Set(['1', 't', 'true', 'on', 'y', 'yes']);
const FALSE = new Set(['0', 'f', 'false', 'off', 'n', 'no']);

export function fastTrackEnabled(ctx: ConductorContext, node: Pick<NodeRecord, 'driver_info'>): boolean {
  const v = node.driver_info.fast_track;
  if (v === undefined || v === null) return ctx.config.deploy.fast_track;
  if (typeof v === 'boolean') return v;
  const s = String(v).trim().toLowerCase();
  if (TRUE.has(s)) return true;
  if (FALSE.has(s)) return false;
  throw new InvalidParameterValue(`Unrecognized value '${String(v)}', acceptable values are: ` +
    `'0', '1', 'f', 'false', 'n', 'no', 'off', 'on', 't', 'true', 'y', 'yes'`);
}

/** Enabled and no recent failure: the agent token and URL survive the end of cleaning/deploy. */
export function fastTrackAble(ctx: ConductorContext, node: NodeRecord): boolean {
  let enabled: boolean;
  try {
    enabled = fastTrackEnabled(ctx, node);
  } catch {
    return false; // a malformed driver_info flag never enables it; validation reports it elsewhere
  }
  const dii = node.driver_internal_info;
  return enabled && node.last_error === null && !dii.firmware_updates && !dii.redfish_fw_updates;
}

/** The agent recorded a callback URL and heartbeated within fast_track_timeout seconds. */
export function agentIsAlive(ctx: ConductorContext, node: NodeRecord, now = Date.now()): boolean {
  const dii = node.driver_internal_info;
  if (typeof dii.agent_url !== 'string' || !dii.agent_url) return false;
  const last = typeof dii.agent_last_heartbeat === 'string' ? Date.parse(dii.agent_last_heartbeat) : Number.NaN;
  if (!Number.isFinite(last)) return false;
  return now - last <= ctx.config.deploy.fast_track_timeout * 1000;
}

/** Whether this operation may use the running agent as it is (asks the BMC for the power state). */
export async function isFastTrack(ctx: ConductorContext, task: NodeTask): Promise<boolean> {
  if (!fastTrackAble(ctx, task.node)) return false;
  if (!agentIsAlive(ctx, task.node)) {
    ctx.log.debug({ node: task.node.uuid, last: task.node.driver_internal_info.agent_last_heartbeat },
      'fast-track able, but the agent does not seem to be running');
    return false;
  }
  const power = await task.driver.power.getPowerState(task.driverNode()).catch(() => 'error');
  return power === 'power on';
}
