/**
 * `npm run bench -- fleet-cluster [--nodes 1000] [--rss-nodes 10000] [--concurrency 16] [--lookups 5000]
 * [--lists 20] [--takeover-nodes 1000]`: the several-conductors pieces of `fleet`.
 *
 * 1. PostgreSQL×3: three bench conductors (fleet.ts's bundled processes) on one real
 *    PostgreSQL 15 (durable defaults), fleet.ts's measure() spreading creates, detail lists and lookups over all
 *    three round-robin; the largest conductor RSS with --rss-nodes enrolled.
 * 2. Takeover: three `npm run conductor` processes on another database (conductor.heartbeat_timeout 5 s, interval
 *    1 s), --takeover-nodes nodes, kill -9 of one; takeover_s is the time from the kill until a survivor shows a live
 *    owner for every node (the dead conductor's nodes re-mapped, its reservations gone).
 * Last line: `fleet-cluster pg3_create_rps=… pg3_lookup_rps=… pg3_detail_ms=… pg3_rss_mib_10k=… takeover_s=…`.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startPostgres, type LabPostgres } from '../../lab/postgres.js';
import { startCluster } from '../fixtures/cluster.js';
import { freePort } from '../fixtures/conductor.js';
import { measure, type FleetSettings } from './fleet.js';
import { numArg } from './support/args.js';
import {
  bundleBenchConductor, startBenchConductor, stopBenchConductor, type BenchConductor,
} from './support/conductor-process.js';

const HB_TIMEOUT = 5;

async function pool<T>(items: readonly T[], width: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    for (let i = next++; i < items.length; i = next++) await fn(items[i] as T);
  }));
}

/** Seconds from a kill -9 of one of three conductors until every node shows a live owner. */
export async function takeoverSeconds(nodes: number, databaseUrl?: string): Promise<number> {
  const names = ['takeover-1', 'takeover-2', 'takeover-3'];
  const cl = await startCluster({ names, heartbeatInterval: 1, heartbeatTimeout: HB_TIMEOUT,
    ...(databaseUrl ? { config: { database: { url: databaseUrl } } } : {}) });
  try {
    await pool(Array.from({ length: nodes }, (_, i) => i), 16, async (i) => {
      const r = await cl.api(names[i % 3] as string, 'POST', '/v1/nodes', { driver: 'fake-hardware' });
      if (r.status !== 201) throw new Error(`create: ${r.status} ${JSON.stringify(r.body)}`);
    });
    const victim = names[1] as string;
    const t0 = performance.now();
    await cl.kill(victim);
    for (;;) {
      let done = true;
      let marker = '';
      for (;;) {
        const r = await cl.api(names[0] as string, 'GET', `/v1/nodes?fields=uuid,conductor,reservation&limit=1000${marker}`);
        const list = (r.body as { nodes: { uuid: string; conductor: string | null; reservation: string | null }[] }).nodes;
        if (list.some((n) => n.conductor === victim || n.conductor === null || n.reservation === victim)) done = false;
        if (!done || list.length < 1000) break;
        marker = `&marker=${list[list.length - 1]?.uuid}`;
      }
      if (done) break;
      if (performance.now() - t0 > 6 * HB_TIMEOUT * 1000) throw new Error('takeover did not finish');
      await new Promise((r) => setTimeout(r, 100));
    }
    return (performance.now() - t0) / 1000;
  } finally {
    await cl.close();
  }
}

export default async function bench(args: string[]): Promise<void> {
  const s: FleetSettings = {
    nodes: numArg(args, '--nodes', null, 1000), rssNodes: numArg(args, '--rss-nodes', null, 10_000),
    conc: numArg(args, '--concurrency', null, 16), lookups: numArg(args, '--lookups', null, 5000),
    lists: numArg(args, '--lists', null, 20),
  };
  const takeoverNodes = numArg(args, '--takeover-nodes', null, 1000);
  // measure()'s requests (creates, lists, lookups) are served where they arrive, nothing is forwarded: the bench
  // conductors need no shared RPC secret.
  const bundle = await bundleBenchConductor();
  let lab: LabPostgres | undefined;
  const conductors: BenchConductor[] = [];
  const dirs: string[] = [];
  const keys: string[] = [];
  try {
    lab = await startPostgres();
    const url = await lab.createDatabase('fleet3');
    for (let i = 1; i <= 3; i++) {
      const dir = await mkdtemp(join(tmpdir(), 'bmts-fleet3-'));
      dirs.push(dir);
      conductors.push(await startBenchConductor(bundle, await freePort(), dir,
        { databaseUrl: url, host: `fleet-${i}`, restrictLookup: false }));
    }
    const f = await measure(conductors, s);
    console.log(`PostgreSQL×3 (fsync on): create ${f.createRps.toFixed(0)} req/s, detail list of ${Math.min(s.nodes, 1000)} ` +
      `nodes ${f.detailMs.toFixed(1)} ms, lookup ${f.lookupRps.toFixed(0)} req/s, RSS with ${s.rssNodes} nodes: ` +
      `${f.rssMib.map((r) => `${r.toFixed(0)} MiB`).join(', ')}`);
    keys.push(`pg3_create_rps=${f.createRps.toFixed(0)}`, `pg3_lookup_rps=${f.lookupRps.toFixed(0)}`,
      `pg3_detail_ms=${f.detailMs.toFixed(1)}`, `pg3_rss_mib_10k=${Math.max(...f.rssMib).toFixed(0)}`);
    for (const c of conductors.splice(0)) await stopBenchConductor(c);
    const takeover = await takeoverSeconds(takeoverNodes, await lab.createDatabase('takeover'));
    console.log(`takeover: ${takeoverNodes} nodes on 3 conductors, one killed -9, every node with a live owner after ` +
      `${takeover.toFixed(1)} s (conductor.heartbeat_timeout ${HB_TIMEOUT} s, heartbeat_interval 1 s)`);
    keys.push(`takeover_s=${takeover.toFixed(1)}`);
  } finally {
    for (const c of conductors) await stopBenchConductor(c);
    await lab?.stop();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  }
  console.log(`fleet-cluster ${keys.join(' ')}`);
}
