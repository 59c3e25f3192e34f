/**
 * A private sshd on 127.0.0.1 for tests of drivers that log in to a host (the `ssh` hardware type): its own host
 * key, config, authorized_keys and pid file in a temp dir, root log-in by key only, no PAM. Started with an
 * absolute path (sshd insists) and stopped by pid; the temp dir is removed.
 */
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { run, spawnLong } from '../common/exec.js';

/**
 * An unprivileged log-in user for tests (system account, /bin/sh, no home, password locked to '*' so that key
 * log-in works under UsePAM no), created once and kept, like the postgres account the package creates. root's
 * own shell start-up on a developer machine (pyenv, cargo in .bashrc) costs seconds per ssh command.
 */
export async function ensureTestUser(name: string, group?: string): Promise<void> {
  if (group) await run('groupadd', ['-f', '--system', group]);
  const exists = await run('id', ['-u', name], { okCodes: [0, 1], quiet: true });
  if (exists.exitCode !== 0) {
    await run('useradd', ['--system', '--shell', '/bin/sh', '--no-create-home', '--home-dir', '/nonexistent',
      ...(group ? ['--gid', group] : []), name]);
  } else if (group) {
    await run('usermod', ['-g', group, name]);
  }
  await run('usermod', ['-p', '*', name]);
}

export interface Sshd {
  port: number;
  dir: string;
  /** A private key whose public half is authorized for root. */
  clientKey: string;
  /** `[127.0.0.1]:PORT ssh-ed25519 AAAA...`: the line a known_hosts file needs for this server. */
  knownHostsLine: string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
    s.on('error', reject);
  });
}

/** `setEnv`: variables for every session (sshd's SetEnv), e.g. a PATH that puts a stand-in CLI first. */
export async function startSshd(opts: { setEnv?: Record<string, string> } = {}): Promise<Sshd> {
  const dir = await mkdtemp(join(tmpdir(), 'bmts-sshd-'));
  // sshd reads authorized_keys with the log-in user's rights: that user must reach it (a test run's TMPDIR is 0700).
  await chmod(dir, 0o755);
  const parent = dirname(dir);
  const pm = (await stat(parent)).mode & 0o7777;
  if ((pm & 0o001) === 0) await chmod(parent, pm | 0o001);
  const port = await freePort();
  await mkdir('/run/sshd', { recursive: true, mode: 0o755 });
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'host_key')]);
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'client_key')]);
  await writeFile(join(dir, 'authorized_keys'), await readFile(join(dir, 'client_key.pub')), { mode: 0o644 });
  const env = Object.entries(opts.setEnv ?? {}).map(([k, v]) => `${k}=${v}`);
  await writeFile(join(dir, 'sshd_config'), [
    `Port ${port}`, 'ListenAddress 127.0.0.1', `HostKey ${join(dir, 'host_key')}`, `PidFile ${join(dir, 'sshd.pid')}`,
    `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`, 'PermitRootLogin prohibit-password', 'PubkeyAuthentication yes',
    'PasswordAuthentication no', 'PermitUserEnvironment no', 'KbdInteractiveAuthentication no', 'UsePAM no', 'StrictModes no',
    ...(env.length > 0 ? [`SetEnv ${env.join(' ')}`] : []), '',
  ].join('\n'));
  const proc = spawnLong('/usr/sbin/sshd', ['-D', '-e', '-f', join(dir, 'sshd_config')]);
  proc.catch(() => undefined); // killed by stop(); a failed start shows as the port never answering
  const deadline = Date.now() + 10_000;
  for (;;) {
    const up = await new Promise<boolean>((r) => {
      const s = net.connect(port, '127.0.0.1', () => { s.destroy(); r(true); });
      s.on('error', () => r(false));
    });
    if (up) break;
    if (Date.now() > deadline || proc.exitCode !== null) {
      proc.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
      throw new Error('sshd did not start');
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const pub = (await readFile(join(dir, 'host_key.pub'), 'utf8')).trim().split(/\s+/).slice(0, 2).join(' ');
  return {
    port, dir, clientKey: join(dir, 'client_key'), knownHostsLine: `[127.0.0.1]:${port} ${pub}`,
    async stop() {
      proc.kill('SIGTERM');
      await Promise.race([proc.catch(() => undefined), new Promise((r) => setTimeout(r, 3000))]);
      if (proc.exitCode === null) proc.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    },
  };
}
