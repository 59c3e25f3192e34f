/**
 * standby's image commands: prepare_image (async), get_partition_uuids (sync),
 * and cache_image (older IPA: write the image without the config drive). The power commands are in standby.ts.
 */
import { z } from 'zod';
import { hardwareContext } from '../../hardware-managers/context.js';
import { defineCommand } from '../commands/registry.js';
import type { ExtensionCommands } from '../commands/types.js';
import { AgentError } from '../../protocol/agent-api.js';
import { getPartitionUuids, ImageInfoSchema, prepareImage, PrepareImageParams, validateImageInfo } from '../../hardware-managers/deploy/prepare.js';

export const extension = 'standby';

/** Params are checked up front (400 InvalidCommandParamsError, no command started), as IPA's validator does. */
const checkInfo = (p: { image_info: unknown }, ctx: z.RefinementCtx): void => {
  try {
    validateImageInfo(p.image_info);
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: e instanceof AgentError ? e.details : String(e) });
  }
};
const Prepare = PrepareImageParams.superRefine(checkInfo);
const CacheParams = z.looseObject({ image_info: ImageInfoSchema, force: z.boolean().nullish() }).superRefine(checkInfo);

export const commands: ExtensionCommands = {
  prepare_image: defineCommand({
    async: true,
    params: Prepare,
    async run(p, ctx) {
      const r = await prepareImage(p.image_info, p.configdrive, {
        node: hardwareContext().node,
        progress: ctx.progress,
        signal: ctx.signal,
      });
      return r.message;
    },
  }),
  cache_image: defineCommand({
    async: true,
    params: CacheParams,
    async run(p, ctx) {
      const info = { ...p.image_info, configdrive: null };
      const r = await prepareImage(info, null, { node: hardwareContext().node, progress: ctx.progress, signal: ctx.signal });
      return `image (${info.id}) cached to device ${r.device}`;
    },
  }),
  get_partition_uuids: defineCommand({
    async: false,
    params: z.looseObject({}),
    run: async () => getPartitionUuids(),
  }),
};
