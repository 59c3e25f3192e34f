/**
 * `npm run bench -- fleet-cluster [--nodes 1000] [--rss-nodes 10000] [--concurrency 16] [--lookups 5000]
 * [--lists 20] [--heartbeats 2000] [--takeover-nodes 1000]`: the several-conductors part of `fleet` alone
 * (`fleet` runs it first, through measurePg3).
 *
 * 1. PostgreSQL×3: three bench conductors (support/conductor-process.ts) on one real PostgreSQL 15 (durable
 *    defaults), support/fleet-load.ts spreading creates, detail lists, lookups and heartbeats over all three
 *    round-robin (a heartbeat reaching a non-owner is forwarded to the owner); the largest RSS with --rss-nodes.
 * 2. Takeover: three `npm run conductor` processes on another database (conductor.heartbeat_timeout 5 s, interval
 *    1 s), --takeover-nodes nodes, kill -9 of one; takeover_s is the time from the kill until a survivor shows a live
 *    owner for every node (the dead conductor's nodes re-mapped, its reservations gone).
 * Last line: `fleet-cluster pg3_create_rps=… pg3_lookup_rps=… pg3_detail_ms=… pg3_heartbeat_rps=… pg3_rss_mib_10k=…
 * takeover_s=…`.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startPostgres, type LabPostgres } from '../../lab/postgres.js';
import { startCluster } from '../fixtures/cluster.js';
import { freePort } from '../fixtures/conductor.js';
import { numArg } from './support/args.js';
import {
  bundleBenchConductor, startBenchConductor, stopBenchConductor, type BenchConductor,
} from './support/conductor-process.js';
import { fleetKeys, fleetSettings, measure, reportFleet, type FleetFigures, type FleetSettings } from './support/fleet-load.js';

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

/**
 * Three bench conductors on one fresh PostgreSQL, the fleet load spread over all three; then, on another database
 * of the same server, the takeover after a kill -9.
 */
export async function measurePg3(bundle: string, s: FleetSettings, takeoverNodes: number):
  Promise<{ figures: FleetFigures; takeoverS: number }> {
  let lab: LabPostgres | undefined;
  const conductors: BenchConductor[] = [];
  const dirs: string[] = [];
  try {
    lab = await startPostgres();
    const url = await lab.createDatabase('fleet3');
    for (let i = 1; i <= 3; i++) {
      const dir = await mkdtemp(join(tmpdir(), 'bmts-fleet3-'));
      dirs.push(dir);
      conductors.push(await startBenchConductor(bundle, await freePort(), dir,
        { databaseUrl: url, host: `fleet-${i}`, restrictLookup: false }));
    }
    const figures = await measure(conductors, s, lab.pid);
    for (const c of conductors.splice(0)) await stopBenchConductor(c);
    return { figures, takeoverS: await takeoverSeconds(takeoverNodes, await lab.createDatabase('takeover')) };
  } finally {
    for (const c of conductors) await stopBenchConductor(c);
    await lab?.stop();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  }
}

export default async function bench(args: string[]): Promise<void> {
  const s = fleetSettings(args);
  const takeoverNodes = numArg(args, '--takeover-nodes', null, 1000);
  const { figures: f, takeoverS } = await measurePg3(await bundleBenchConductor(), s, takeoverNodes);
  reportFleet('PostgreSQL×3 (fsync on)', f, s);
  reportTakeover(takeoverNodes, takeoverS);
  console.log(`fleet-cluster ${[...fleetKeys('pg3', f), `takeover_s=${takeoverS.toFixed(1)}`].join(' ')}`);
}

export function reportTakeover(nodes: number, seconds: number): void {
  console.log(`takeover: ${nodes} nodes on 3 conductors on PostgreSQL, one killed -9, every node with a live owner ` +
    `after ${seconds.toFixed(1)} s (conductor.heartbeat_timeout ${HB_TIMEOUT} s, heartbeat_interval 1 s)`);
}
