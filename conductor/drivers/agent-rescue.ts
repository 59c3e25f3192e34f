/**
 * The `agent` rescue interface (Ironic's AgentRescue): rescue powers the node off, boots the agent ramdisk and
 * waits (`rescue wait`); the agent's first heartbeat there gets rescue.finalize_rescue with the crypt hash of the
 * rescue password (the conductor never keeps or sends the plain text: instance_info holds only
 * hashed_rescue_password, made with [conductor] rescue_password_hash_algorithm), then the ramdisk boot files are
 * removed and the node is `rescue`. Unrescue powers off, prepares the instance boot and powers on: `active`.
 */
import { run } from '../../common/exec.js';
import { errorMessage } from '../../common/errors.js';
import type { ConductorConfig } from '../config.js';
import type { ConductorContext } from '../context.js';
import { InvalidParameterValue } from '../errors.js';
import { agentClient, agentEndpoint } from '../orchestration/agent-node.js';
import { bootIntoRamdisk } from '../orchestration/direct.js';
import { commandErrorText } from '../agent-client.js';
import { nodePowerAction } from '../services/power.js';
import type { RescueInterface, NodeTask } from './index.js';

/** crypt(3) of the password: SHA-256 ($5$) or SHA-512 ($6$) with a random salt, via openssl (password on stdin). */
export async function hashRescuePassword(password: string, algorithm: ConductorConfig['rescue_password_hash_algorithm']):
  Promise<string> {
  if (/[\n\r]/.test(password)) throw new InvalidParameterValue('The rescue password must not contain line breaks.');
  const r = await run('openssl', ['passwd', algorithm === 'sha512' ? '-6' : '-5', '-stdin'], { input: `${password}\n`, quiet: true });
  return r.stdout.trim();
}

export interface AgentRescueInterface extends RescueInterface {
  /** From the heartbeat in `rescue wait`: hand the password to the agent and finish rescuing. */
  finalizeRescue(task: NodeTask): Promise<void>;
}

export function isAgentRescue(i: unknown): i is AgentRescueInterface {
  return !!i && typeof (i as Partial<AgentRescueInterface>).finalizeRescue === 'function';
}

export function createAgentRescue(ctx: ConductorContext): AgentRescueInterface {
  return {
    name: 'agent',
    validate() {},
    async rescue(task) {
      if (typeof task.node.instance_info.hashed_rescue_password !== 'string') {
        throw new InvalidParameterValue(`Node ${task.node.uuid} has no hashed rescue password in instance_info.`);
      }
      await task.driver.boot.cleanUpInstance(task.driverNode());
      await bootIntoRamdisk(ctx, task);
      return 'wait';
    },
    async finalizeRescue(task) {
      const hash = task.node.instance_info.hashed_rescue_password;
      if (typeof hash !== 'string') throw new InvalidParameterValue('Agent rescue requires hashed_rescue_password in instance_info');
      const res = await agentClient(ctx).command(agentEndpoint(task), 'rescue.finalize_rescue',
        { rescue_password: hash, hashed: true }, { wait: true });
      if (res.command_status !== 'SUCCEEDED') {
        throw new Error(`Agent failed to finalize rescue: ${commandErrorText(res)}`);
      }
      await task.driver.boot.cleanUpRamdisk(task.driverNode()).catch((e: unknown) =>
        ctx.log.warn({ node: task.node.uuid, err: errorMessage(e) }, 'could not remove the rescue ramdisk boot files'));
    },
    async unrescue(task) {
      await nodePowerAction(task, 'power off');
      await task.driver.boot.prepareInstance(task.driverNode());
      await task.driver.management.setBootDevice(task.driverNode(), 'disk', true);
      await nodePowerAction(task, 'power on');
    },
  };
}
