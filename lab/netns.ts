/**
 * The lab rack: a network namespace holding a bridge (the provisioning network), one TAP per QEMU node, the
 * conductor-managed dnsmasq and a forwarder (lab/ns-forward.ts) that makes the conductor's API and boot server
 * reachable at the bridge address. The conductor itself stays on 127.0.0.1 in the root namespace: the forwarder
 * reaches it over Unix sockets served by this process (Unix sockets are paths, shared across namespaces), and
 * the conductor reaches each agent at 127.0.0.1:<port> the same way, back in.
 * SAFETY: every non-loopback address lives only in the namespace (no veth, no route out, nothing added to the
 * root namespace); destroy() kills every process in the namespace and deletes it, which removes bridge and TAPs.
 */
import { mkdir, rm } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { run, spawnLong } from '../common/exec.js';

const REPO_ROOT_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..');

export interface RackOptions {
  /** Directory for the sockets (short path: Unix socket paths are limited to 107 bytes). */
  dir: string;
  /** TAP devices to create (tap0..tapN-1). */
  taps: number;
  /** First three octets of the /24 (default 192.168.77). */
  subnet?: string;
  /** The test run this rack belongs to (scripts/test.sh's BMTS_TEST_RUN), named in the namespace for the sweep. */
  testRun?: string | undefined;
}

export interface Rack {
  ns: string;
  bridge: string;
  /** The bridge's address: where nodes reach the conductor (API, boot server, TFTP). */
  address: string;
  /** dnsmasq dhcp-range value. */
  dhcpRange: string;
  taps: string[];
  /** Make 127.0.0.1:port of the root namespace reachable at address:port inside (nodes -> conductor). */
  exposeToNodes(ports: number[]): Promise<void>;
  /** A 127.0.0.1 port reaching port `guestPort` of whatever address dnsmasq leased `mac` (conductor -> agent). */
  reachNode(mac: string, guestPort: number, leaseFile: string): Promise<number>;
  /** argv prefix running a command inside the namespace. */
  execPrefix(): string[];
  destroy(): Promise<void>;
}

/** Namespace names: `bmts-<test run suffix>-<pid>` under scripts/test.sh (its sweep finds them), else `bmts-<pid>-<rand>`. */
export function rackNamespaceName(testRun: string | undefined, pid = process.pid): string {
  const runId = testRun?.replace(/^bmts-test-run-/, '');
  const tail = runId && /^[A-Za-z0-9-]+$/.test(runId) ? `${runId}-${pid}` : `${pid}-${Math.random().toString(36).slice(2, 8)}`;
  return `bmts-${tail}`;
}

/** Can this machine build a rack (root, `ip netns`)? A reason when not. */
export async function rackUnavailable(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'network namespaces need root';
  const r = await run('ip', ['netns', 'list'], { quiet: true, okCodes: [0, 1, 2, 255] }).catch(() => undefined);
  return r && r.exitCode === 0 ? undefined : 'ip netns is not available';
}

function bridgeSockets(a: Socket, b: Socket): void {
  a.setNoDelay(true);
  b.setNoDelay(true);
  a.pipe(b).pipe(a);
  const end = (): void => { a.destroy(); b.destroy(); };
  for (const s of [a, b]) { s.on('error', end); s.on('close', end); }
}

/**
 * IPv6 router advertisements on the bridge, from a dnsmasq of the rack's own (DHCPv4 stays the conductor's). iPXE
 * configures IPv4 and IPv6 together and its `Configuring (net0 ...)` waits for both: with no router on the wire it
 * solicits one until its retry timer gives up, ~16 s of every network boot. An RA (router lifetime 0: nobody
 * routes anything, and the nodes take no default route from it) ends that wait at once. The ULA prefix lives
 * only in the namespace, like every other address of the rack.
 */
async function routerAdverts(ns: string, bridge: string, subnet: string, inside: ReturnType<typeof spawnLong>[]): Promise<void> {
  const third = Number(subnet.split('.')[2] ?? 0);
  const prefix = `fd62:6d74:0:${third.toString(16)}`;
  await run('ip', ['netns', 'exec', ns, 'ip', '-6', 'addr', 'add', `${prefix}::1/64`, 'dev', bridge, 'nodad'], { quiet: true });
  const child = spawnLong('ip', ['netns', 'exec', ns, 'dnsmasq', '--keep-in-foreground', '--conf-file=/dev/null', '--pid-file', '--port=0',
    `--interface=${bridge}`, '--bind-dynamic', '--enable-ra', `--dhcp-range=${prefix}::,ra-only,64`, `--ra-param=${bridge},60,0`,
    '--quiet-ra', '--log-facility=-']);
  inside.push(child);
  child.catch(() => undefined); // killed by destroy()
}

