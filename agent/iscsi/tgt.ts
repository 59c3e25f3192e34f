/**
 * One iSCSI target exported with Debian's user-space `tgt` (tgtd + tgtadm), as IPA's iscsi extension did: one
 * target, LUN 1 backed by the root device, CHAP enforced when credentials are given.
 *
 * tgtd always runs from its own temp dir (its control socket via TGT_IPC_SOCKET, so it never meets a system tgtd
 * or another agent's), in the foreground as our child, and is stopped by its pid (tgtd ignores SIGTERM: `tgtadm --mode system --op delete`, then SIGKILL). The CHAP password reaches tgtadm
 * in argv (tgtadm has no other way); it is masked in the exec log line.
 */
import { existsSync, rmSync } from 'node:fs';
import { mkdtemp, readdir, readFile, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run, spawnLong } from '../../common/exec.js';

export interface TgtTargetOptions {
  iqn: string;
  /** Block device (or file, in unit tests) exported as LUN 1. */
  backingStore: string;
  /** Address the portal binds: 127.0.0.1 outside the ramdisk. */
  host: string;
  port: number;
  chap?: { username: string; password: string } | undefined;
  /** How long tgtd may take to come up. */
  startTimeoutMs?: number;
}

export interface TgtTarget {
  readonly iqn: string;
  readonly host: string;
  readonly port: number;
  readonly pid: number;
  readonly backingStore: string;
  /** Stops tgtd (SIGTERM, then SIGKILL) and removes its temp dir; safe to call twice. */
  stop(): Promise<void>;
}

export class TgtError extends Error {}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Whether `pid` itself holds a listening TCP socket on `port`. tgtd does not fail when its portal port is taken: it
 * runs on without a portal, so a connect test would find the other listener. /proc/net/tcp{,6} gives the listening
 * sockets' inodes, /proc/<pid>/fd the process's.
 */
async function listensOn(pid: number, port: number): Promise<boolean> {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const inodes = new Set<string>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const text = await readFile(table, 'utf8').catch(() => '');
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // local_address is HEXIP:HEXPORT, st 0A is LISTEN, field 9 the inode.
      if (f.length > 9 && f[1]?.endsWith(`:${hexPort}`) && f[3] === '0A') inodes.add(f[9]!);
    }
  }
  if (inodes.size === 0) return false;
  const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
  for (const fd of fds) {
    const link = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
    const m = /^socket:\[(\d+)\]$/.exec(link);
    if (m && inodes.has(m[1]!)) return true;
  }
  return false;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Starts tgtd and configures the target; on any failure tgtd is stopped again before the error is thrown. */
export async function startTgtTarget(o: TgtTargetOptions): Promise<TgtTarget> {
  const dir = await mkdtemp(join(tmpdir(), 'bmts-tgtd-'));
  const env = { TGT_IPC_SOCKET: join(dir, 'socket') };
  const child = spawnLong('tgtd', ['-f', '-C', '0', '--iscsi', `portal=${o.host}:${o.port}`], { env, cwd: dir });
  // An agent exit without stop() (SIGTERM mid-deploy) must take tgtd and its temp dir along: execa's cleanup only
  // sends SIGTERM, which tgtd ignores.
  const onExit = (): void => {
    if (child.pid) try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ }
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', onExit);
  let stderr = '';
  child.stderr?.on('data', (b: Buffer) => { stderr = (stderr + b.toString()).slice(-4000); });
  child.stdout?.on('data', () => undefined);
  let exited = false;
  const done = child.then(() => undefined, () => undefined).finally(() => { exited = true; });
  const pid = child.pid ?? -1;
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    if (!exited && pid > 0) {
      // tgtd ignores SIGTERM: its own shutdown (which also drops the targets) first, SIGKILL if it hangs.
      await run('tgtadm', ['-C', '0', '--mode', 'system', '--op', 'delete', '--force'], { env, timeoutMs: 5000 })
        .catch(() => undefined); // SIGKILL below covers a tgtd that no longer answers
      const t = setTimeout(() => { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }, 3000);
      await done;
      clearTimeout(t);
    }
    await rm(dir, { recursive: true, force: true });
    process.removeListener('exit', onExit);
  };
  const tgtadm = (args: string[], redact: number[] = []): Promise<unknown> =>
    run('tgtadm', ['-C', '0', '--lld', 'iscsi', ...args], { env, timeoutMs: 15_000, redactArgs: redact.map((i) => i + 4) });
  try {
    const deadline = Date.now() + (o.startTimeoutMs ?? 10_000);
    for (;;) {
      if (exited) throw new TgtError(`tgtd exited at start-up: ${stderr.trim().split('\n').slice(-3).join(' | ')}`);
      if (existsSync(join(dir, 'socket.0')) && await listensOn(pid, o.port)) break;
      if (Date.now() > deadline) {
        throw new TgtError(`tgtd did not listen on ${o.host}:${o.port} in time (port taken?): ${stderr.trim().split('\n').slice(-3).join(' | ')}`);
      }
      await sleep(50);
    }
    await tgtadm(['--mode', 'target', '--op', 'new', '--tid', '1', '--targetname', o.iqn]);
    await tgtadm(['--mode', 'logicalunit', '--op', 'new', '--tid', '1', '--lun', '1', '--backing-store', o.backingStore]);
    if (o.chap) {
      await tgtadm(['--mode', 'account', '--op', 'new', '--user', o.chap.username, '--password', o.chap.password], [7]);
      await tgtadm(['--mode', 'account', '--op', 'bind', '--tid', '1', '--user', o.chap.username]);
    }
    // Any initiator address may log in: with CHAP bound, only the holder of the secret gets through.
    await tgtadm(['--mode', 'target', '--op', 'bind', '--tid', '1', '--initiator-address', 'ALL']);
  } catch (e) {
    await stop();
    throw e instanceof TgtError ? e : new TgtError(`could not start the iSCSI target: ${e instanceof Error ? e.message : String(e)}`);
  }
  return { iqn: o.iqn, host: o.host, port: o.port, pid, backingStore: o.backingStore, stop };
}

/** For tests and the stop command: whether a tgtd pid still runs. */
export function tgtdRunning(pid: number): boolean {
  return pid > 0 && alive(pid);
}
