/**
 * `npm run bench -- conductor [--nodes 1000] [--rss-nodes 10000] [--concurrency 16] [--tsx] [--vs-ironic]`
 *
 * The conductor runs in its own process (support/conductor-server.ts: a deploy interface that parks nodes in
 * `wait call-back` and a no-op heartbeat handler), bundled by esbuild and run by plain node the way production
 * runs the compiled dist/ (`--tsx` runs it through the tsx loader instead, which costs a loader thread and
 * ~30 MiB). The load comes from this process through an undici Pool with bounded concurrency, 127.0.0.1 only.
 * Figures: node creates/s, ms per detail list of 1,000 nodes, lookups/s and heartbeats/s for nodes in wait
 * call-back, conductor RSS with 10,000 nodes; each with the conductor's and the load generator's CPU time per
 * request, since on a shared machine the wall-clock rates depend on what else runs. `--vs-ironic` then runs the
 * same creates, detail lists and lookups against Debian's Ironic 21.4 (support/ironic-compare.ts) for ratios
 * measured under the same conditions.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { build } from 'esbuild';
import { spawnLong } from '../../common/exec.js';
import { benchIronic, ironicUnavailable } from './support/ironic-compare.js';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const V = { 'x-openstack-ironic-api-version': '1.82', 'content-type': 'application/json' };
const WAIT_NODES = 16;

function flag(args: string[], name: string, dflt: number): number {
  const i = args.indexOf(name);
  const v = i >= 0 ? Number(args[i + 1]) : dflt;
  if (!Number.isFinite(v) || v <= 0) throw new Error(`${name} needs a positive number`);
  return v;
}

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

/** Runs `total` requests with `conc` in flight; returns requests per second. */
async function load(total: number, conc: number, one: (i: number) => Promise<void>): Promise<number> {
  let next = 0;
  const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: conc }, async () => {
    while (next < total) await one(next++);
  }));
  return total / (Number(process.hrtime.bigint() - t0) / 1e9);
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

/** Bundles the bench conductor into build/bench (inside the repo so bare imports resolve to node_modules). */
async function bundleServer(): Promise<string> {
  const out = join(ROOT, 'build/bench/conductor-server.mjs');
  await build({ entryPoints: [join(ROOT, 'test/bench/support/conductor-server.ts')], outfile: out, bundle: true,
    platform: 'node', format: 'esm', target: 'node20', packages: 'external', logLevel: 'warning' });
  return out;
}

