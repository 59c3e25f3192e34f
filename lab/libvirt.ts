/**
 * A private libvirtd (Debian 12: one daemon plus virtlogd) for tests, as /work/shared/services.md found works
 * here: qemu:///system as root, unix socket root-only, no auth on it, logs in a temp dir; TCG guests. Domains the
 * test defines are destroyed and undefined by stop(), before the daemons are stopped by pid (guests outlive
 * libvirtd otherwise). `execPrefix` starts both daemons under a prefix such as the lab rack's `ip netns exec NS`:
 * the QEMU processes libvirtd spawns then live in that network namespace and can open its TAP devices, while
 * virsh still reaches libvirtd over its Unix socket (a path, shared across network namespaces).
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run, spawnLong } from '../common/exec.js';

export interface Libvirt {
  uri: string;
  /** The daemons' config, pid files and logs (removed by stop()). */
  dir: string;
  /** Define a domain with no disk and no NIC (boot order network, hd), owned by this fixture. */
  defineDomain(name: string): Promise<string>;
  /** Define a domain from XML (its <name> must be `name`), owned by this fixture like defineDomain's. */
  defineXml(name: string, xml: string): Promise<string>;
  virsh(args: string[]): Promise<string>;
  stop(): Promise<void>;
}

const URI = 'qemu:///system';

/** `socketGroup`: a group whose members may use the read-write socket (tests log in as such a user over ssh). */
export async function startLibvirt(opts: { socketGroup?: string; execPrefix?: string[] } = {}): Promise<Libvirt> {
  const dir = await mkdtemp(join(tmpdir(), 'bmts-libvirt-'));
  const conf = join(dir, 'libvirtd.conf');
  await writeFile(conf, [
    `unix_sock_group = "${opts.socketGroup ?? 'root'}"`, `unix_sock_rw_perms = "${opts.socketGroup ? '0770' : '0700'}"`, 'auth_unix_rw = "none"', 'auth_unix_ro = "none"',
    `log_outputs = "3:file:${join(dir, 'libvirtd.log')}"`, '',
  ].join('\n'));
  // `ip netns exec` execs the daemon, so the pid spawnLong returns is the daemon's own (stop() signals it). A
  // Ctrl-C reaches libvirtd with the test (one process group) but not the QEMU it daemonized: stop() then finds
  // virsh failing and kills that QEMU through libvirt's pid file, and removes the domain's files itself.
  const [pre, ...preArgs] = opts.execPrefix ?? [];
  const spawnDaemon = (cmd: string, args: string[]): ReturnType<typeof spawnLong> =>
    pre ? spawnLong(pre, [...preArgs, cmd, ...args]) : spawnLong(cmd, args);
  const logd = spawnDaemon('virtlogd', ['-p', join(dir, 'virtlogd.pid')]);
  logd.catch(() => undefined); // stopped by stop()
  const daemon = spawnDaemon('libvirtd', ['-f', conf, '-p', join(dir, 'libvirtd.pid')]);
  daemon.catch(() => undefined); // stopped by stop()
  const domains: string[] = [];
  const virsh = async (args: string[], input?: string): Promise<string> =>
    (await run('virsh', ['-c', URI, ...args], { timeoutMs: 30_000, ...(input !== undefined ? { input } : {}) })).stdout;
  const stopDaemons = async (): Promise<void> => {
    for (const p of [daemon, logd]) {
      p.kill('SIGTERM');
      await Promise.race([p.catch(() => undefined), new Promise((r) => setTimeout(r, 5000))]);
      if (p.exitCode === null) p.kill('SIGKILL');
    }
    await rm(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 30_000;
  for (;;) {
    const ok = await run('virsh', ['-c', URI, 'version'], { okCodes: [0, 1], quiet: true, timeoutMs: 10_000 }).catch(() => null);
    if (ok?.exitCode === 0) break;
    if (Date.now() > deadline || daemon.exitCode !== null) {
      await stopDaemons();
      throw new Error('libvirtd did not answer');
    }
    await new Promise((r) => setTimeout(r, 300));
  }
  const defineXml = async (name: string, xml: string): Promise<string> => {
    // The name becomes file names under /etc/libvirt/qemu, /run/libvirt/qemu and /var/log/libvirt/qemu.
    if (!/^[A-Za-z0-9_.-]+$/.test(name) || name.startsWith('.')) throw new Error(`bad domain name ${name}`);
    const file = join(dir, `${name}.xml`);
    await writeFile(file, xml);
    await virsh(['define', file]);
    domains.push(name);
    return name;
  };
  return {
    uri: URI,
    dir,
    defineXml,
    async defineDomain(name) {
      const xml = `<domain type='qemu'>
  <name>${name}</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <boot dev='network'/>
    <boot dev='hd'/>
  </os>
  <devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices>
</domain>
`;
      return defineXml(name, xml);
    },
    virsh: (args) => virsh(args),
    async stop() {
      for (const d of domains) {
        await virsh(['destroy', d]).catch(() => undefined); // not running is fine
        await virsh(['undefine', d]).catch(() => undefined); // libvirtd gone: the files are removed below
      }
      await stopDaemons();
      // What libvirt keeps per domain on the host: its QEMU log always (even after undefine), and, when libvirtd
      // died before it could undefine, the persistent definition and the live state with the QEMU pid.
      for (const d of domains) {
        const pid = Number((await readFile(`/run/libvirt/qemu/${d}.pid`, 'utf8').catch(() => '')).trim());
        if (Number.isInteger(pid) && pid > 1) {
          const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
          if (cmd.includes(`guest=${d},`)) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
        }
        for (const f of [`/etc/libvirt/qemu/${d}.xml`, `/run/libvirt/qemu/${d}.pid`, `/run/libvirt/qemu/${d}.xml`, `/var/log/libvirt/qemu/${d}.log`]) {
          await rm(f, { force: true });
        }
      }
    },
  };
}
