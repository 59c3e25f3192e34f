/**
 * Conductor start-up: config -> drivers -> store (migrations) -> recovery of this host's leftovers -> API server
 * -> periodic tasks. `startConductor()` is what tests use; run directly it is the `npm run conductor` CLI.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { ConfigError, errorMessage } from '../common/errors.js';
import { getLogger, logLevelFrom, setLogLevel } from '../common/logger.js';
import { createApp } from './api/app.js';
import { buildConfig, loadConfig, type ConductorConfig, type ConfigInput } from './config.js';
import type { ConductorContext } from './context.js';
import { registerBuiltinDrivers } from './drivers/builtin.js';
import { DriverRegistry } from './drivers/index.js';
import { startDriverServices } from './drivers/real.js';
import { TaskManager } from './locks.js';
import { createDirectDeploy } from './orchestration/direct.js';
import { handleHeartbeat } from './orchestration/heartbeat.js';
import { HeartbeatHub } from './orchestration/hooks.js';
import { PeriodicTasks } from './periodic.js';
import { STUCK_STATES } from './states.js';
import { SqliteStore } from './store/sqlite.js';

export interface RunningConductor {
  /** Base URL the API listens on, e.g. http://127.0.0.1:6385 */
  url: string;
  port: number;
  ctx: ConductorContext;
  server: Server;
  close(): Promise<void>;
}

/** Fails nodes a previous life of this conductor left mid-operation. */
async function recoverStuckNodes(ctx: ConductorContext): Promise<void> {
  const stuck = await ctx.store.listNodes({ provision_state: [...STUCK_STATES] });
  for (const node of stuck) {
    await ctx.tasks.withNodeTask(node, { exclusive: true, retry: false, purpose: 'start-up recovery' }, async (task) => {
      const msg = `Conductor ${ctx.host} restarted while the node was in state "${task.node.provision_state}"; ` +
        `the operation was aborted.`;
      await task.fire('fail', { lastError: msg });
    }).catch((e: unknown) => ctx.log.warn({ node: node.uuid, err: errorMessage(e) }, 'could not recover node'));
  }
}

export interface ConductorOptions {
  /** Extra drivers for this conductor (tests, benchmarks), registered after the built-in ones. */
  registerDrivers?: (reg: DriverRegistry) => void;
}

export async function startConductor(input: ConductorConfig | ConfigInput = {}, opts: ConductorOptions = {}):
  Promise<RunningConductor> {
  const config = buildConfig(input);
  const drivers = new DriverRegistry(config);
  registerBuiltinDrivers(drivers);
  const log = getLogger('conductor', { host: config.conductor_host });
  const store = SqliteStore.open(config.data_dir, config.database.sqlite_file,
    { renderCacheBytes: config.database.render_cache_mib * 2 ** 20 });
  const tasks = new TaskManager(store, config.conductor_host, {
    retryAttempts: config.locks.node_locked_retry_attempts,
    retryIntervalMs: config.locks.node_locked_retry_interval * 1000,
  }, drivers);
  tasks.historyEnabled = config.node_history;
  tasks.historyMax = config.node_history_max_entries;
  // Real drivers get their configuration, and the boot server (iPXE scripts, images) starts when configured.
  const driverServices = await startDriverServices(config, drivers);
  const heartbeats = new HeartbeatHub();
  const ctx: ConductorContext = { config, store, tasks, host: config.conductor_host, log, drivers,
    bootServer: driverServices.bootServer, heartbeats, powerSyncFailures: new Map() };
  // Agent-driven deploy/cleaning: heartbeats carry step plans forward; images may come from our boot server.
  drivers.registerInterface('deploy', createDirectDeploy(ctx));
  opts.registerDrivers?.(drivers);
  heartbeats.handler = handleHeartbeat;

  const released = await store.clearReservations(ctx.host);
  if (released.length) log.info({ count: released.length }, 'cleared stale reservations of this conductor');
  await recoverStuckNodes(ctx);
  await store.upsertConductor({ hostname: ctx.host, conductor_group: config.conductor_group,
    drivers: drivers.enabledHardwareTypes().map((t) => t.name), online: true });

  const app = createApp(ctx);
  const server = createServer(app.callback());
  server.keepAliveTimeout = 65_000;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.port, config.host, () => { server.off('error', reject); resolve(); });
    });
  } catch (e) {
    await driverServices.close();
    await store.close();
    throw e;
  }
  const port = (server.address() as AddressInfo).port;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  const url = `http://${host}:${port}`;
  const periodic = new PeriodicTasks(ctx);
  periodic.start();
  log.info({ url, data_dir: config.data_dir, types: drivers.enabledHardwareTypes().map((t) => t.name) },
    'conductor listening');

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      await periodic.stop();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
        setTimeout(() => server.closeAllConnections(), 2000).unref();
      });
      await Promise.race([Promise.all([tasks.idle(), heartbeats.idle()]), new Promise((r) => setTimeout(r, 10_000).unref())]);
      await driverServices.close();
      // Shutting down: a failed offline mark only delays other conductors' takeover until our heartbeat ages out.
      await store.setConductorOnline(ctx.host, false).catch(() => undefined);
      await store.close();
      log.info('conductor stopped');
    })();
    return closing;
  };
  return { url, port, ctx, server, close };
}

async function cli(): Promise<void> {
  let config: ConductorConfig;
  try {
    config = loadConfig(process.argv.slice(2));
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`baremetal-conductor: ${e.message}\n` +
        'usage: npm run conductor -- [--host H] [--port P] [--data-dir DIR] [--config FILE.json]\n');
      process.exit(2);
    }
    throw e;
  }
  const running = await startConductor(config);
  process.stdout.write(`baremetal-conductor listening on ${running.url} (data dir ${config.data_dir})\n`);
  const stop = (sig: string): void => {
    process.stdout.write(`received ${sig}, shutting down\n`);
    running.close().then(() => process.exit(0), (e: unknown) => {
      process.stderr.write(`shutdown failed: ${errorMessage(e)}\n`);
      process.exit(1);
    });
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  setLogLevel(logLevelFrom(process.env));
  cli().catch((e: unknown) => {
    process.stderr.write(`baremetal-conductor: ${errorMessage(e)}\n`);
    process.exit(1);
  });
}