export default async function bench(args: string[]): Promise<void> {
  const nodes = flag(args, '--nodes', 1000);
  const rssNodes = flag(args, '--rss-nodes', 10_000);
  const conc = flag(args, '--concurrency', 16);
  const load1 = (await readFile('/proc/loadavg', 'utf8')).split(' ')[0];
  console.log(`cores: ${availableParallelism()} (${cpus()[0]?.model ?? 'unknown cpu'}), load average ${load1}`);

  const dir = await mkdtemp(join(tmpdir(), 'bmts-bench-'));
  const { freePort } = await import('../fixtures/conductor.js');
  const port = await freePort();
  // BENCH_CHILD_NODE_FLAGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof") profiles the conductor process.
  const nodeFlags = process.env.BENCH_CHILD_NODE_FLAGS?.split(' ').filter(Boolean) ?? [];
  const useTsx = args.includes('--tsx');
  const server = useTsx ? join(ROOT, 'test/bench/support/conductor-server.ts') : await bundleServer();
  // Loaded from -e so that process.argv[1] is not the bundle (conductor/main.ts would run its CLI otherwise).
  const entry = [...(useTsx ? ['--import', 'tsx'] : []), '--input-type=module', '-e',
    `const m = await import(${JSON.stringify(server)}); await m.serveBenchConductor(${port}, ${JSON.stringify(dir)});`];
  console.log(`conductor: own process (${useTsx ? 'tsx' : 'esbuild bundle, plain node'}); load: this process, undici ` +
    `pool of ${conc} connections to 127.0.0.1, bounded request counts`);
  const child = spawnLong(process.execPath, [...nodeFlags, ...entry],
    { cwd: ROOT, env: { LOG_LEVEL: 'warn' } });
  child.catch(() => undefined); // its exit is checked where it matters; this only keeps a kill from being an unhandled rejection
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: conc });
  try {
    await new Promise<void>((res, rej) => {
      const timer = setTimeout(() => rej(new Error('conductor did not start')), 60_000);
      child.stdout?.on('data', (d: Buffer) => { if (d.toString().includes('READY')) { clearTimeout(timer); res(); } });
      void child.then(() => rej(new Error('conductor exited')));
    });
    const pid = child.pid ?? 0;

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
    const first = await req(pool, 'GET', '/v1/nodes?detail=True');
    expect(first, 200, 'detail warm-up');
    if ((JSON.parse(first.body) as { nodes: unknown[] }).nodes.length !== Math.min(nodes, 1000)) {
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
    console.log(`detail list: ${Math.min(nodes, 1000)} nodes, ${detailMs.toFixed(1)} ms/request (${(1000 / detailMs).toFixed(1)}/s), ` +
      `${await cpuPer(lists)} (unchanged nodes: items come from the conductor's render cache)`);
    // Every request with another Host header: other link URLs, so every item is rendered afresh.
    const coldLists = 10;
    t0 = process.hrtime.bigint();
    for (let i = 0; i < coldLists; i++) await detailList(`cold-${i}.bench:${port}`);
    const coldMs = Number(process.hrtime.bigint() - t0) / 1e6 / coldLists;
    console.log(`detail list, every item rendered: ${coldMs.toFixed(1)} ms/request (${(1000 / coldMs).toFixed(1)}/s), ` +
      `${await cpuPer(coldLists)}`);

    // 3. lookup + heartbeat for nodes in wait call-back
    const macs: string[] = [];
    const uuids: string[] = [];
    const tokens: string[] = [];
    for (let i = 0; i < WAIT_NODES; i++) {
      const n = JSON.parse((await req(pool, 'POST', '/v1/nodes', { driver: 'bench-hw', name: `wait-${i}` })).body) as { uuid: string };
      const mac = `52:54:00:be:00:${i.toString(16).padStart(2, '0')}`;
      expect(await req(pool, 'POST', '/v1/ports', { address: mac, node_uuid: n.uuid }), 201, 'port');
      for (const target of ['manage', 'provide', 'active']) {
        expect(await req(pool, 'PUT', `/v1/nodes/${n.uuid}/states/provision`, { target }), 202, target);
        for (let k = 0; ; k++) {
          const s = JSON.parse((await req(pool, 'GET', `/v1/nodes/${n.uuid}`)).body) as { provision_state: string; reservation: string | null };
          if (s.reservation === null && s.provision_state !== 'verifying' && s.provision_state !== 'cleaning' &&
            s.provision_state !== 'deploying') break;
          if (k > 500) throw new Error('node did not settle');
          await new Promise((r) => setTimeout(r, 5));
        }
      }
      const lk = JSON.parse((await req(pool, 'GET', `/v1/lookup?addresses=${mac}`)).body) as { config: { agent_token: string } };
      macs.push(mac);
      uuids.push(n.uuid);
      tokens.push(lk.config.agent_token);
    }
    await cpuPer(1);
    const lookups = 5000;
    const lookupRps = await load(lookups, conc, async (i) => {
      expect(await req(pool, 'GET', `/v1/lookup?addresses=${macs[i % WAIT_NODES]}`), 200, 'lookup');
    });
    console.log(`lookup: ${lookups} requests, ${lookupRps.toFixed(0)} req/s, ${await cpuPer(lookups)}`);
    const beats = 5000;
    const heartbeatRps = await load(beats, conc, async (i) => {
      const k = i % WAIT_NODES;
      expect(await req(pool, 'POST', `/v1/heartbeat/${uuids[k]}`, { callback_url: `http://127.0.0.1:${9000 + k}`,
        agent_version: '10.0.0', agent_token: tokens[k] }), 202, 'heartbeat');
    });
    console.log(`heartbeat: ${beats} requests, ${heartbeatRps.toFixed(0)} req/s (no-op handler), ${await cpuPer(beats)}`);

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
    console.log(`load average at the end ${load2}; reference (Debian Ironic, this kind of machine): ~90 creates/s, ` +
      `~3 detail lists/s, ~190 lookups/s`);
    let vs = '';
    if (args.includes('--vs-ironic')) {
      // The same load against the real Ironic, now, on this machine (our conductor sits idle meanwhile).
      const why = ironicUnavailable();
      if (why) console.log(`ironic comparison skipped: ${why}`);
      else {
        const ir = await benchIronic({ nodes: Math.min(nodes, 1000), conc, lists: 5, lookups: 1000, createBody });
        const load3 = (await readFile('/proc/loadavg', 'utf8')).split(' ')[0];
        console.log(`ironic 21.4 (same load generator, load average ${load3}): create ${ir.createRps.toFixed(0)} req/s ` +
          `(${ir.createCpuMs.toFixed(2)} CPU ms), detail list ${ir.detailMs.toFixed(0)} ms (${ir.detailCpuMs.toFixed(0)} ` +
          `CPU ms), lookup ${ir.lookupRps.toFixed(0)} req/s (${ir.lookupCpuMs.toFixed(2)} CPU ms)`);
        const x = (a: number, b: number): string => (a / b).toFixed(1);
        console.log(`ours / ironic: create ${x(createRps, ir.createRps)}x, detail ${x(ir.detailMs, detailMs)}x ` +
          `(every item rendered: ${x(ir.detailMs, coldMs)}x), lookup ${x(lookupRps, ir.lookupRps)}x`);
        vs = ` vs_ironic_create=${x(createRps, ir.createRps)} vs_ironic_detail=${x(ir.detailMs, detailMs)} ` +
          `vs_ironic_detail_cold=${x(ir.detailMs, coldMs)} vs_ironic_lookup=${x(lookupRps, ir.lookupRps)}`;
      }
    }
    console.log(`conductor create_rps=${createRps.toFixed(0)} detail_ms=${detailMs.toFixed(1)} ` +
      `detail_cold_ms=${coldMs.toFixed(1)} lookup_rps=${lookupRps.toFixed(0)} ` +
      `heartbeat_rps=${heartbeatRps.toFixed(0)} rss_mib_10k=${rss.toFixed(0)}${vs}`);
  } finally {
    await pool.close();
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await child.catch(() => undefined); // killed on purpose: a non-zero exit is expected
    clearTimeout(t);
    await rm(dir, { recursive: true, force: true });
  }
}
