/**
 * poll: get_hardware_info (the hardware managers' inventory), get_node_info
 * (what the lookup returned), set_node_info (standalone mode only, as IPA).
 */
import { z } from 'zod';
import { dispatchToManagers } from '../../hardware-managers/dispatch.js';
import { setHardwareContext } from '../../hardware-managers/context.js';
import { defineCommand } from '../commands/registry.js';
import type { ExtensionCommands } from '../commands/types.js';
import { InvalidCommandError } from '../../protocol/agent-api.js';
import type { LookupConfig, LookupNode } from '../../protocol/lookup.js';

export const extension = 'poll';

const nodeInfo = z.object({
  node: z.looseObject({ uuid: z.string().min(1) }),
  config: z.looseObject({ heartbeat_timeout: z.number().positive() }),
});

export const commands: ExtensionCommands = {
  get_hardware_info: defineCommand({
    async: false,
    params: z.object({}).loose(),
    run: () => dispatchToManagers('listHardwareInfo'),
  }),
  get_node_info: defineCommand({
    async: false,
    params: z.object({}).loose(),
    run: async (_p, ctx) => {
      const { node, config } = ctx.agent.nodeInfo();
      // The token authenticates the conductor to us; never echo it back.
      return { node, config: config && config.agent_token ? { ...config, agent_token: '******' } : config };
    },
  }),
  set_node_info: defineCommand({
    async: false,
    params: z.object({ node_info: nodeInfo }),
    run: async (p, ctx) => {
      if (!ctx.agent.standalone) throw new InvalidCommandError('set_node_info is only allowed in standalone mode');
      const info = p.node_info as unknown as { node: LookupNode; config: LookupConfig };
      ctx.agent.setNodeInfo(info);
      setHardwareContext({ node: info.node });
      return null;
    },
  }),
};
