/**
 * The same load against Debian's Ironic 21.4 (test/fixtures/peer-ironic.ts: one process, sqlite, noauth,
 * fake-hardware; debug logging off, lookups not restricted to deploy states) on this machine, in the same run,
 * so that both sides see the same machine load: node creates, detail lists of `nodes` nodes, lookups.
 */
import { readFile } from 'node:fs/promises';
import { Pool } from 'undici';
import { peerIronicUnavailable, startPeerIronic } from '../../fixtures/peer-ironic.js';

export interface IronicFigures {
  createRps: number;
  createCpuMs: number;
  detailMs: number;
  detailCpuMs: number;
  lookupRps: number;
  lookupCpuMs: number;
}

async function cpuMs(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

export function ironicUnavailable(): string | undefined {
  return peerIronicUnavailable();
}

export async function benchIronic(o: { nodes: number; conc: number; lists: number; lookups: number;
  createBody: (i: number) => Record<string, unknown> }): Promise<IronicFigures> {
  const ironic = await startPeerIronic({ extra: { DEFAULT: { debug: 'false' }, api: { restrict_lookup: 'false' } } });
  const pool = new Pool(ironic.url, { connections: o.conc });
  try {
    const root = JSON.parse(await (await pool.request({ method: 'GET', path: '/v1' })).body.text()) as
      { version?: { version?: string } };
    const V = { 'x-openstack-ironic-api-version': root.version?.version ?? '1.81', 'content-type': 'application/json' };
    const req = async (method: 'GET' | 'POST', path: string, body?: unknown, want = 200): Promise<string> => {
      const r = await pool.request({ method, path, headers: V, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
      const text = await r.body.text();
      if (r.statusCode !== want) throw new Error(`Ironic ${method} ${path}: HTTP ${r.statusCode} ${text.slice(0, 300)}`);
      return text;
    };
    const load = async (total: number, one: (i: number) => Promise<unknown>): Promise<number> => {
      let next = 0;
      const t0 = process.hrtime.bigint();
      await Promise.all(Array.from({ length: o.conc }, async () => { while (next < total) await one(next++); }));
      return total / (Number(process.hrtime.bigint() - t0) / 1e9);
    };
    await load(50, (i) => req('POST', '/v1/nodes', { driver: 'fake-hardware', name: `warm-${i}` }, 201));
    let c0 = await cpuMs(ironic.pid);
    const createRps = await load(o.nodes, (i) => req('POST', '/v1/nodes', o.createBody(i), 201));
    let c1 = await cpuMs(ironic.pid);
    const createCpuMs = (c1 - c0) / o.nodes;
    await req('GET', `/v1/nodes?detail=True&limit=${o.nodes}`);
    c0 = await cpuMs(ironic.pid);
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < o.lists; i++) await req('GET', `/v1/nodes?detail=True&limit=${o.nodes}`);
    const detailMs = Number(process.hrtime.bigint() - t0) / 1e6 / o.lists;
    c1 = await cpuMs(ironic.pid);
    const detailCpuMs = (c1 - c0) / o.lists;
    const node = JSON.parse(await req('GET', '/v1/nodes?limit=1')) as { nodes: { uuid: string }[] };
    const mac = '52:54:00:be:ff:01';
    await req('POST', '/v1/ports', { address: mac, node_uuid: node.nodes[0]?.uuid }, 201);
    await req('GET', `/v1/lookup?addresses=${mac}`);
    c0 = await cpuMs(ironic.pid);
    const lookupRps = await load(o.lookups, () => req('GET', `/v1/lookup?addresses=${mac}`));
    c1 = await cpuMs(ironic.pid);
    return { createRps, createCpuMs, detailMs, detailCpuMs, lookupRps, lookupCpuMs: (c1 - c0) / o.lookups };
  } finally {
    await pool.close();
    await ironic.stop();
  }
}
