/**
 * The fleet bench's API load (used by fleet.ts and fleet-cluster.ts): `measure()` takes the conductors sharing
 * one database and spreads creates, detail lists, lookups and heartbeats over them round-robin, so one conductor
 * and several are measured the same way.
 */
import { readdir, readFile } from 'node:fs/promises';
import { Pool } from 'undici';
import { numArg } from './args.js';
import { cpuMs, rssMib, type BenchConductor } from './conductor-process.js';

const V = { 'x-openstack-ironic-api-version': '1.82', 'content-type': 'application/json' };
const LOOKUP_NODES = 16;

export interface FleetFigures {
  createRps: number;
  detailMs: number;
  lookupRps: number;
  /** Heartbeats/s from agents holding a token (fast-track nodes, so each one is recorded: a write under the lock). */
  heartbeatRps: number;
  /** RSS of each conductor with rssNodes enrolled (MiB). */
  rssMib: number[];
  /** Conductor CPU ms per create / per detail list / per lookup, summed over the conductors. */
  cpu: { create: number; detail: number; lookup: number; heartbeat: number };
  /**
   * The same for the database server (PostgreSQL: its backends and helper processes, live and exited; undefined
   * for SQLite, which runs inside the conductor) and for this load-generating process: on a machine with few
   * cores all three share them, so where the CPU goes says what bounds the throughput.
   */
  dbCpu?: { create: number; detail: number; lookup: number; heartbeat: number };
  loadCpu: { create: number; detail: number; lookup: number; heartbeat: number };
  /** Context switches of the conductors per request (voluntary: waits for I/O; the rest: preempted). */
  switches: { create: number; detail: number; lookup: number; heartbeat: number };
}

export interface FleetSettings {
  nodes: number; rssNodes: number; conc: number; lookups: number; lists: number; heartbeats: number;
}

/** The settings every fleet bench reads from its arguments. */
export function fleetSettings(args: string[]): FleetSettings {
  return {
    nodes: numArg(args, '--nodes', null, 1000), rssNodes: numArg(args, '--rss-nodes', null, 10_000),
    conc: numArg(args, '--concurrency', null, 16), lookups: numArg(args, '--lookups', null, 5000),
    lists: numArg(args, '--lists', null, 20), heartbeats: numArg(args, '--heartbeats', null, 2000),
  };
}

interface Res { status: number; body: string }

/** Round-robin requests over the conductors' pools. */
class Spread {
  private next = 0;
  readonly pools: Pool[];
  constructor(urls: readonly string[], conc: number) {
    this.pools = urls.map((u) => new Pool(u, { connections: conc }));
  }
  pool(): Pool {
    const p = this.pools[this.next++ % this.pools.length];
    if (!p) throw new Error('no conductor');
    return p;
  }
  async req(method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<Res> {
    const r = await this.pool().request({ method, path, headers: V, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
    return { status: r.statusCode, body: await r.body.text() };
  }
  close(): Promise<unknown> {
    return Promise.all(this.pools.map((p) => p.close()));
  }
}

function expect(r: Res, status: number, what: string): void {
  if (r.status !== status) throw new Error(`${what}: HTTP ${r.status} ${r.body.slice(0, 300)}`);
}

/** Runs `total` requests with `conc` in flight; returns requests per second. */
export async function load(total: number, conc: number, one: (i: number) => Promise<void>): Promise<number> {
  let next = 0;
  const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: conc }, async () => {
    while (next < total) await one(next++);
  }));
  return total / (Number(process.hrtime.bigint() - t0) / 1e9);
}

function createBody(i: number, prefix: string): Record<string, unknown> {
  return { driver: 'fake-hardware', name: `${prefix}-${i}`,
    driver_info: { ipmi_address: `10.0.${i >> 8}.${i & 255}`, ipmi_username: 'admin', ipmi_password: 'pw' },
    properties: { cpus: 8, memory_mb: 16384, local_gb: 100, cpu_arch: 'x86_64' } };
}

/** Context switches of a process so far (voluntary + involuntary, all its threads). */
async function contextSwitches(pid: number): Promise<number> {
  let n = 0;
  for (const tid of await readdir(`/proc/${pid}/task`).catch(() => [] as string[])) {
    const st = await readFile(`/proc/${pid}/task/${tid}/status`, 'utf8').catch(() => '');
    for (const m of st.matchAll(/^(?:non)?voluntary_ctxt_switches:\s+(\d+)/gm)) n += Number(m[1]);
  }
  return n;
}

