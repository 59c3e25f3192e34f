/**
 * `npm run bench -- fleet [--nodes 1000] [--rss-nodes 10000] [--concurrency 16] [--lookups 5000] [--lists 20]
 * [--heartbeats 2000] [--takeover-nodes 1000] [--only sqlite|pg1|pg3]`
 *
 * The same API load (support/fleet-load.ts) against each store setup, every conductor in its own process
 * (support/conductor-process.ts): PostgreSQL×3 (three conductors on one database, the load spread over all three,
 * then the takeover after a kill -9: fleet-cluster.ts), PostgreSQL×1 (a real PostgreSQL 15 from lab/postgres.ts
 * with its durable defaults: fsync and synchronous_commit on) and SQLite×1 (the embedded default). For each: node
 * creates/s (concurrency 16), detail lists of 1,000 nodes (ms/request, sequential), lookups/s (restrict_lookup off
 * so enrolled nodes with ports answer), heartbeats/s, and each conductor's RSS once 10,000 nodes are enrolled and
 * listed. Last line: `fleet pg3_create_rps=… pg3_lookup_rps=… pg1_create_rps=… sqlite_create_rps=… rss_mib_10k=…
 * takeover_s=… ...` (keys of setups not run are left out; rss_mib_10k is the largest conductor RSS measured).
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { startPostgres, type LabPostgres } from '../../lab/postgres.js';
import { freePort } from '../fixtures/conductor.js';
import { measurePg3, reportTakeover } from './fleet-cluster.js';
import { numArg } from './support/args.js';
import {
  bundleBenchConductor, startBenchConductor, stopBenchConductor, type BenchConductor,
} from './support/conductor-process.js';
import { fleetKeys, fleetSettings, measure, reportFleet } from './support/fleet-load.js';

export default async function bench(args: string[]): Promise<void> {
  const s = fleetSettings(args);
  const takeoverNodes = numArg(args, '--takeover-nodes', null, 1000);
  const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : undefined;
  const load1 = (await readFile('/proc/loadavg', 'utf8')).split(' ')[0];
  console.log(`cores: ${availableParallelism()}, load average ${load1}; each conductor in its own process ` +
    '(esbuild bundle, plain node), load from this process over 127.0.0.1');
  const bundle = await bundleBenchConductor();
  const keys: string[] = [];
  const rss: number[] = [];

  if (!only || only === 'pg3') {
    const { figures: f, takeoverS } = await measurePg3(bundle, s, takeoverNodes);
    reportFleet('PostgreSQL×3 (fsync on)', f, s);
    reportTakeover(takeoverNodes, takeoverS);
    keys.push(...fleetKeys('pg3', f), `takeover_s=${takeoverS.toFixed(1)}`);
    rss.push(...f.rssMib);
  }

  if (!only || only === 'pg1') {
    let lab: LabPostgres | undefined;
    let c: BenchConductor | undefined;
    const dir = await mkdtemp(join(tmpdir(), 'bmts-fleet-'));
    try {
      lab = await startPostgres();
      const url = await lab.createDatabase('fleet');
      c = await startBenchConductor(bundle, await freePort(), dir, { databaseUrl: url, host: 'fleet-1', restrictLookup: false });
      const f = await measure([c], s, lab.pid);
      reportFleet('PostgreSQL×1 (fsync on)', f, s);
      keys.push(...fleetKeys('pg1', f));
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
      reportFleet('SQLite×1', f, s);
      keys.push(...fleetKeys('sqlite', f));
      rss.push(...f.rssMib);
    } finally {
      if (c) await stopBenchConductor(c);
      await rm(dir, { recursive: true, force: true });
    }
  }
  const load2 = (await readFile('/proc/loadavg', 'utf8')).split(' ')[0];
  console.log(`load average at the end ${load2}`);
  // The keys first, in its order, then the rest.
  const pick = (k: string): string[] => keys.filter((x) => x.startsWith(`${k}=`));
  const first = ['pg3_create_rps', 'pg3_lookup_rps', 'pg1_create_rps', 'sqlite_create_rps'];
  const ordered = [...first.flatMap(pick), ...(rss.length ? [`rss_mib_10k=${Math.max(...rss).toFixed(0)}`] : []),
    ...pick('takeover_s'), ...keys.filter((x) => !first.some((k) => x.startsWith(`${k}=`)) && !x.startsWith('takeover_s='))];
  console.log(`fleet ${ordered.join(' ')}`);
}
