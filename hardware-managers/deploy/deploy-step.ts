/**
 * The generic hardware manager's `write_image` deploy step: Ironic sends image_info and configdrive as step
 * args (deploy.execute_deploy_step), and the agent does what standby.prepare_image does.
 */
import type { StepCall } from '../types.js';
import { prepareImage } from './prepare.js';

export async function writeImageStep(call: StepCall): Promise<Record<string, unknown>> {
  const { image_info: info, configdrive } = call.args;
  const r = await prepareImage(info, typeof configdrive === 'string' ? configdrive : null, {
    node: call.node,
    ...(call.progress ? { progress: call.progress } : {}),
    ...(call.signal ? { signal: call.signal } : {}),
  });
  return { result: r.message, device: r.device, partition_uuids: r.uuids };
}
