/**
 * `npm run bench -- fleet [--nodes 1000] [--rss-nodes 10000] [--concurrency 16] [--lookups 5000] [--lists 20]
 * [--only sqlite|pg1]`
 *
 * The same API load against each store setup, every conductor in its own process (support/conductor-process.ts):
 * SQLite×1 (the embedded default) and PostgreSQL×1 (a real PostgreSQL 15 from lab/postgres.ts with its durable
 * defaults: fsync and synchronous_commit on). For each: node creates/s (concurrency 16), detail lists of 1,000
 * nodes (ms/request, sequential), lookups/s (restrict_lookup off so enrolled nodes with ports answer), and the
 * conductor's RSS once 10,000 nodes are enrolled and listed. `measure()` takes a list of conductor URLs and
 * spreads the load over them round-robin, so several conductors on one database are measured the same way.
 * Last line: `fleet pg1_create_rps=… sqlite_create_rps=… rss_mib_10k=… ...` (keys of setups not run are left out;
 * rss_mib_10k is the largest conductor RSS measured).
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';
import { startPostgres, type LabPostgres } from '../../lab/postgres.js';
import { freePort } from '../fixtures/conductor.js';
import { numArg } from './support/args.js';
import {
  bundleBenchConductor, cpuMs, rssMib, startBenchConductor, stopBenchConductor, type BenchConductor,
} from './support/conductor-process.js';

const V = { 'x-openstack-ironic-api-version': '1.82', 'content-type': 'application/json' };
const LOOKUP_NODES = 16;

export interface FleetFigures {
  createRps: number;
  detailMs: number;
  lookupRps: number;
  /** RSS of each conductor with rssNodes enrolled (MiB). */
  rssMib: number[];
  /** Conductor CPU ms per create / per detail list / per lookup, summed over the conductors. */
  cpu: { create: number; detail: number; lookup: number };
}

export interface FleetSettings { nodes: number; rssNodes: number; conc: number; lookups: number; lists: number }

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

async function load(total: number, conc: number, one: (i: number) => Promise<void>): Promise<number> {
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

/** The fleet load against `conductors` (all on one database), spread round-robin. */
export async function measure(conductors: readonly BenchConductor[], s: FleetSettings): Promise<FleetFigures> {
  const api = new Spread(conductors.map((c) => c.url), s.conc);
  const cpu = async (): Promise<number> => (await Promise.all(conductors.map((c) => cpuMs(c.pid)))).reduce((a, b) => a + b, 0);
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

    let c0 = await cpu();
    const createRps = await load(s.nodes, s.conc, async (i) => {
      expect(await api.req('POST', '/v1/nodes', createBody(i, 'fleet')), 201, 'create');
    });
    const createCpu = (await cpu() - c0) / s.nodes;

    const listed = Math.min(s.nodes, 1000);
    const first = await api.req('GET', '/v1/nodes/detail');
    expect(first, 200, 'detail');
    if ((JSON.parse(first.body) as { nodes: unknown[] }).nodes.length !== listed) throw new Error('detail list has the wrong length');
    c0 = await cpu();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < s.lists; i++) {
      const r = await api.pool().request({ method: 'GET', path: '/v1/nodes/detail', headers: V });
      let got = 0;
      for await (const chunk of r.body) got += (chunk as Buffer).length;
      if (r.statusCode !== 200 || got < first.body.length / 2) throw new Error(`detail: HTTP ${r.statusCode}, ${got} bytes`);
    }
    const detailMs = Number(process.hrtime.bigint() - t0) / 1e6 / s.lists;
    const detailCpu = (await cpu() - c0) / s.lists;

    const macs: string[] = [];
    for (let i = 0; i < LOOKUP_NODES; i++) {
      const n = await api.req('POST', '/v1/nodes', { driver: 'fake-hardware', name: `lookup-${i}` });
      expect(n, 201, 'lookup node');
      const mac = `52:54:00:f1:00:${i.toString(16).padStart(2, '0')}`;
      expect(await api.req('POST', '/v1/ports', { address: mac, node_uuid: (JSON.parse(n.body) as { uuid: string }).uuid }),
        201, 'port');
      // The first lookup issues the agent token (a write); the measured ones are the agent's steady state.
      expect(await api.req('GET', `/v1/lookup?addresses=${mac}`), 200, 'first lookup');
      macs.push(mac);
    }
    c0 = await cpu();
    const lookupRps = await load(s.lookups, s.conc, async (i) => {
      expect(await api.req('GET', `/v1/lookup?addresses=${macs[i % LOOKUP_NODES]}`), 200, 'lookup');
    });
    const lookupCpu = (await cpu() - c0) / s.lookups;

    const have = s.nodes + LOOKUP_NODES;
    await load(Math.max(0, s.rssNodes - have), s.conc, async (i) => {
      expect(await api.req('POST', '/v1/nodes', { driver: 'fake-hardware', name: `rss-${i}`,
        properties: { cpus: 8, memory_mb: 16384 } }), 201, 'create');
    });
    for (let i = 0; i < conductors.length; i++) expect(await api.req('GET', '/v1/nodes/detail'), 200, 'detail at 10k');
    const rss = await Promise.all(conductors.map((c) => rssMib(c.pid)));
    return { createRps, detailMs, lookupRps, rssMib: rss, cpu: { create: createCpu, detail: detailCpu, lookup: lookupCpu } };
  } finally {
    await api.close();
  }
}

