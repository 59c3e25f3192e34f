/**
 * Ramdisk logs ([agent]deploy_logs_collect): on failure (or always) the agent's log.collect_system_logs tarball
 * is stored under <data_dir>/agent-logs/<node>_<time>.tar.gz for the operator.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage } from '../../common/errors.js';
import type { ConductorContext } from '../context.js';
import type { NodeTask } from '../drivers/index.js';
import { agentClient, agentEndpoint } from './agent-node.js';

export async function collectLogsOnFailure(ctx: ConductorContext, task: NodeTask, force = false): Promise<string | null> {
  const mode = ctx.config.agent.deploy_logs_collect;
  if (mode === 'never' || (!force && mode !== 'on_failure' && mode !== 'always')) return null;
  if (typeof task.node.driver_internal_info.agent_url !== 'string') return null;
  try {
    const res = await agentClient(ctx).collectSystemLogs(agentEndpoint(task));
    const logs = (res.command_result as { system_logs?: unknown } | null)?.system_logs;
    if (typeof logs !== 'string') return null;
    const dir = join(ctx.config.data_dir, 'agent-logs');
    await mkdir(dir, { recursive: true });
    const file = join(dir, `${task.node.uuid}_${new Date().toISOString().replace(/[:.]/g, '-')}.tar.gz`);
    await writeFile(file, Buffer.from(logs, 'base64'));
    ctx.log.info({ node: task.node.uuid, file }, 'agent logs stored');
    return file;
  } catch (e) {
    ctx.log.warn({ node: task.node.uuid, err: errorMessage(e) }, 'could not collect agent logs');
    return null;
  }
}