export async function createRack(opts: RackOptions): Promise<Rack> {
  const ns = rackNamespaceName(opts.testRun);
  const subnet = opts.subnet ?? '192.168.77';
  const address = `${subnet}.1`;
  const bridge = 'br0';
  const ip = (...a: string[]): Promise<unknown> => run('ip', ['netns', 'exec', ns, 'ip', ...a], { quiet: true });
  const sockDir = join(opts.dir, 'rack-sockets');
  const servers: Server[] = [];
  const inside: ReturnType<typeof spawnLong>[] = [];
  let destroyed = false;

  const destroy = async (): Promise<void> => {
    if (destroyed) return;
    destroyed = true;
    for (const s of servers) s.close();
    // Everything started in the namespace (dnsmasq, QEMU, the forwarder) dies before the namespace goes.
    const pids = await run('ip', ['netns', 'pids', ns], { quiet: true, okCodes: [0, 1, 255] }).catch(() => ({ stdout: '' }));
    for (const p of pids.stdout.split('\n').map(Number).filter((n) => Number.isInteger(n) && n > 1)) {
      try { process.kill(p, 'SIGKILL'); } catch { /* gone */ }
    }
    for (const c of inside) await Promise.race([c.catch(() => undefined), sleep(2000)]);
    await run('ip', ['netns', 'del', ns], { quiet: true, okCodes: [0, 1, 255] });
    await rm(sockDir, { recursive: true, force: true });
  };

  await run('ip', ['netns', 'add', ns]);
  try {
    await mkdir(sockDir, { recursive: true });
    await ip('link', 'set', 'lo', 'up');
    await ip('link', 'add', bridge, 'type', 'bridge');
    // No STP/forward delay: a TAP joining the bridge forwards at once (PXE ROMs give up quickly).
    await ip('link', 'set', bridge, 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0');
    await ip('addr', 'add', `${address}/24`, 'dev', bridge);
    await ip('link', 'set', bridge, 'up');
    await routerAdverts(ns, bridge, subnet, inside);
    const taps: string[] = [];
    for (let i = 0; i < opts.taps; i++) {
      const tap = `tap${i}`;
      await ip('tuntap', 'add', 'dev', tap, 'mode', 'tap');
      await ip('link', 'set', tap, 'master', bridge);
      await ip('link', 'set', tap, 'up');
      taps.push(tap);
    }
    let sockN = 0;
    /** Start one forwarder process in the namespace with these rules; resolves when it is listening. */
    const forwarder = async (rules: string[]): Promise<void> => {
      const child = spawnLong('ip', ['netns', 'exec', ns, process.execPath, '--import', 'tsx', join(REPO_ROOT_DIR, 'lab', 'ns-forward.ts'), ...rules],
        { cwd: REPO_ROOT_DIR });
      inside.push(child);
      child.catch(() => undefined); // killed by destroy()
      let out = '';
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`rack forwarder did not start: ${out}`)), 30_000);
        child.stdout?.on('data', (d: Buffer) => { out += d.toString(); if (out.includes('ready')) { clearTimeout(t); resolve(); } });
        child.stderr?.on('data', (d: Buffer) => { out += d.toString(); });
        void child.then(() => { clearTimeout(t); reject(new Error(`rack forwarder exited: ${out}`)); }, () => { clearTimeout(t); reject(new Error(`rack forwarder failed: ${out}`)); });
      });
    };
    return {
      ns, bridge, address, taps, dhcpRange: `${subnet}.100,${subnet}.199,1h`,
      execPrefix: () => ['ip', 'netns', 'exec', ns],
      async exposeToNodes(ports) {
        const rules: string[] = [];
        for (const port of ports) {
          const path = join(sockDir, `in-${sockN++}.sock`);
          const srv = createServer((c) => bridgeSockets(c, connect(port, '127.0.0.1')));
          await new Promise<void>((r) => srv.listen(path, r));
          servers.push(srv);
          rules.push(`tcp:${address}:${port}>unix:${path}`);
        }
        await forwarder(rules);
      },
      async reachNode(mac, guestPort, leaseFile) {
        const path = join(sockDir, `out-${sockN++}.sock`);
        await forwarder([`unix:${path}>lease:${leaseFile}:${mac}:${guestPort}`]);
        const srv = createServer((c) => bridgeSockets(c, connect(path)));
        await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
        servers.push(srv);
        const a = srv.address();
        return typeof a === 'object' && a ? a.port : 0;
      },
      destroy,
    };
  } catch (e) {
    await destroy();
    throw e;
  }
}
