/**
 * What the conductor sends the agent about a node, and how it reaches the agent: the endpoint from
 * driver_internal_info (agent_url, token, pinned auto-TLS certificate) and the node/ports as dicts with
 * secrets masked (Ironic's node.as_dict(secure=True); the configdrive stays for write_image).
 */
import type { ConductorContext } from '../context.js';
import { AgentClient, type AgentEndpoint } from '../agent-client.js';
import type { NodeTask } from '../drivers/index.js';
import { isForbiddenKey } from '../../common/safe-json.js';

const SECRET_KEY = /password|secret|token|private|_key$|credential/i;
const MASK = '******';

function masked(obj: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) if (!isForbiddenKey(k)) out[k] = SECRET_KEY.test(k) && v !== null && v !== undefined ? MASK : v;
  return out;
}

export function agentEndpoint(task: NodeTask): AgentEndpoint {
  const dii = task.node.driver_internal_info;
  const di = task.node.driver_info;
  const verify = di.agent_verify_ca;
  return {
    url: typeof dii.agent_url === 'string' ? dii.agent_url : '',
    token: typeof dii.agent_secret_token === 'string' ? dii.agent_secret_token : null,
    verifyCa: typeof dii.agent_verify_ca === 'string' ? dii.agent_verify_ca : null,
    ...(typeof verify === 'string' || typeof verify === 'boolean' ? { verify } : {}),
  };
}

/** The node dict for step commands; `withConfigdrive` keeps instance_info.configdrive (write_image needs it). */
export function agentNodeDict(task: NodeTask, withConfigdrive = false): Record<string, unknown> {
  const n = task.node;
  const ii = { ...n.instance_info };
  if (!withConfigdrive && 'configdrive' in ii) ii.configdrive = MASK;
  const dii = masked(n.driver_internal_info);
  return {
    uuid: n.uuid, name: n.name, driver: n.driver, provision_state: n.provision_state,
    properties: n.properties, instance_info: ii, driver_info: masked(n.driver_info),
    driver_internal_info: dii, target_raid_config: n.target_raid_config, raid_config: n.raid_config,
    extra: n.extra, instance_uuid: n.instance_uuid, resource_class: n.resource_class, traits: n.traits,
  };
}

export function agentPortDicts(task: NodeTask): Record<string, unknown>[] {
  return task.ports.map((p) => ({
    uuid: p.uuid, address: p.address, pxe_enabled: p.pxe_enabled, node_uuid: task.node.uuid,
    local_link_connection: p.local_link_connection, physical_network: p.physical_network, extra: p.extra,
  }));
}

const clients = new WeakMap<ConductorContext, AgentClient>();

/** One agent client per conductor, configured from [agent] settings. */
export function agentClient(ctx: ConductorContext): AgentClient {
  let c = clients.get(ctx);
  if (!c) {
    const a = ctx.config.agent;
    c = new AgentClient({
      commandTimeoutMs: a.command_timeout * 1000,
      maxAttempts: a.max_command_attempts,
      retryIntervalMs: a.command_retry_interval * 1000,
      pollIntervalMs: a.command_wait_interval * 1000,
      pollAttempts: a.command_wait_attempts,
      maxResponseBytes: a.max_response_bytes,
      maxLogBytes: a.max_log_bytes,
    });
    clients.set(ctx, c);
    const client = c;
    ctx.tasks.onAgentGone = (ca) => { void client.release(ca); };
  }
  return c;
}