function report(label: string, f: FleetFigures, s: FleetSettings): void {
  console.log(`${label}: create ${f.createRps.toFixed(0)} req/s (${f.cpu.create.toFixed(2)} conductor CPU ms each), ` +
    `detail list of ${Math.min(s.nodes, 1000)} nodes ${f.detailMs.toFixed(1)} ms (${(1000 / f.detailMs).toFixed(1)}/s, ` +
    `${f.cpu.detail.toFixed(0)} CPU ms), lookup ${f.lookupRps.toFixed(0)} req/s (${f.cpu.lookup.toFixed(2)} CPU ms), ` +
    `RSS with ${s.rssNodes} nodes: ${f.rssMib.map((r) => `${r.toFixed(0)} MiB`).join(', ')}`);
}

export default async function bench(args: string[]): Promise<void> {
  const s: FleetSettings = {
    nodes: numArg(args, '--nodes', null, 1000), rssNodes: numArg(args, '--rss-nodes', null, 10_000),
    conc: numArg(args, '--concurrency', null, 16), lookups: numArg(args, '--lookups', null, 5000),
    lists: numArg(args, '--lists', null, 20),
  };
  const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : undefined;
  const load1 = (await readFile('/proc/loadavg', 'utf8')).split(' ')[0];
  console.log(`cores: ${availableParallelism()}, load average ${load1}; each conductor in its own process ` +
    '(esbuild bundle, plain node), load from this process over 127.0.0.1');
  const bundle = await bundleBenchConductor();
  const keys: string[] = [];
  const rss: number[] = [];

  if (!only || only === 'pg1') {
    let lab: LabPostgres | undefined;
    let c: BenchConductor | undefined;
    const dir = await mkdtemp(join(tmpdir(), 'bmts-fleet-'));
    try {
      lab = await startPostgres();
      const url = await lab.createDatabase('fleet');
      c = await startBenchConductor(bundle, await freePort(), dir, { databaseUrl: url, host: 'fleet-1', restrictLookup: false });
      const f = await measure([c], s);
      report('PostgreSQL×1 (fsync on)', f, s);
      keys.push(`pg1_create_rps=${f.createRps.toFixed(0)}`, `pg1_lookup_rps=${f.lookupRps.toFixed(0)}`,
        `pg1_detail_ms=${f.detailMs.toFixed(1)}`, `pg1_rss_mib_10k=${Math.max(...f.rssMib).toFixed(0)}`);
      rss.push(...f.rssMib);
    } finally {
      if (c) await stopBenchConductor(c);
      await lab?.stop();
      await rm(dir, { recursive: true, force: true });
    }
  }
  if (!only || only === 'sqlite') {
    let c: BenchConductor | undefined;
    const dir = await mkdtemp(join(tmpdir(), 'bmts-fleet-'));
    try {
      c = await startBenchConductor(bundle, await freePort(), dir, { host: 'fleet-sqlite', restrictLookup: false });
      const f = await measure([c], s);
      report('SQLite×1', f, s);
      keys.push(`sqlite_create_rps=${f.createRps.toFixed(0)}`, `sqlite_lookup_rps=${f.lookupRps.toFixed(0)}`,
        `sqlite_detail_ms=${f.detailMs.toFixed(1)}`, `sqlite_rss_mib_10k=${Math.max(...f.rssMib).toFixed(0)}`);
      rss.push(...f.rssMib);
    } finally {
      if (c) await stopBenchConductor(c);
      await rm(dir, { recursive: true, force: true });
    }
  }
  const load2 = (await readFile('/proc/loadavg', 'utf8')).split(' ')[0];
  console.log(`load average at the end ${load2}`);
  // The issue's keys first (pg1_create_rps, sqlite_create_rps, rss_mib_10k), then the rest.
  const first = ['pg1_create_rps', 'sqlite_create_rps'];
  const ordered = [...first.map((k) => keys.find((x) => x.startsWith(`${k}=`))).filter((x): x is string => !!x),
    ...(rss.length ? [`rss_mib_10k=${Math.max(...rss).toFixed(0)}`] : []),
    ...keys.filter((x) => !first.some((k) => x.startsWith(`${k}=`)))];
  console.log(`fleet ${ordered.join(' ')}`);
}
