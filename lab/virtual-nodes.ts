/**
 * Virtual bare-metal nodes for fleet tests, the bench and `npm run demo -- --nodes N`: each node has its own BMC
 * (a Redfish service on its own loopback port), its own loop-device disk and its own MAC. The conductor drives
 * them through its real `redfish` power and management interfaces. What the BMC does is what a machine does:
 *  - power on with a one-time (or continuous) PXE boot override boots "the ramdisk": our agent starts as a
 *    process on this host (allow-list = this node's loop device only, lookup by this node's MAC, API on
 *    127.0.0.1 with an ephemeral port);
 *  - power on from disk boots "the instance": no process, only counted;
 *  - power off (or a reset) kills the agent, as pulling the power would;
 *  - the agent ending itself with exit code 0 (its power_off command outside a ramdisk) switches the node off;
 *    an agent that dies otherwise (crashAgent) leaves the node "on" but silent, like a hung machine.
 * The agent runs from one esbuild bundle (ramdisk-build/bundle.ts, cached) with a small V8 heap, not through tsx:
 * about 80 MiB RSS each instead of well over 150, which is what lets 50 of them share a small machine.
 * stop() ends every agent, BMC and loop device, also after a failed start.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { errorMessage } from '../common/errors.js';
import { spawnLong } from '../common/exec.js';
import { bundleAgent } from '../ramdisk-build/bundle.js';
import { createLoopDevices, type LoopSet } from '../test/fixtures/loop.js';
import { startRedfishEmulator, type RedfishEmulator } from '../test/fixtures/redfish-emulator.js';

const REPO_ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));

export interface VirtualNodesOptions {
  count: number;
  /** Conductor API URL handed to the agents (ipa-api-url). */
  apiUrl: string;
  /** CA bundle for an HTTPS conductor (ipa-cafile). */
  caFile?: string | undefined;
  /** Agent logs go here (one file per node and boot). */
  logDir: string;
  /** Size of each node's loop-device disk (default 64 MiB). */
  diskMiB?: number;
  /** Extra agent flags for every boot (e.g. ipa-heartbeat-min-interval). */
  agentFlags?: Record<string, string>;
  /** Where the agent bundle is cached (default build/vnode-cache). */
  cacheDir?: string;
  /** V8 old-space cap of each agent, MiB (default 64). */
  agentHeapMiB?: number;
}

export interface VirtualNode {
  readonly index: number;
  readonly name: string;
  readonly mac: string;
  /** The node's disk (loop device path). */
  readonly disk: string;
  readonly bmc: RedfishEmulator;
  /** driver_info for the conductor's `redfish` hardware type. */
  readonly driverInfo: Record<string, string>;
  powerOn(): boolean;
  agentRunning(): boolean;
  agentPid(): number | undefined;
  /** How often the ramdisk (agent) booted / the instance booted from disk. */
  ramdiskBoots(): number;
  instanceBoots(): number;
  /** The BMC's log of power actions (Redfish ResetType values, in order). */
  powerLog(): string[];
  /** Kill the agent without telling the BMC: the node stays on and stops heartbeating. */
  crashAgent(): Promise<void>;
  /** The running agent's resident memory (KiB), undefined when none runs. */
  agentRssKiB(): Promise<number | undefined>;
  /**
   * Hold network boots (a long POST): a PXE power-on leaves the node on without an agent until released; then the
   * ramdisk boots if the node is still on.
   */
  holdBoot(hold: boolean): void;
}

export interface VirtualFleet {
  readonly nodes: readonly VirtualNode[];
  /** Highest agent RSS (KiB) seen by sampleRss(). */
  peakAgentRssKiB(): number;
  /** Samples every running agent's RSS; returns the sum (KiB). */
  sampleRss(): Promise<number>;
  stop(): Promise<void>;
}

interface AgentChild {
  pid: number;
  exited: Promise<{ code: number | null; byUs: boolean }>;
  kill(): Promise<void>;
  running(): boolean;
}

const SYSTEM_ID = 'system-0';

function macFor(i: number): string {
  // Locally administered, unique per index (up to 65536 nodes).
  return `52:54:00:f1:${((i >> 8) & 0xff).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`;
}

async function readRssKiB(pid: number): Promise<number | undefined> {
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined; // the process is gone
  }
}

