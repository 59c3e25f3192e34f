/**
 * The heartbeat of an agent in `rescue wait` (Ironic's _finalize_rescue): the node's rescue interface hands the
 * password hash to the agent; the password leaves instance_info, the node becomes `rescue`. A failure ends in
 * `rescue failed` with the reason, and the node is powered off.
 */
import { errorMessage } from '../../common/errors.js';
import type { ConductorContext } from '../context.js';
import { isAgentRescue } from '../drivers/agent-rescue.js';
import type { NodeTask } from '../drivers/index.js';
import { AgentInProgress } from '../agent-client.js';
import { finishRescue } from '../services/provision.js';
import { wipeAgentToken } from '../services/power.js';
import { powerOffAfterFailure } from './direct.js';

export async function continueRescue(ctx: ConductorContext, task: NodeTask): Promise<void> {
  const rescue = task.driver.find('rescue');
  if (!isAgentRescue(rescue)) return;
  try {
    await rescue.finalizeRescue(task);
  } catch (e) {
    if (e instanceof AgentInProgress) return; // busy agent: the next heartbeat tries again
    const msg = `Failed to finalize rescue on node ${task.node.uuid}: ${errorMessage(e)}`;
    ctx.log.warn({ node: task.node.uuid, err: msg }, 'rescue failed');
    await task.fire('fail', { lastError: msg });
    await wipeAgentToken(task).catch(() => undefined);
    await powerOffAfterFailure(ctx, task);
    return;
  }
  const { rescue_password: _p, hashed_rescue_password: _h, ...info } = task.node.instance_info;
  await task.save({ instance_info: info });
  await finishRescue(task);
  ctx.log.info({ node: task.node.uuid }, 'node rescued');
}
