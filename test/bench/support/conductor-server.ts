/**
 * The conductor under benchmark (serveBenchConductor(port, dataDir)): the production conductor with its real
 * drivers and heartbeat handling (nodes deploy through fake-hardware + `direct`, their agent is
 * support/stand-in-agent.ts), noauth on 127.0.0.1 set explicitly. test/bench/conductor.ts bundles this file with
 * esbuild and runs it with plain node, as production runs the compiled `dist/` (no tsx loader thread in the
 * measured process); it restarts it on the same data dir to time the first request of a fresh process.
 */
import { getHeapSpaceStatistics } from 'node:v8';
import { setLogLevel } from '../../../common/logger.js';
import { startConductor } from '../../../conductor/main.js';

export async function serveBenchConductor(port: number, dir: string,
  opts: { databaseUrl?: string; host?: string; restrictLookup?: boolean } = {}): Promise<void> {
  setLogLevel('warn');
  // Like for like with the Ironic it is compared to (noauth, plain HTTP): the API's own cost, not TLS's or bcrypt's.
  const c = await startConductor({ host: '127.0.0.1', port, data_dir: dir, require_tls: false,
    auth: { strategy: 'noauth' }, tls: { mode: 'off' }, enabled_hardware_types: ['fake-hardware'], automated_clean: false,
    database: { backend: 'sqlite', sqlite_file: 'conductor.sqlite',
      ...(process.env.BENCH_RENDER_CACHE_MIB !== undefined ? { render_cache_mib: Number(process.env.BENCH_RENDER_CACHE_MIB) } : {}),
      ...(opts.databaseUrl ? { url: opts.databaseUrl } : {}) },
    ...(opts.host ? { conductor_host: opts.host } : {}),
    // Conductors on one database form a ring; a heartbeat that reaches a non-owner is forwarded over the RPC.
    conductor: { rpc_secret: 'fleet-bench-shared-rpc-secret-0123' },
    ...(opts.restrictLookup === false ? { restrict_lookup: false } : {}),
    periodic: { sync_power_state_interval: 0, check_provision_state_interval: 0, reservation_cleanup_interval: 0 } });
  // Where memory goes: process.memoryUsage() and V8's heap spaces, in MiB, on SIGUSR2.
  process.on('SIGUSR2', () => {
    // With --expose-gc (BENCH_CHILD_NODE_FLAGS) what is live, not what awaits collection.
    (globalThis as { gc?: () => void }).gc?.();
    const mib = (n: number): number => Math.round(n / 2 ** 20 * 10) / 10;
    const mem = Object.fromEntries(Object.entries(process.memoryUsage()).map(([k, v]) => [k, mib(v)]));
    const spaces = Object.fromEntries(getHeapSpaceStatistics().map((sp) => [sp.space_name, mib(sp.space_size)]));
    process.stdout.write(`MEM ${JSON.stringify({ ...mem, spaces })}\n`);
  });
  process.stdout.write(`READY ${c.url}\n`);
  const stop = (): void => { void c.close().then(() => process.exit(0)); };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}