export async function startVirtualNodes(o: VirtualNodesOptions): Promise<VirtualFleet> {
  if (!Number.isInteger(o.count) || o.count < 1) throw new Error(`virtual nodes: count must be >= 1, got ${o.count}`);
  await mkdir(o.logDir, { recursive: true });
  const bundle = await bundleAgent({ root: REPO_ROOT, cacheDir: resolve(o.cacheDir ?? join(REPO_ROOT, 'build/vnode-cache')) });
  const bmcs: RedfishEmulator[] = [];
  const agents = new Set<AgentChild>();
  const logs = new Set<WriteStream>();
  let loops: LoopSet | undefined;
  let stopped = false;
  let peakRss = 0;

  const stop = async (): Promise<void> => {
    stopped = true;
    await Promise.all([...agents].map((a) => a.kill()));
    await Promise.all(bmcs.map((b) => b.stop().catch(() => undefined))); // a BMC that failed to stop is gone anyway
    for (const l of logs) l.end();
    await loops?.dispose();
  };

  const spawnAgent = (node: { name: string; mac: string; disk: string }, boot: number): AgentChild => {
    const flags: Record<string, string> = {
      'ipa-api-url': o.apiUrl,
      ...(o.caFile ? { 'ipa-cafile': o.caFile } : {}),
      'ipa-listen-host': '127.0.0.1',
      'ipa-listen-port': '0',
      'ipa-advertise-host': '127.0.0.1',
      'ipa-lookup-macs': node.mac,
      BOOTIF: `01-${node.mac.replace(/:/g, '-')}`,
      'ipa-device-allowlist': node.disk,
      'ipa-lookup-interval': '0.5',
      'ipa-lookup-timeout': '120',
      'ipa-enable-auto-tls': '0',
      ...o.agentFlags,
    };
    const args = [`--max-old-space-size=${o.agentHeapMiB ?? 64}`, '--max-semi-space-size=1', bundle.file,
      ...Object.entries(flags).map(([k, v]) => `--${k}=${v}`)];
    const child = spawnLong(process.execPath, args, { cwd: REPO_ROOT, env: { LOG_LEVEL: 'info' } });
    const log = createWriteStream(join(o.logDir, `${node.name}-boot-${boot}.log`));
    logs.add(log);
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
    child.catch(() => undefined); // the exit is handled below; a kill is not an error
    if (!child.pid) throw new Error(`${node.name}: could not start the agent`);
    const pid = child.pid;
    let done = false;
    let byUs = false;
    const exited = new Promise<{ code: number | null; byUs: boolean }>((r) => child.once('exit', (code) => {
      done = true;
      r({ code, byUs });
    }));
    const a: AgentChild = {
      pid,
      exited,
      running: () => !done,
      async kill() {
        if (done) return;
        byUs = true;
        try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
        await exited;
      },
    };
    agents.add(a);
    void exited.then(() => { agents.delete(a); logs.delete(log); });
    return a;
  };

  try {
    loops = await createLoopDevices(o.count, o.diskMiB ?? 64);
    const nodes: VirtualNode[] = [];
    for (let i = 0; i < o.count; i++) {
      const name = `vnode-${String(i).padStart(3, '0')}`;
      const mac = macFor(i);
      const disk = loops.devices[i]!.path;
      let agent: AgentChild | undefined;
      let ramdiskBoots = 0;
      let instanceBoots = 0;
      let held = false;
      let heldBoot = false;
      // Set once the emulator exists (onPower only runs on requests, which come after that).
      let bmcRef: RedfishEmulator | undefined;
      const powerOff = async (): Promise<void> => {
        const a = agent;
        agent = undefined;
        await a?.kill();
      };
      const boot = (): void => {
        const sys = bmcRef?.systems.get(SYSTEM_ID);
        if (!sys || stopped) return;
        const pxe = sys.Boot.BootSourceOverrideEnabled !== 'Disabled' && sys.Boot.BootSourceOverrideTarget === 'Pxe';
        if (sys.Boot.BootSourceOverrideEnabled === 'Once') {
          // A one-time override is consumed by the boot, as on real firmware.
          sys.Boot.BootSourceOverrideEnabled = 'Disabled';
          sys.Boot.BootSourceOverrideTarget = 'None';
        }
        if (!pxe) {
          instanceBoots++;
          return;
        }
        if (held) {
          heldBoot = true;
          return;
        }
        startRamdisk();
      };
      const startRamdisk = (): void => {
        const sys = bmcRef?.systems.get(SYSTEM_ID);
        if (!sys || stopped) return;
        ramdiskBoots++;
        const a = spawnAgent({ name, mac, disk }, ramdiskBoots);
        agent = a;
        void a.exited.then(({ code, byUs }) => {
          if (agent === a) agent = undefined;
          // The agent's own power-off ends it with 0: the machine is off. Any other death leaves it on, silent.
          if (!byUs && code === 0 && sys.PowerState === 'On') sys.PowerState = 'Off';
        });
      };
      const bmc = await startRedfishEmulator({
        systems: [SYSTEM_ID],
        sessions: false,
        onPower: async (_id, on, type) => {
          heldBoot = false;
          await powerOff();
          if (on) boot();
          void type;
        },
      });
      bmcRef = bmc;
      bmcs.push(bmc);
      nodes.push({
        index: i, name, mac, disk, bmc,
        driverInfo: { redfish_address: bmc.url, redfish_system_id: `/redfish/v1/Systems/${SYSTEM_ID}`,
          redfish_username: bmc.username, redfish_password: bmc.password },
        powerOn: () => bmc.systems.get(SYSTEM_ID)?.PowerState === 'On',
        agentRunning: () => agent?.running() ?? false,
        agentPid: () => agent?.pid,
        ramdiskBoots: () => ramdiskBoots,
        instanceBoots: () => instanceBoots,
        powerLog: () => bmc.resets.map((r) => r.type),
        async crashAgent() {
          const a = agent;
          if (!a) return;
          try { process.kill(a.pid, 'SIGKILL'); } catch { /* already gone */ }
          await a.exited;
        },
        agentRssKiB: async () => (agent ? readRssKiB(agent.pid) : undefined),
        holdBoot(hold) {
          held = hold;
          if (!hold && heldBoot) {
            heldBoot = false;
            if (bmcRef?.systems.get(SYSTEM_ID)?.PowerState === 'On' && !agent) startRamdisk();
          }
        },
      });
    }
    return {
      nodes,
      peakAgentRssKiB: () => peakRss,
      async sampleRss() {
        let sum = 0;
        for (const a of agents) {
          const r = await readRssKiB(a.pid);
          if (r === undefined) continue;
          sum += r;
          peakRss = Math.max(peakRss, r);
        }
        return sum;
      },
      stop,
    };
  } catch (e) {
    await stop().catch((err: unknown) => {
      throw new Error(`virtual nodes: start failed (${errorMessage(e)}) and so did the clean-up: ${errorMessage(err)}`);
    });
    throw e;
  }
}
