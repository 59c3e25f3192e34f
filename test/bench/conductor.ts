/**
 * `npm run bench -- conductor [--nodes 1000] [--rss-nodes 10000] [--concurrency 16] [--beats 3000] [--cold-runs 3]
 * [--tsx] [--vs-ironic]`
 *
 * The conductor runs in its own process (support/conductor-server.ts: the production conductor, real drivers and
 * heartbeat handling), bundled by esbuild and run by plain node the way production runs the compiled dist/
 * (`--tsx` runs it through the tsx loader instead, which costs a loader thread and ~30 MiB). The load comes from
 * this process through an undici Pool with bounded concurrency, 127.0.0.1 only.
 * Figures: node creates/s; ms per detail list of 1,000 nodes, warm (a repeated request: items come from the
 * render cache), with every item rendered (another Host header) and cold (the first request of a freshly started
 * conductor process, no cache, median of --cold-runs restarts); lookups/s; heartbeats/s for nodes deploying
 * through `direct` in wait call-back, each heartbeat handled for real (recorded, node locked, the agent's
 * command list read from support/stand-in-agent.ts, judged) with one heartbeat per node in flight; conductor RSS
 * with 10,000 nodes; each with the conductor's and the load generator's CPU time per request, since on a shared
 * machine the wall-clock rates depend on what else runs. `--vs-ironic` then runs the same creates, detail lists
 * and lookups against Debian's Ironic 21.4 (support/ironic-compare.ts) for ratios measured under the same
 * conditions; no figure of Ironic's is printed unless it was measured in this run.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { build } from 'esbuild';
import { spawnLong } from '../../common/exec.js';
import { numArg } from './support/args.js';
import { load } from './support/fleet-load.js';
import { benchIronic, ironicUnavailable } from './support/ironic-compare.js';
import { startStandInAgent } from './support/stand-in-agent.js';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const V = { 'x-openstack-ironic-api-version': '1.82', 'content-type': 'application/json' };
const WAIT_NODES = 16;

interface Res { status: number; body: string }

function createBody(i: number): Record<string, unknown> {
  return { driver: 'fake-hardware', name: `bench-${i}`,
    driver_info: { ipmi_address: `10.0.${i >> 8}.${i & 255}`, ipmi_username: 'admin', ipmi_password: 'pw' },
    properties: { cpus: 8, memory_mb: 16384, local_gb: 100, cpu_arch: 'x86_64' } };
}

async function req(pool: Pool, method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, body?: unknown): Promise<Res> {
  const r = await pool.request({ method, path, headers: V, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  return { status: r.statusCode, body: await r.body.text() };
}


function expect(r: Res, status: number, what: string): void {
  if (r.status !== status) throw new Error(`${what}: HTTP ${r.status} ${r.body.slice(0, 300)}`);
}

/** CPU time (user+system) the process has used so far, ms (clock ticks at 100 Hz). */
async function cpuMs(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

async function rssMib(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return kb / 1024;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

/** Bundles the bench conductor into build/bench (inside the repo so bare imports resolve to node_modules). */
async function bundleServer(): Promise<string> {
  const out = join(ROOT, 'build/bench/conductor-server.mjs');
  await build({ entryPoints: [join(ROOT, 'test/bench/support/conductor-server.ts')], outfile: out, bundle: true,
    platform: 'node', format: 'esm', target: 'node20', packages: 'external', logLevel: 'warning' });
  return out;
}

/** The conductor process, boxed: the child is itself a promise, which an async function would unwrap. */
interface Child { proc: ReturnType<typeof spawnLong>; pid: number }

/** Starts the conductor process and resolves once it prints READY. */
async function startServer(server: string, useTsx: boolean, port: number, dir: string): Promise<Child> {
  // BENCH_CHILD_NODE_FLAGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof") profiles the conductor process.
  const nodeFlags = process.env.BENCH_CHILD_NODE_FLAGS?.split(' ').filter(Boolean) ?? [];
  // Loaded from -e so that process.argv[1] is not the bundle (conductor/main.ts would run its CLI otherwise).
  const entry = [...(useTsx ? ['--import', 'tsx'] : []), '--input-type=module', '-e',
    `const m = await import(${JSON.stringify(server)}); await m.serveBenchConductor(${port}, ${JSON.stringify(dir)});`];
  const child = spawnLong(process.execPath, [...nodeFlags, ...entry], { cwd: ROOT, env: { LOG_LEVEL: 'warn' } });
  child.catch(() => undefined); // its exit is checked where it matters; this only keeps a kill from being an unhandled rejection
  try {
    await new Promise<void>((res, rej) => {
      const timer = setTimeout(() => rej(new Error('conductor did not start')), 60_000);
      child.stdout?.on('data', (d: Buffer) => { if (d.toString().includes('READY')) { clearTimeout(timer); res(); } });
      void child.then(() => rej(new Error('conductor exited')));
    });
  } catch (e) {
    await stopServer({ proc: child, pid: child.pid ?? 0 });
    throw e;
  }
  return { proc: child, pid: child.pid ?? 0 };
}

async function stopServer(child: Child): Promise<void> {
  child.proc.kill('SIGTERM');
  const t = setTimeout(() => child.proc.kill('SIGKILL'), 10_000);
  await child.proc.catch(() => undefined);
  clearTimeout(t);
}

export default async function bench(args: string[]): Promise<void> {
  const nodes = numArg(args, '--nodes', null, 1000);
  const rssNodes = numArg(args, '--rss-nodes', null, 10_000);
  const conc = numArg(args, '--concurrency', null, 16);
  const beats = numArg(args, '--beats', null, 3000);
  const coldRuns = numArg(args, '--cold-runs', null, 3);
  const vsIronic = args.includes('--vs-ironic');
  // Asked for a comparison that cannot run: say so before the work, not with a line that looks like a result.
  const noIronic = vsIronic ? ironicUnavailable() : undefined;
  if (noIronic) throw new Error(`--vs-ironic asked for, but Ironic cannot run here: ${noIronic}`);
  const load1 = (await readFile('/proc/loadavg', 'utf8')).split(' ')[0];
  console.log(`cores: ${availableParallelism()} (${cpus()[0]?.model ?? 'unknown cpu'}), load average ${load1}`);

  const dir = await mkdtemp(join(tmpdir(), 'bmts-bench-'));
  const { freePort } = await import('../fixtures/conductor.js');
  const port = await freePort();
  const useTsx = args.includes('--tsx');
  const server = useTsx ? join(ROOT, 'test/bench/support/conductor-server.ts') : await bundleServer();
  console.log(`conductor: own process (${useTsx ? 'tsx' : 'esbuild bundle, plain node'}); load: this process, undici ` +
    `pool of ${conc} connections to 127.0.0.1, bounded request counts`);
  const agent = await startStandInAgent();
  let child: Child | undefined;
  const newPool = (): Pool => new Pool(`http://127.0.0.1:${port}`, { connections: conc });
  let pool = newPool();
  try {
    child = await startServer(server, useTsx, port, dir);
    let pid = child.pid;

    // CPU ms the conductor spends per request: a load-independent view on a shared machine.
    let cpu0 = await cpuMs(pid);
    let own0 = process.cpuUsage();
    const cpuPer = async (n: number): Promise<string> => {
      const now = await cpuMs(pid);
      const per = (now - cpu0) / n;
      const own = process.cpuUsage(own0);
      cpu0 = now;
      own0 = process.cpuUsage();
      return `CPU ms/request: conductor ${per.toFixed(2)}, load generator ${((own.user + own.system) / 1000 / n).toFixed(2)}`;
    };
    // 0. warm-up (JIT, statement caches), then the warm-up nodes are deleted again
    const warm = 200;
    const warmUuids: string[] = [];
    await load(warm, conc, async (i) => {
      const r = await req(pool, 'POST', '/v1/nodes', { driver: 'fake-hardware', name: `warm-${i}` });
      expect(r, 201, 'warm-up create');
      warmUuids.push((JSON.parse(r.body) as { uuid: string }).uuid);
      expect(await req(pool, 'GET', `/v1/nodes/warm-${i}`), 200, 'warm-up show');
    });
    await load(warm, conc, async (i) => { expect(await req(pool, 'DELETE', `/v1/nodes/${warmUuids[i]}`), 204, 'warm-up delete'); });
    await cpuPer(1);

    // 1. creates
    const createRps = await load(nodes, conc, async (i) => {
      expect(await req(pool, 'POST', '/v1/nodes', createBody(i)), 201, 'create');
    });
    console.log(`create: ${nodes} nodes, ${createRps.toFixed(0)} req/s (concurrency ${conc}), ${await cpuPer(nodes)}`);

    // 2. detail list of 1,000 nodes, sequential requests
    const lists = 30;
    const listed = Math.min(nodes, 1000);
    const first = await req(pool, 'GET', '/v1/nodes?detail=True');
    expect(first, 200, 'detail warm-up');
    if ((JSON.parse(first.body) as { nodes: unknown[] }).nodes.length !== listed) {
      throw new Error('detail list has the wrong length');
    }
    const size = Buffer.byteLength(first.body);
    await cpuPer(1);
    // The load generator reads every byte but does not decode the ~2.4 MB it already checked above.
    const detailList = async (host?: string): Promise<void> => {
      const r = await pool.request({ method: 'GET', path: '/v1/nodes?detail=True', headers: host ? { ...V, host } : V });
      let got = 0;
      for await (const chunk of r.body) got += (chunk as Buffer).length;
      if (r.statusCode !== 200 || Math.abs(got - size) > size / 20) throw new Error(`detail: HTTP ${r.statusCode}, ${got} bytes (want ${size})`);
    };
    let t0 = process.hrtime.bigint();
    for (let i = 0; i < lists; i++) await detailList();
    const detailMs = Number(process.hrtime.bigint() - t0) / 1e6 / lists;
    console.log(`detail list, warm: ${listed} nodes, ${detailMs.toFixed(1)} ms/request (${(1000 / detailMs).toFixed(1)}/s), ` +
      `${await cpuPer(lists)} (unchanged nodes: items come from the conductor's render cache)`);
    // Every request with another Host header: other link URLs, so every item is rendered afresh (warm process).
    const renderLists = 10;
    t0 = process.hrtime.bigint();
    for (let i = 0; i < renderLists; i++) await detailList(`render-${i}.bench:${port}`);
    const renderedMs = Number(process.hrtime.bigint() - t0) / 1e6 / renderLists;
    console.log(`detail list, every item rendered (warm process): ${renderedMs.toFixed(1)} ms/request ` +
      `(${(1000 / renderedMs).toFixed(1)}/s), ${await cpuPer(renderLists)}`);
    // Cold: the first request a freshly started conductor serves (no render cache, nothing compiled yet).
    const cold: number[] = [];
    for (let i = 0; i < coldRuns; i++) {
      await pool.close();
      await stopServer(child);
      child = await startServer(server, useTsx, port, dir);
      pid = child.pid;
      pool = newPool();
      t0 = process.hrtime.bigint();
      await detailList();
      cold.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    const coldMs = median(cold);
    cpu0 = await cpuMs(pid);
    own0 = process.cpuUsage();
    console.log(`detail list, cold (first request after a conductor start, ${coldRuns} restart(s)): ` +
      `${cold.map((x) => x.toFixed(0)).join(', ')} ms, median ${coldMs.toFixed(1)} ms`);

    // 3. lookup + heartbeat for nodes deploying through `direct`, waiting in wait call-back on the stand-in agent
    const macs: string[] = [];
    const uuids: string[] = [];
    const tokens: string[] = [];
    const settle = async (uuid: string, want: string): Promise<void> => {
      for (let k = 0; ; k++) {
        const s = JSON.parse((await req(pool, 'GET', `/v1/nodes/${uuid}`)).body) as
          { provision_state: string; reservation: string | null; last_error: string | null };
        if (s.reservation === null && s.provision_state === want) return;
        if (k > 1000 || s.provision_state.endsWith('failed')) {
          throw new Error(`node ${uuid} is ${s.provision_state}, want ${want}: ${s.last_error}`);
        }
        await new Promise((r) => setTimeout(r, 5));
      }
    };
    for (let i = 0; i < WAIT_NODES; i++) {
      const created = await req(pool, 'POST', '/v1/nodes', { driver: 'fake-hardware', deploy_interface: 'direct',
        name: `wait-${i}`, instance_info: { image_source: 'http://127.0.0.1:9/bench.raw', image_os_hash_algo: 'sha256',
          image_os_hash_value: '0'.repeat(64) } });
      expect(created, 201, 'create wait node');
      const n = JSON.parse(created.body) as { uuid: string };
      const mac = `52:54:00:be:00:${i.toString(16).padStart(2, '0')}`;
      expect(await req(pool, 'POST', '/v1/ports', { address: mac, node_uuid: n.uuid }), 201, 'port');
      for (const [target, want] of [['manage', 'manageable'], ['provide', 'available'], ['active', 'wait call-back']] as const) {
        expect(await req(pool, 'PUT', `/v1/nodes/${n.uuid}/states/provision`, { target }), 202, target);
        await settle(n.uuid, want);
      }
      const lk = await req(pool, 'GET', `/v1/lookup?addresses=${mac}`);
      expect(lk, 200, 'first lookup');
      const token = (JSON.parse(lk.body) as { config: { agent_token: string } }).config.agent_token;
      // The first heartbeat of the ramdisk: the conductor reads the agent's deploy steps and starts write_image.
      expect(await req(pool, 'POST', `/v1/heartbeat/${n.uuid}`, { callback_url: agent.url, agent_version: '10.0.0',
        agent_token: token }), 202, 'first heartbeat');
      for (let k = 0; agent.commands(token).at(-1)?.command_name !== 'execute_deploy_step'; k++) {
        if (k > 2000) throw new Error(`node ${n.uuid}: the conductor did not start write_image on the stand-in agent`);
        await new Promise((r) => setTimeout(r, 5));
      }
      await settle(n.uuid, 'wait call-back');
      macs.push(mac);
      uuids.push(n.uuid);
      tokens.push(token);
    }
    await cpuPer(1);
    const lookups = 5000;
    const lookupRps = await load(lookups, conc, async (i) => {
      expect(await req(pool, 'GET', `/v1/lookup?addresses=${macs[i % WAIT_NODES]}`), 200, 'lookup');
    });
    console.log(`lookup: ${lookups} requests, ${lookupRps.toFixed(0)} req/s, ${await cpuPer(lookups)}`);
    // One heartbeat per node in flight: the next one goes out once the conductor has read the agent's command
    // list for the previous one, so every heartbeat counted was handled, none coalesced with another.
    const polls0 = agent.polls();
    let sent = 0;
    t0 = process.hrtime.bigint();
    await Promise.all(uuids.map(async (uuid, k) => {
      const token = tokens[k]!;
      while (sent < beats) {
        sent++;
        const handled = agent.nextPoll(token);
        expect(await req(pool, 'POST', `/v1/heartbeat/${uuid}`, { callback_url: agent.url, agent_version: '10.0.0',
          agent_token: token }), 202, 'heartbeat');
        await handled;
      }
    }));
    const heartbeatRps = beats / (Number(process.hrtime.bigint() - t0) / 1e9);
    const polled = agent.polls() - polls0;
    if (polled < beats) throw new Error(`${beats} heartbeats but only ${polled} reads of the agent's command list`);
    for (const uuid of uuids) await settle(uuid, 'wait call-back');
    console.log(`heartbeat: ${beats} requests over ${WAIT_NODES} nodes in wait call-back (direct deploy, write_image ` +
      `running on the stand-in agent), ${heartbeatRps.toFixed(0)} handled/s, ${await cpuPer(beats)} ` +
      `(load generator includes the stand-in agent)`);

    // 4. RSS with 10,000 nodes
    const have = nodes + WAIT_NODES;
    await load(Math.max(0, rssNodes - have), conc, async (i) => {
      expect(await req(pool, 'POST', '/v1/nodes', { driver: 'fake-hardware', name: `rss-${i}`,
        properties: { cpus: 8, memory_mb: 16384 } }), 201, 'create');
    });
    expect(await req(pool, 'GET', '/v1/nodes?detail=True'), 200, 'detail at 10k');
    const rss = await rssMib(pid);
    console.log(`rss: ${rss.toFixed(0)} MiB with ${Math.max(rssNodes, have)} nodes`);
    const load2 = (await readFile('/proc/loadavg', 'utf8')).split(' ')[0];
    console.log(`load average at the end ${load2}`);
    let vs = '';
    if (vsIronic) {
      // The same load against the real Ironic, now, on this machine (our conductor sits idle meanwhile).
      const ir = await benchIronic({ nodes: listed, conc, lists: 5, lookups: 1000, createBody });
      const load3 = (await readFile('/proc/loadavg', 'utf8')).split(' ')[0];
      console.log(`ironic 21.4 (same load generator, load average ${load3}): create ${ir.createRps.toFixed(0)} req/s ` +
        `(${ir.createCpuMs.toFixed(2)} CPU ms), detail list ${ir.detailMs.toFixed(0)} ms (${ir.detailCpuMs.toFixed(0)} ` +
        `CPU ms), lookup ${ir.lookupRps.toFixed(0)} req/s (${ir.lookupCpuMs.toFixed(2)} CPU ms)`);
      const x = (a: number, b: number): string => (a / b).toFixed(1);
      console.log(`ours / ironic: create ${x(createRps, ir.createRps)}x, detail warm ${x(ir.detailMs, detailMs)}x, ` +
        `detail cold ${x(ir.detailMs, coldMs)}x, every item rendered ${x(ir.detailMs, renderedMs)}x, ` +
        `lookup ${x(lookupRps, ir.lookupRps)}x (ironic's detail figure: its mean after one warm-up request)`);
      vs = ` vs_ironic_create=${x(createRps, ir.createRps)} vs_ironic_detail_warm=${x(ir.detailMs, detailMs)} ` +
        `vs_ironic_detail_cold=${x(ir.detailMs, coldMs)} vs_ironic_detail_rendered=${x(ir.detailMs, renderedMs)} ` +
        `vs_ironic_lookup=${x(lookupRps, ir.lookupRps)}`;
    }
    console.log(`conductor create_rps=${createRps.toFixed(0)} detail_warm_ms=${detailMs.toFixed(1)} ` +
      `detail_cold_ms=${coldMs.toFixed(1)} detail_rendered_ms=${renderedMs.toFixed(1)} lookup_rps=${lookupRps.toFixed(0)} ` +
      `heartbeat_rps=${heartbeatRps.toFixed(0)} rss_nodes=${Math.max(rssNodes, have)} rss_mib=${rss.toFixed(0)}${vs}`);
  } finally {
    await pool.close();
    if (child) await stopServer(child);
    await agent.close();
    await rm(dir, { recursive: true, force: true });
  }
}
