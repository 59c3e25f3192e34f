/**
 * system.lockdown: Ironic uses it for nodes that must not be powered off. The API
 * and the heartbeats stop, every NIC goes down and the agent idles. Outside the ramdisk the NICs are the host's,
 * so the agent process just ends instead.
 */
import { readdir } from 'node:fs/promises';
import { z } from 'zod';
import { run } from '../../common/exec.js';
import { errorMessage } from '../../common/errors.js';
import { getLogger } from '../../common/logger.js';
import { inRamdisk } from '../../common/ramdisk.js';
import { defineCommand } from '../commands/registry.js';
import type { ExtensionCommands } from '../commands/types.js';

export const extension = 'system';
const log = getLogger('lockdown');

async function nicsDown(): Promise<void> {
  for (const nic of await readdir('/sys/class/net').catch(() => [] as string[])) {
    if (nic === 'lo') continue;
    await run('ip', ['link', 'set', nic, 'down'], { timeoutMs: 10_000 }).catch((e: unknown) =>
      log.warn({ nic, err: errorMessage(e) }, 'could not bring the interface down'),
    );
  }
}

export const commands: ExtensionCommands = {
  lockdown: defineCommand({
    async: false,
    params: z.object({}).loose(),
    run: async (_p, ctx) => {
      if (!inRamdisk()) {
        ctx.log.warn('lockdown outside the ramdisk: ending the agent process, host NICs untouched');
        void ctx.agent.stopServing('lockdown', { exit: true });
        return null;
      }
      void ctx.agent
        .stopServing('lockdown', { exit: false })
        .then(nicsDown)
        .then(() => log.warn('locked down: API stopped, NICs down'));
      return null;
    },
  }),
};
