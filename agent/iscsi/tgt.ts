/**
 * One iSCSI target exported with Debian's user-space `tgt` (tgtd + tgtadm), as IPA's iscsi extension did: one
 * target, LUN 1 backed by the root device, CHAP enforced when credentials are given.
 *
 * tgtd always runs from its own temp dir (its control socket via TGT_IPC_SOCKET, so it never meets a system tgtd
 * or another agent's), in the foreground as our child, and is stopped by its pid. The CHAP password reaches tgtadm
 * in argv (tgtadm has no other way); it is masked in the exec log line.
 */
import { existsSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
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

function portOpen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: host === '0.0.0.0' ? '127.0.0.1' : host, port });
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
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
  // A process exit without stop() (the agent killed mid-deploy) must not leave the temp dir behind; tgtd itself
  // goes with us (execa's cleanup kills children on exit).
  const onExit = (): void => rmSync(dir, { recursive: true, force: true });
  process.once('exit', onExit);
  const child = spawnLong('tgtd', ['-f', '-C', '0', '--iscsi', `portal=${o.host}:${o.port}`], { env, cwd: dir });
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
      try { process.kill(pid, 'SIGTERM'); } catch { /* already gone */ }
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
      if (existsSync(join(dir, 'socket.0')) && await portOpen(o.host, o.port)) break;
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