/** CPU ms used so far by a server process and its children (live ones read one by one, exited ones as reaped). */
export async function treeCpuMs(pid: number): Promise<number> {
  const stat = async (p: number | string): Promise<string[] | undefined> => {
    try {
      const t = await readFile(`/proc/${p}/stat`, 'utf8');
      return t.slice(t.lastIndexOf(')') + 2).split(' ');
    } catch {
      return undefined; // exited meanwhile
    }
  };
  const own = await stat(pid);
  if (!own) return 0;
  // utime, stime, cutime, cstime (fields 14-17), clock ticks at 100 Hz.
  let ticks = Number(own[11]) + Number(own[12]) + Number(own[13]) + Number(own[14]);
  for (const p of await readdir('/proc')) {
    if (!/^\d+$/.test(p) || Number(p) === pid) continue;
    const f = await stat(p);
    if (f && Number(f[1]) === pid) ticks += Number(f[11]) + Number(f[12]);
  }
  return ticks * 10;
}

/**
 * The fleet load against `conductors` (all on one database), spread round-robin; `dbPid` is the database
 * server's pid (PostgreSQL's postmaster) when it runs in processes of its own.
 */
export async function measure(conductors: readonly BenchConductor[], s: FleetSettings, dbPid?: number): Promise<FleetFigures> {
  const api = new Spread(conductors.map((c) => c.url), s.conc);
  const conductorCpu = async (): Promise<number> =>
    (await Promise.all(conductors.map((c) => cpuMs(c.pid)))).reduce((a, b) => a + b, 0);
  const selfCpu = (): number => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
  // Conductor, database server and load generator CPU ms so far; cpu() returns the conductors' (as before),
  // spent() the per-request split of all three since a mark.
  const switches = async (): Promise<number> =>
    (await Promise.all(conductors.map((c) => contextSwitches(c.pid)))).reduce((a, b) => a + b, 0);
  let marks = [0, 0, 0, 0];
  const cpu = async (): Promise<number> => {
    marks = [await conductorCpu(), dbPid ? await treeCpuMs(dbPid) : 0, selfCpu(), await switches()];
    return marks[0] as number;
  };
  const spent = async (n: number): Promise<[number, number, number, number]> => {
    const before = marks;
    const now = [await conductorCpu(), dbPid ? await treeCpuMs(dbPid) : 0, selfCpu(), await switches()];
    return [0, 1, 2, 3].map((i) => ((now[i] as number) - (before[i] as number)) / n) as [number, number, number, number];
  };
  try {
    // Warm-up (JIT, statement caches, pools), then the warm-up nodes are deleted again.
    const warm: string[] = [];
    await load(200, s.conc, async (i) => {
      const r = await api.req('POST', '/v1/nodes', { driver: 'fake-hardware', name: `warm-${i}` });
      expect(r, 201, 'warm-up create');
      warm.push((JSON.parse(r.body) as { uuid: string }).uuid);
      expect(await api.req('GET', `/v1/nodes/warm-${i}`), 200, 'warm-up show');
    });
    await load(warm.length, s.conc, async (i) => { expect(await api.req('DELETE', `/v1/nodes/${warm[i]}`), 204, 'warm-up delete'); });

    await cpu();
    const createRps = await load(s.nodes, s.conc, async (i) => {
      expect(await api.req('POST', '/v1/nodes', createBody(i, 'fleet')), 201, 'create');
    });
    const [createCpu, createDb, createLoad, createSwitches] = await spent(s.nodes);

    const listed = Math.min(s.nodes, 1000);
    const first = await api.req('GET', '/v1/nodes/detail');
    expect(first, 200, 'detail');
    if ((JSON.parse(first.body) as { nodes: unknown[] }).nodes.length !== listed) throw new Error('detail list has the wrong length');
    await cpu();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < s.lists; i++) {
      const r = await api.pool().request({ method: 'GET', path: '/v1/nodes/detail', headers: V });
      let got = 0;
      for await (const chunk of r.body) got += (chunk as Buffer).length;
      if (r.statusCode !== 200 || got < first.body.length / 2) throw new Error(`detail: HTTP ${r.statusCode}, ${got} bytes`);
    }
    const detailMs = Number(process.hrtime.bigint() - t0) / 1e6 / s.lists;
    const [detailCpu, detailDb, detailLoad, detailSwitches] = await spent(s.lists);

    const macs: string[] = [];
    const agents: { uuid: string; token: string; url: string }[] = [];
    for (let i = 0; i < LOOKUP_NODES; i++) {
      // fast_track: an enrolled node records its agent's heartbeats (Ironic's fast_track_able), so a heartbeat
      // here is the full path: token check, lock, write.
      const n = await api.req('POST', '/v1/nodes', { driver: 'fake-hardware', name: `lookup-${i}`, driver_info: { fast_track: true } });
      expect(n, 201, 'lookup node');
      const uuid = (JSON.parse(n.body) as { uuid: string }).uuid;
      const mac = `52:54:00:f1:00:${i.toString(16).padStart(2, '0')}`;
      expect(await api.req('POST', '/v1/ports', { address: mac, node_uuid: uuid }), 201, 'port');
      // The first lookup issues the agent token (a write); the measured ones are the agent's steady state.
      const first = await api.req('GET', `/v1/lookup?addresses=${mac}`);
      expect(first, 200, 'first lookup');
      const token = (JSON.parse(first.body) as { config: { agent_token?: string } }).config.agent_token;
      if (!token || token === '******') throw new Error('the first lookup issued no agent token');
      macs.push(mac);
      agents.push({ uuid, token, url: `http://127.0.0.1:${9999 - i}` });
    }
    await cpu();
    const lookupRps = await load(s.lookups, s.conc, async (i) => {
      expect(await api.req('GET', `/v1/lookup?addresses=${macs[i % LOOKUP_NODES]}`), 200, 'lookup');
    });
    const [lookupCpu, lookupDb, lookupLoad, lookupSwitches] = await spent(s.lookups);

    await cpu();
    const heartbeatRps = await load(s.heartbeats, s.conc, async (i) => {
      const a = agents[i % LOOKUP_NODES];
      if (!a) throw new Error('no agent');
      expect(await api.req('POST', `/v1/heartbeat/${a.uuid}`, { callback_url: a.url, agent_token: a.token, agent_version: '9.4.0' }),
        202, 'heartbeat');
    });
    const [heartbeatCpu, heartbeatDb, heartbeatLoad, heartbeatSwitches] = await spent(s.heartbeats);
    const last = await api.req('GET', `/v1/nodes/${agents[0]?.uuid}?fields=driver_internal_info`);
    if (!(JSON.parse(last.body) as { driver_internal_info: Record<string, unknown> }).driver_internal_info.agent_last_heartbeat) {
      throw new Error('heartbeats were answered but not recorded');
    }

    const have = s.nodes + LOOKUP_NODES;
    await load(Math.max(0, s.rssNodes - have), s.conc, async (i) => {
      expect(await api.req('POST', '/v1/nodes', { driver: 'fake-hardware', name: `rss-${i}`,
        properties: { cpus: 8, memory_mb: 16384 } }), 201, 'create');
    });
    for (let i = 0; i < conductors.length; i++) expect(await api.req('GET', '/v1/nodes/detail'), 200, 'detail at 10k');
    const rss = await Promise.all(conductors.map((c) => rssMib(c.pid)));
    return { createRps, detailMs, lookupRps, heartbeatRps, rssMib: rss,
      cpu: { create: createCpu, detail: detailCpu, lookup: lookupCpu, heartbeat: heartbeatCpu },
      ...(dbPid ? { dbCpu: { create: createDb, detail: detailDb, lookup: lookupDb, heartbeat: heartbeatDb } } : {}),
      loadCpu: { create: createLoad, detail: detailLoad, lookup: lookupLoad, heartbeat: heartbeatLoad },
      switches: { create: createSwitches, detail: detailSwitches, lookup: lookupSwitches, heartbeat: heartbeatSwitches } };
  } finally {
    await api.close();
  }
}


