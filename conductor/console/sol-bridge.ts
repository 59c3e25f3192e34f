/**
 * One node's Serial-over-LAN bridged to a TCP port, as Ironic's `ipmitool-socat` console does it: socat listens
 * on HOST:PORT (one client at a time) and runs `ipmitool ... sol activate` on a pty for each connection. The BMC
 * password goes through the environment (never argv, never a file); a stale SoL session left by a vanished
 * client is deactivated before each activation, since a BMC allows only one.
 */
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { run, spawnLong } from '../../common/exec.js';
import { getLogger } from '../../common/logger.js';
import { ipmitoolSessionArgs, type IpmiInfo } from '../drivers/ipmitool.js';

const log = getLogger('console');

function shq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * The console's ipmitool arguments. The password goes in the environment (-E, IPMI_PASSWORD), as for power
 * commands: socat hands its environment to each connection's SoL script, and nothing with the password is on disk.
 */
function ipmitoolBaseArgs(info: IpmiInfo): string[] {
  return [...ipmitoolSessionArgs(info), '-R', '1', '-N', '2', '-E'];
}

export interface SolBridge {
  host: string;
  port: number;
  close(): Promise<void>;
}

/** Asks the kernel, not the port: a probe connection would make socat start an SoL session. */
async function listening(port: number, timeoutMs: number, exited: () => boolean): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && !exited()) {
    const r = await run('ss', ['-Htln', `sport = :${port}`], { quiet: true, okCodes: [0, 1] });
    if (r.stdout.includes(`:${port}`)) return true;
    await sleep(50);
  }
  return false;
}

/** Starts socat on host:port; resolves once it listens. */
export async function startSolBridge(info: IpmiInfo, host: string, port: number, ipmitool = 'ipmitool'): Promise<SolBridge> {
  const dir = await mkdtemp(join(tmpdir(), 'bmts-console-'));
  await chmod(dir, 0o700);
  const env = { IPMI_PASSWORD: info.password ?? '' };
  const base = ipmitoolBaseArgs(info).map(shq).join(' ');
  const script = join(dir, 'sol.sh');
  await writeFile(script, `#!/bin/sh\n${shq(ipmitool)} ${base} sol deactivate >/dev/null 2>&1\nexec ${shq(ipmitool)} ${base} sol activate\n`,
    { mode: 0o700 });
  const child = spawnLong('socat', [
    `TCP4-LISTEN:${port},bind=${host},reuseaddr,fork,max-children=1`,
    `EXEC:${script},pty,stderr,setsid,raw,echo=0`,
  ], { env });
  child.catch(() => undefined); // its end is observed through close(); an exit before that is logged below
  let stopped = false;
  void child.finally(() => { if (!stopped) log.warn({ host, port }, 'console bridge (socat) exited'); });
  const close = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    if (child.pid && child.exitCode === null) {
      // The forked connection handlers are socat's children in its process group; end them with it.
      try { process.kill(-child.pid, 'SIGTERM'); } catch { /* not a group leader: the parent alone */ }
      child.kill('SIGTERM');
      // A connected client's `sol activate` runs in its own session (socat's setsid), out of the group's reach, and
      // holds socat's output pipes open, so socat's end would wait for the client: end it by this bridge's private
      // directory, which only its command line names.
      await run('pkill', ['-TERM', '-f', '--', dir], { okCodes: [0, 1], quiet: true }).catch(() => undefined);
      const t = setTimeout(() => child.kill('SIGKILL'), 2000);
      await Promise.race([child.catch(() => undefined), sleep(5000)]); // killed on purpose; never wait forever
      clearTimeout(t);
    }
    // The BMC keeps an SoL session whose client died; free it for the next one (Ironic's stop_console does too).
    await run(ipmitool, [...ipmitoolBaseArgs(info), 'sol', 'deactivate'], { env, okCodes: [0, 1], timeoutMs: 10_000, quiet: true })
      .catch(() => undefined); // best effort: the bridge itself is gone either way
    await rm(dir, { recursive: true, force: true });
  };
  if (!(await listening(port, 5000, () => child.exitCode !== null))) {
    await close();
    throw new Error(`socat did not start listening on ${host}:${port}`);
  }
  return { host, port, close };
}
