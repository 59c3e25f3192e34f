/**
 * `npm run bench -- fleet-cluster [NODES]`: three conductor processes on one database (SQLite file by default;
 * BENCH_DATABASE_URL=postgresql://... for PostgreSQL), load spread over all three: node creates, single-node
 * shows and 1,000-node detail lists per second, then a kill -9 of one conductor and the seconds until every node
 * of the fleet shows a live owner again (takeover_s, with conductor.heartbeat_timeout 5 s, interval 1 s).
 * `clusterFigures()` is the piece `fleet` composes; the last line here is
 * `fleet-cluster x3_create_rps=... x3_show_rps=... x3_detail_rps=... takeover_s=...`.
 */
import { startCluster } from '../fixtures/cluster.js';

const NAMES = ['bench-c1', 'bench-c2', 'bench-c3'];
const HB_TIMEOUT = 5;

export interface ClusterFigures {
  create_rps: number;
  show_rps: number;
  detail_rps: number;
  takeover_s: number;
}

async function pool<T>(items: readonly T[], width: number, fn: (item: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    for (let i = next++; i < items.length; i = next++) await fn(items[i] as T, i);
  }));
}

export async function clusterFigures(nodes = 1000, databaseUrl = process.env.BENCH_DATABASE_URL): Promise<ClusterFigures> {
  const cl = await startCluster({ names: NAMES, heartbeatInterval: 1, heartbeatTimeout: HB_TIMEOUT,
    ...(databaseUrl ? { config: { database: { url: databaseUrl } } as never } : {}) });
  try {
    const call = async (i: number, method: string, path: string, body?: unknown): Promise<unknown> => {
      const r = await cl.api(NAMES[i % 3] as string, method, path, body);
      if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
      return r.body;
    };
    const uuids: string[] = [];
    let t0 = performance.now();
    await pool(Array.from({ length: nodes }, (_, i) => i), 24, async (i) => {
      uuids.push(((await call(i, 'POST', '/v1/nodes', { driver: 'fake-hardware' })) as { uuid: string }).uuid);
    });
    const create_rps = nodes / ((performance.now() - t0) / 1000);

    const shows = Math.min(3000, nodes * 3);
    t0 = performance.now();
    await pool(Array.from({ length: shows }, (_, i) => i), 24, async (i) => {
      await call(i, 'GET', `/v1/nodes/${uuids[i % uuids.length]}`);
    });
    const show_rps = shows / ((performance.now() - t0) / 1000);

    const lists = 30;
    t0 = performance.now();
    await pool(Array.from({ length: lists }, (_, i) => i), 6, async (i) => {
      await call(i, 'GET', '/v1/nodes/detail?limit=1000');
    });
    const detail_rps = lists / ((performance.now() - t0) / 1000);

    // Takeover: kill -9 one conductor; done when a survivor shows no node owned by it.
    const victim = NAMES[1] as string;
    t0 = performance.now();
    await cl.kill(victim);
    for (;;) {
      const body = await cl.api(NAMES[0] as string, 'GET', '/v1/nodes?fields=uuid,conductor&limit=1000');
      const list = (body.body as { nodes: { conductor: string | null }[] }).nodes;
      if (list.length && list.every((n) => n.conductor !== victim && n.conductor !== null)) break;
      if (performance.now() - t0 > 4 * HB_TIMEOUT * 1000) throw new Error('takeover did not finish');
      await new Promise((r) => setTimeout(r, 100));
    }
    const takeover_s = (performance.now() - t0) / 1000;
    return { create_rps, show_rps, detail_rps, takeover_s };
  } finally {
    await cl.close();
  }
}

export default async function run(args: string[]): Promise<void> {
  const nodes = Number(args[0] ?? 1000);
  const f = await clusterFigures(nodes);
  console.log(`3 conductors on ${process.env.BENCH_DATABASE_URL ? 'PostgreSQL' : 'one SQLite file'}, ${nodes} nodes, ` +
    `heartbeat_timeout ${HB_TIMEOUT}s`);
  console.log(`fleet-cluster x3_create_rps=${f.create_rps.toFixed(0)} x3_show_rps=${f.show_rps.toFixed(0)} ` +
    `x3_detail_rps=${f.detail_rps.toFixed(1)} takeover_s=${f.takeover_s.toFixed(1)}`);
}
