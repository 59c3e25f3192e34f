/**
 * standby's power commands: power_off, run_image (reboot), sync. The image
 * commands of the same extension live in standby-image.ts.
 * Safety: outside the ramdisk (no marker file) nothing powers the machine off; the agent process ends instead,
 * as if the node had gone down.
 */
import { writeFile } from 'node:fs/promises';
import { z } from 'zod';
import { run } from '../../common/exec.js';
import { errorMessage } from '../../common/errors.js';
import { inRamdisk } from '../../common/ramdisk.js';
import { defineCommand } from '../commands/registry.js';
import type { CommandContext, ExtensionCommands } from '../commands/types.js';
import { SystemRebootError } from '../../protocol/agent-api.js';

export const extension = 'standby';

/** Ironic sends no params to these; extra keys are ignored rather than failing the power-off. */
const noParams = z.object({}).loose();

export async function syncFilesystems(ctx: CommandContext): Promise<void> {
  await run('sync', [], { timeoutMs: 300_000 });
  ctx.log.info('filesystems synced');
}

async function shutdown(kind: 'poweroff' | 'reboot', ctx: CommandContext): Promise<null> {
  await syncFilesystems(ctx);
  if (!inRamdisk()) {
    ctx.log.warn({ action: kind }, 'not inside the ramdisk: ending the agent process instead of the machine');
    void ctx.agent.stopServing(kind === 'poweroff' ? 'power_off' : 'reboot', { exit: true });
    return null;
  }
  // IPA: run the tool; if it fails or only says "ignoring request", fall back to the kernel's sysrq trigger.
  let fallback = false;
  try {
    const r = await run(kind, ['-f'], { timeoutMs: 60_000 });
    fallback = /ignoring request/i.test(r.stdout + r.stderr);
  } catch (e) {
    ctx.log.warn({ err: errorMessage(e) }, `${kind} failed; using /proc/sysrq-trigger`);
    fallback = true;
  }
  if (fallback) {
    try {
      await writeFile('/proc/sysrq-trigger', kind === 'poweroff' ? 'o' : 'b');
    } catch (e) {
      throw new SystemRebootError(`${kind} and the sysrq fallback both failed: ${errorMessage(e)}`);
    }
  }
  return null;
}

export const commands: ExtensionCommands = {
  power_off: defineCommand({ async: true, params: noParams, run: (_p, ctx) => shutdown('poweroff', ctx) }),
  run_image: defineCommand({ async: true, params: noParams, run: (_p, ctx) => shutdown('reboot', ctx) }),
  sync: defineCommand({
    async: false,
    params: noParams,
    run: async (_p, ctx) => {
      await syncFilesystems(ctx);
      return null;
    },
  }),
};
