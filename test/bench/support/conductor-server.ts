/**
 * The conductor under benchmark (serveBenchConductor(port, dataDir)). Adds a deploy interface that parks
 * nodes in `wait call-back` and a no-op heartbeat handler, so lookups and heartbeats can be measured without an
 * agent. test/bench/conductor.ts bundles this file with esbuild and runs it with plain node, as production runs
 * the compiled `dist/` (no tsx loader thread in the measured process).
 */
import { setLogLevel } from '../../../common/logger.js';
import { fakeDeploy } from '../../../conductor/drivers/fake.js';
import { startConductor } from '../../../conductor/main.js';

export async function serveBenchConductor(port: number, dir: string): Promise<void> {
  setLogLevel('warn');
  // Like for like with the Ironic it is compared to (noauth, plain HTTP): the API's own cost, not TLS's or bcrypt's.
  const c = await startConductor({ host: '127.0.0.1', port, data_dir: dir, require_tls: false,
    auth: { strategy: 'noauth' }, tls: { mode: 'off' },
    enabled_hardware_types: ['fake-hardware', 'bench-hw'], automated_clean: false,
    ...(process.env.BENCH_RENDER_CACHE_MIB !== undefined
      ? { database: { backend: 'sqlite', sqlite_file: 'conductor.sqlite', render_cache_mib: Number(process.env.BENCH_RENDER_CACHE_MIB) } }
      : {}),
    periodic: { sync_power_state_interval: 0, check_provision_state_interval: 0, reservation_cleanup_interval: 0 } },
  { registerDrivers: (reg) => {
    reg.registerInterface('deploy', { ...fakeDeploy, name: 'bench-wait', async deploy() { return 'wait'; } });
    reg.registerHardwareType({ name: 'bench-hw', supported: { power: ['fake'], management: ['fake'], boot: ['fake'],
      deploy: ['bench-wait'], network: ['noop'], storage: ['noop'] } });
  } });
  c.ctx.heartbeats.handler = () => undefined;
  process.stdout.write(`READY ${c.url}\n`);
  const stop = (): void => { void c.close().then(() => process.exit(0)); };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}
