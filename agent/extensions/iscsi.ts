/**
 * iscsi.start_iscsi_target / iscsi.stop_iscsi_target (IPA's extensions/iscsi.py): the root device exported over
 * iSCSI so the conductor writes the image itself (the `iscsi` deploy interface). Params as IPA took them: iqn,
 * portal_port (3260), wipe_disk_metadata, and CHAP username/password (both or neither).
 *
 * The root device is the hardware managers' choice and passes the same write guard (ipa-device-allowlist, nothing
 * mounted) as any image write. Outside the ramdisk the portal binds 127.0.0.1 only: a host's agent never exports
 * a disk to the network.
 */
import { z } from 'zod';
import { run } from '../../common/exec.js';
import { fixGptBackup } from '../../block/disk.js';
import { destroyMetadata } from '../../block/wipe.js';
import { hardwareContext } from '../../hardware-managers/context.js';
import { assertSafeToWrite, rootDevice } from '../../hardware-managers/deploy/hw.js';
import { CommandExecutionError } from '../../protocol/agent-api.js';
import { defineCommand } from '../commands/registry.js';
import type { ExtensionCommands } from '../commands/types.js';
import type { AgentLifecycle } from '../lifecycle.js';
import { startTgtTarget, type TgtTarget } from '../iscsi/tgt.js';

export const extension = 'iscsi';

export const DEFAULT_PORTAL_PORT = 3260;
/** RFC 3720 iqn names; only characters tgtadm and QEMU options take as they are. */
export const IQN_RE = /^iqn\.\d{4}-\d{2}\.[a-z0-9][a-z0-9.-]*(:[A-Za-z0-9._:-]+)?$/;

/** The running target of each agent (an agent exports one disk at a time; keyed per agent, no module state). */
const targets = new WeakMap<AgentLifecycle, TgtTarget>();

const Params = z.looseObject({
  iqn: z.string().max(223).regex(IQN_RE, 'iqn must be an iqn.YYYY-MM.reversed.domain[:name] name').nullish(),
  portal_port: z.coerce.number().int().min(1).max(65535).nullish(),
  wipe_disk_metadata: z.boolean().nullish(),
  username: z.string().regex(/^[A-Za-z0-9._@:-]{1,64}$/, 'username: 1-64 of A-Z a-z 0-9 . _ @ : -').nullish(),
  password: z.string().regex(/^[\x21-\x7e]{12,255}$/, 'password: 12-255 printable characters, no spaces').nullish(),
}).refine((p) => !p.username === !p.password, { message: 'username and password go together (CHAP)', path: ['password'] });

async function deviceSize(dev: string): Promise<number> {
  return Number((await run('blockdev', ['--getsize64', dev], { quiet: true })).stdout.trim());
}

export const commands: ExtensionCommands = {
  start_iscsi_target: defineCommand({
    async: false,
    params: Params,
    async run(p, ctx) {
      const hw = hardwareContext();
      const dev = await rootDevice(hw.node);
      await assertSafeToWrite(dev);
      const old = targets.get(ctx.agent);
      if (old) {
        // IPA replaced a running target too: the conductor retries a deploy with a fresh iqn and secret.
        targets.delete(ctx.agent);
        await old.stop();
      }
      if (p.wipe_disk_metadata) await destroyMetadata(dev, await deviceSize(dev), true);
      const iqn = p.iqn ?? `iqn.2008-10.org.openstack:${hw.node?.uuid ?? 'baremetal-ts'}`;
      const host = hw.inRamdisk ? '0.0.0.0' : '127.0.0.1';
      const port = p.portal_port ?? DEFAULT_PORTAL_PORT;
      let target: TgtTarget;
      try {
        target = await startTgtTarget({ iqn, backingStore: dev, host, port,
          chap: p.username && p.password ? { username: p.username, password: p.password } : undefined });
      } catch (e) {
        throw new CommandExecutionError(`Failed to start the iSCSI target for ${dev}: ${e instanceof Error ? e.message : String(e)}`);
      }
      targets.set(ctx.agent, target);
      ctx.log.info({ iqn, dev, portal: `${host}:${port}`, chap: Boolean(p.username) }, 'iSCSI target started');
      return { iscsi_target_iqn: iqn };
    },
  }),
  stop_iscsi_target: defineCommand({
    async: false,
    params: z.looseObject({}),
    async run(_p, ctx) {
      const t = targets.get(ctx.agent);
      if (!t) return { iscsi_target_iqn: null };
      targets.delete(ctx.agent);
      await t.stop();
      // The conductor wrote an image that may be smaller than the disk: its GPT backup header sits mid-disk, where
      // the firmware and partitioners look for it in vain. Moved to the end as the direct deploy's write does
      // (sgdisk -e; nothing happens for MBR disks or an empty one).
      await fixGptBackup(t.backingStore);
      ctx.log.info({ iqn: t.iqn }, 'iSCSI target stopped');
      return { iscsi_target_iqn: t.iqn };
    },
  }),
};
