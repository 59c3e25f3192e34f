/**
 * rescue.finalize_rescue (IPA's extensions/rescue.py): the conductor hands over the rescue password, already
 * crypt-hashed (`hashed: true`, SHA-256/512 crypt as Ironic's [conductor]rescue_password_hash_algorithm), or plain
 * (hashed here with SHA-512 crypt). The agent writes the hash where IPA does
 * (etc/ipa-rescue-config/ipa-rescue-password) and sets it for the `rescue` user in etc/shadow (a root login:
 * rescue mode is for repairing the node), then stops serving its API and heartbeats, as IPA does.
 *
 * Root: `/` only inside the ramdisk. On someone's host the agent must never touch /etc/shadow: it writes under
 * ipa-rescue-root when that is set, and refuses otherwise.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { z } from 'zod';
import { run } from '../../common/exec.js';
import { inRamdisk } from '../../common/ramdisk.js';
import { CommandExecutionError } from '../../protocol/agent-api.js';
import { defineCommand } from '../commands/registry.js';
import type { ExtensionCommands } from '../commands/types.js';

export const extension = 'rescue';
export const RESCUE_USER = 'rescue';
export const PASSWORD_FILE = 'etc/ipa-rescue-config/ipa-rescue-password';
/** crypt(3) SHA-256 ($5$) / SHA-512 ($6$), optional rounds=N$, salt up to 16 chars: no ':' or newline can pass. */
const CRYPT_HASH = /^\$(5|6)\$(rounds=\d{4,9}\$)?[./0-9A-Za-z]{1,16}\$[./0-9A-Za-z]{43,86}$/;

/** Where finalize_rescue writes: `/` in the ramdisk, else the configured root, else nowhere. */
export function rescueRoot(configured: string | null | undefined): string | null {
  if (configured) return resolve(configured);
  return inRamdisk() ? '/' : null;
}

async function writeAtomic(path: string, text: string, mode: number): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.bmts-tmp`;
  await writeFile(tmp, text, { mode });
  await rename(tmp, path);
}

async function readOr(path: string, fallback: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    return fallback;
  }
}

/** Sets `user`'s hash in root/etc/shadow (adding the user to passwd/shadow when missing). */
export async function setShadowPassword(root: string, user: string, hash: string): Promise<void> {
  const days = Math.floor(Date.now() / 86_400_000);
  const passwdPath = join(root, 'etc/passwd');
  const passwd = await readOr(passwdPath, 'root:x:0:0:root:/root:/bin/sh\n');
  if (!passwd.split('\n').some((l) => l.startsWith(`${user}:`))) {
    await writeAtomic(passwdPath, `${passwd.replace(/\n?$/, '\n')}${user}:x:0:0:rescue user:/root:/bin/sh\n`, 0o644);
  }
  const shadowPath = join(root, 'etc/shadow');
  const lines = (await readOr(shadowPath, '')).split('\n').filter((l) => l !== '');
  const entry = `${user}:${hash}:${days}:0:99999:7:::`;
  const i = lines.findIndex((l) => l.startsWith(`${user}:`));
  if (i >= 0) lines[i] = entry;
  else lines.push(entry);
  await writeAtomic(shadowPath, `${lines.join('\n')}\n`, 0o600);
}

const Params = z.object({
  rescue_password: z.string().min(1, 'rescue_password must not be empty').max(4096),
  hashed: z.boolean().optional(),
}).loose().refine((p) => !p.hashed || CRYPT_HASH.test(p.rescue_password),
  { message: 'rescue_password is not a SHA-256 or SHA-512 crypt hash', path: ['rescue_password'] });

export const commands: ExtensionCommands = {
  finalize_rescue: defineCommand({
    async: false,
    params: Params,
    run: async (p, ctx) => {
      const root = rescueRoot(ctx.agent.rescueRoot);
      if (!root) {
        throw new CommandExecutionError('finalize_rescue outside the ramdisk would change this host\'s /etc/shadow: refused. ' +
          'Set ipa-rescue-root to a directory to write the rescue password there instead.');
      }
      let hash: string;
      if (p.hashed) {
        hash = p.rescue_password; // checked by Params: a crypt hash cannot carry ':' or a newline into etc/shadow
      } else {
        hash = (await run('openssl', ['passwd', '-6', '-stdin'], { input: `${p.rescue_password}\n`, quiet: true })).stdout.trim();
      }
      await writeAtomic(join(root, PASSWORD_FILE), hash, 0o600);
      await setShadowPassword(root, RESCUE_USER, hash);
      ctx.log.warn({ root, user: RESCUE_USER }, 'rescue password set; the agent stops serving (rescue mode)');
      // As IPA: no more API or heartbeats. Outside the ramdisk the process ends (nothing else to hand over to).
      void ctx.agent.stopServing('rescue', { exit: !inRamdisk() });
      return null;
    },
  }),
};