/** One line of figures per setup, before the bench's key=value line. */
export function reportFleet(label: string, f: FleetFigures, s: FleetSettings): void {
  console.log(`${label}: create ${f.createRps.toFixed(0)} req/s (${f.cpu.create.toFixed(2)} conductor CPU ms each), ` +
    `detail list of ${Math.min(s.nodes, 1000)} nodes ${f.detailMs.toFixed(1)} ms (${(1000 / f.detailMs).toFixed(1)}/s, ` +
    `${f.cpu.detail.toFixed(0)} CPU ms), lookup ${f.lookupRps.toFixed(0)} req/s (${f.cpu.lookup.toFixed(2)} CPU ms), ` +
    `heartbeat ${f.heartbeatRps.toFixed(0)} req/s (${f.cpu.heartbeat.toFixed(2)} CPU ms), ` +
    `RSS with ${s.rssNodes} nodes: ${f.rssMib.map((r) => `${r.toFixed(0)} MiB`).join(', ')}`);
  const split = (k: keyof FleetFigures['cpu'], digits: number): string =>
    `conductors ${f.cpu[k].toFixed(digits)}${f.dbCpu ? ` + PostgreSQL ${f.dbCpu[k].toFixed(digits)}` : ''} + ` +
    `load generator ${f.loadCpu[k].toFixed(digits)} (conductor context switches ${f.switches[k].toFixed(1)})`;
  console.log(`${label}: CPU ms per request: create ${split('create', 2)}; detail list ${split('detail', 1)}; ` +
    `lookup ${split('lookup', 3)}; heartbeat ${split('heartbeat', 2)}`);
}

/** The key=value figures of one setup (`pg3`, `pg1`, `sqlite`). */
export function fleetKeys(prefix: string, f: FleetFigures): string[] {
  return [`${prefix}_create_rps=${f.createRps.toFixed(0)}`, `${prefix}_lookup_rps=${f.lookupRps.toFixed(0)}`,
    `${prefix}_detail_ms=${f.detailMs.toFixed(1)}`, `${prefix}_heartbeat_rps=${f.heartbeatRps.toFixed(0)}`,
    `${prefix}_rss_mib_10k=${Math.max(...f.rssMib).toFixed(0)}`];
}
