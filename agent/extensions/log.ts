/**
 * log.collect_system_logs: a base64 tar.gz of the agent's log, dmesg, the
 * journal where there is one, and a few system views (network, disks, mounts, processes). Every piece is best
 * effort: a tool that is missing or fails is noted in the tarball's index, never a failed command.
 */
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { have, run } from '../../common/exec.js';
import { errorMessage } from '../../common/errors.js';
import { defineCommand } from '../commands/registry.js';
import type { ExtensionCommands } from '../commands/types.js';

export const extension = 'log';

/** file name in the tarball → program and arguments. */
const COMMANDS: [string, string, string[]][] = [
  ['dmesg', 'dmesg', []],
  // bounded: on a long-running host the whole journal can be gigabytes
  ['journal', 'journalctl', ['--no-pager', '--full', '-b', '-n', '20000']],
  ['ip_addr', 'ip', ['addr']],
  ['ip_route', 'ip', ['route']],
  ['lsblk', 'lsblk', ['-a', '-o', 'NAME,KNAME,SIZE,TYPE,FSTYPE,LABEL,UUID,MOUNTPOINT,MODEL,SERIAL']],
  ['df', 'df', ['-a']],
  ['mount', 'mount', []],
  ['ps', 'ps', ['aux']],
  ['efibootmgr', 'efibootmgr', ['-v']],
];

const FILES: [string, string][] = [
  ['mdstat', '/proc/mdstat'],
  ['cmdline', '/proc/cmdline'],
  ['meminfo', '/proc/meminfo'],
];

export async function collectSystemLogs(agentLogFile: string | null): Promise<string> {
  const work = await mkdtemp(join(tmpdir(), 'bmts-logs-'));
  const dir = join(work, 'logs');
  const index: string[] = [];
  try {
    await run('mkdir', ['-p', dir]);
    const agentLogs = new Set([agentLogFile, '/var/log/baremetal-agent.log']);
    let n = 0;
    for (const f of agentLogs) {
      if (!f || !existsSync(f)) continue;
      const name = n++ === 0 ? 'baremetal-agent.log' : `baremetal-agent-${n}.log`;
      await copyFile(f, join(dir, name)).then(
        () => index.push(`${name}: ${f}`),
        (e: unknown) => index.push(`${name}: cannot copy ${f}: ${errorMessage(e)}`),
      );
    }
    for (const [name, prog, args] of COMMANDS) {
      if (!(await have(prog))) {
        index.push(`${name}: ${prog} not installed`);
        continue;
      }
      try {
        const r = await run(prog, args, { timeoutMs: 30_000, quiet: true, okCodes: [0, 1] });
        await writeFile(join(dir, name), r.stdout + (r.stderr ? `\n--- stderr ---\n${r.stderr}` : ''));
        index.push(`${name}: ${prog} ${args.join(' ')} (exit ${r.exitCode})`);
      } catch (e) {
        index.push(`${name}: ${prog} failed: ${errorMessage(e)}`);
      }
    }
    for (const [name, path] of FILES) {
      // procfs files report size 0, so copyFile would copy nothing: read them instead.
      await readFile(path).then((data) => writeFile(join(dir, name), data)).then(
        () => index.push(`${name}: ${path}`),
        () => index.push(`${name}: ${path} not present`),
      );
    }
    await writeFile(join(dir, 'INDEX'), `${index.join('\n')}\n`);
    const tarball = join(work, 'logs.tar.gz');
    await run('tar', ['-czf', tarball, '-C', dir, '.'], { timeoutMs: 120_000 });
    return (await readFile(tarball)).toString('base64');
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

export const commands: ExtensionCommands = {
  collect_system_logs: defineCommand({
    async: false,
    params: z.object({}).loose(),
    confidentialResult: true,
    run: async (_p, ctx) => ({ system_logs: await collectSystemLogs(ctx.agent.logFile) }),
  }),
};
