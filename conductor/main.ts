/**
 * Conductor start-up: config -> drivers -> store (migrations) -> recovery of this host's leftovers -> API server
 * -> periodic tasks. `startConductor()` is what tests use; run directly it is the `npm run conductor` CLI.
 */
import { wipeAgentToken } from './services/power.js';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { ConfigError, errorMessage } from '../common/errors.js';
import { getLogger, logLevelFrom, setLogLevel } from '../common/logger.js';
import { createApp } from './api/app.js';
import { prepareApiTls } from './api-tls.js';
import { buildConfig, loadConfig, parseFlags, type ConductorConfig, type ConfigInput } from './config.js';
import type { ConductorContext } from './context.js';
import { ensureAdminCredentials, writeOpenrc, type AdminCredentials } from './credentials.js';
import { isLoopbackHost } from './boot-server.js';
import { registerBuiltinDrivers } from './drivers/builtin.js';
import { DriverRegistry, NODE_INTERFACE_KINDS } from './drivers/index.js';
import { startDriverServices } from './drivers/real.js';
import { startImageCache } from './image-cache/start.js';
import { TaskManager } from './locks.js';
import { FleetState } from './fleet.js';
import { boundBmcCalls } from './drivers/bmc-bounds.js';
import { createDirectDeploy } from './orchestration/direct.js';
import { createIscsiDeploy } from './orchestration/iscsi-deploy.js';
import { registerInspectInterfaces } from './inspection/register.js';
import { writeDiscoveryBootConfig } from './inspection/discovery-boot.js';
import { handleHeartbeat } from './orchestration/heartbeat.js';
import { HeartbeatHub } from './orchestration/hooks.js';
import { registerOperatorInterfaces, startOperatorServices } from './operator-interfaces.js';
import { PeriodicTasks } from './periodic.js';
import { STUCK_STATES } from './states.js';
import { describeStore, openStore } from './store/open.js';
import { Cluster } from './cluster/membership.js';
import { rpcCaller } from './cluster/rpc-client.js';
import { rpcSecret } from './cluster/rpc-secret.js';
import { startRpcServer } from './cluster/rpc-server.js';
import { takeOver } from './cluster/takeover.js';

export interface RunningConductor {
  /** Base URL the API listens on, e.g. https://127.0.0.1:6385 */
  url: string;
  port: number;
  ctx: ConductorContext;
  server: Server | HttpsServer;
  /** PEM bundle and its file that verify the API's certificate (TLS with a generated or configured CA). */
  caPem: string | undefined;
  caFile: string | undefined;
  /** `<data_dir>/openrc`: the `baremetal` CLI's environment for this conductor. */
  openrc: string;
  /** Set when this start created the http_basic admin credentials (shown once). */
  createdCredentials: (AdminCredentials & { file: string }) | undefined;
  close(): Promise<void>;
}

/**
 * Fails nodes a previous life of this conductor left mid-operation: the ones it held, and unreserved ones it owns
 * (with other conductors alive, nodes they own or hold are theirs to deal with; see conductor/cluster/takeover.ts).
 */
async function recoverStuckNodes(ctx: ConductorContext, released: readonly string[]): Promise<void> {
  const mine = new Set(released);
  const stuck = (await ctx.store.listNodes({ provision_state: [...STUCK_STATES] }))
    .filter((n) => mine.has(n.uuid) || (n.reservation === null && (ctx.cluster?.owns(n) ?? true)));
  for (const node of stuck) {
    await ctx.tasks.withNodeTask(node, { exclusive: true, retry: false, purpose: 'start-up recovery' }, async (task) => {
      const msg = `Conductor ${ctx.host} restarted while the node was in state "${task.node.provision_state}"; ` +
        `the operation was aborted.`;
      await task.fire('fail', { lastError: msg });
      // The agent that was working on the node is no longer trusted: it must look up (and get a new token) again.
      await wipeAgentToken(task);
    }).catch((e: unknown) => ctx.log.warn({ node: node.uuid, err: errorMessage(e) }, 'could not recover node'));
  }
}

/** Per interface kind, the implementations this conductor has enabled (recorded in `conductors`). */
function enabledInterfaces(drivers: DriverRegistry): Record<string, string[]> {
  const out: Record<string, Set<string>> = {};
  for (const t of drivers.enabledHardwareTypes()) {
    for (const kind of NODE_INTERFACE_KINDS) {
      const set = out[kind] ?? new Set<string>();
      for (const impl of drivers.supportedInterfaces(t, kind)) set.add(impl);
      out[kind] = set;
    }
  }
  return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, [...v].sort()]));
}

/** What the RPC client trusts for https peers: conductor.rpc_ca_file, and this conductor's own API CA. */
async function rpcCaPem(config: ConductorConfig, own: string | undefined): Promise<string | undefined> {
  const extra = config.conductor.rpc_ca_file ? await readFile(config.conductor.rpc_ca_file, 'utf8') : undefined;
  const parts = [own, extra].filter((p): p is string => !!p);
  return parts.length ? parts.join('\n') : undefined;
}

export interface ConductorOptions {
  /** Extra drivers for this conductor (tests, benchmarks), registered after the built-in ones. */
  registerDrivers?: (reg: DriverRegistry) => void;
}

export async function startConductor(input: ConductorConfig | ConfigInput = {}, opts: ConductorOptions = {}):
  Promise<RunningConductor> {
  const ensured = await ensureAdminCredentials(buildConfig(input));
  const config = ensured.config;
  const drivers = new DriverRegistry(config);
  registerBuiltinDrivers(drivers);
  const log = getLogger('conductor', { host: config.conductor_host });
  const apiTls = await prepareApiTls(config);
  const scheme = apiTls ? 'https' : 'http';
  if (config.auth.strategy === 'noauth') {
    // noauth is for labs: the default host is loopback, and anything else was asked for explicitly.
    log.warn({ host: config.host }, isLoopbackHost(config.host)
      ? 'auth.strategy noauth: every API request is accepted unauthenticated (local use only)'
      : 'auth.strategy noauth on a non-loopback address: anyone who can reach it controls every node');
  }
  if (!apiTls) log.warn('tls.mode off: the API, Basic credentials and agent tokens cross the network in clear');
  if (config.api_url && !config.api_url.startsWith(`${scheme}:`)) {
    log.warn({ api_url: config.api_url, scheme }, 'api_url scheme differs from what the API serves');
  }
  const store = await openStore(config);
  const tasks = new TaskManager(store, config.conductor_host, {
    retryAttempts: config.locks.node_locked_retry_attempts,
    retryIntervalMs: config.locks.node_locked_retry_interval * 1000,
  }, drivers);
  tasks.historyEnabled = config.node_history;
  tasks.historyMax = config.node_history_max_entries;
  // Real drivers get their configuration, and the boot server (iPXE scripts, images) starts when configured.
  const driverServices = await startDriverServices(config, drivers);
  const heartbeats = new HeartbeatHub<ConductorContext>();
  const imageCache = await startImageCache(config, store, driverServices.bootServer);
  const cc = config.conductor;
  const secret = await rpcSecret(config);
  const caller = rpcCaller({ secret, timeoutS: cc.rpc_timeout, caPem: await rpcCaPem(config, apiTls?.caPem) });
  const cluster = new Cluster(store, { host: config.conductor_host, group: config.conductor_group,
    drivers: drivers.enabledHardwareTypes().map((t) => t.name), hardwareInterfaces: enabledInterfaces(drivers),
    rpcUrl: '', heartbeatIntervalS: cc.heartbeat_interval, heartbeatTimeoutS: cc.heartbeat_timeout,
    partitionExponent: cc.hash_partition_exponent }, log, caller);
  const ctx: ConductorContext = { config, store, tasks, host: config.conductor_host, log, drivers,
    bootServer: driverServices.bootServer, imageCache, heartbeats, powerSyncFailures: new Map(), fleet: new FleetState(config),
    api: { scheme, caPem: apiTls?.caPem }, cluster };
  // Agent-driven deploy/cleaning: heartbeats carry step plans forward; images may come from our boot server.
  drivers.registerInterface('deploy', createDirectDeploy(ctx));
  drivers.registerInterface('deploy', createIscsiDeploy(ctx));
  registerInspectInterfaces(ctx);
  await writeDiscoveryBootConfig(ctx);
  const operatorKit = registerOperatorInterfaces(drivers, config, ctx);
  boundBmcCalls(drivers, ctx.fleet);
  opts.registerDrivers?.(drivers);
  heartbeats.handler = handleHeartbeat;
  cluster.settings.drivers = drivers.enabledHardwareTypes().map((t) => t.name);
  cluster.settings.hardwareInterfaces = enabledInterfaces(drivers);
  tasks.workerGate = () => ctx.fleet.workers.acquire();

  // The internal RPC first: registration pings a live-looking namesake there, and peers forward to it at once.
  const rpcServer = await startRpcServer(ctx, { host: cc.rpc_host ?? config.host, port: cc.rpc_port, secret,
    maxBodyBytes: config.max_body_bytes + 64 * 1024, tls: apiTls ? { cert: apiTls.cert, key: apiTls.key } : undefined })
    .catch(async (e: unknown) => {
      await imageCache.close();
      await driverServices.close();
      await store.close();
      throw e;
    });
  cluster.settings.rpcUrl = cc.rpc_url ?? rpcServer.url;
  try {
    // Before touching any reservation: a live namesake's would be ours to clear otherwise.
    await cluster.register();
  } catch (e) {
    await rpcServer.close();
    await imageCache.close();
    await driverServices.close();
    await store.close();
    throw e;
  }
  const released = await store.clearReservations(ctx.host);
  if (released.length) log.info({ count: released.length }, 'cleared stale reservations of this conductor');
  await recoverStuckNodes(ctx, released);
  const operator = await startOperatorServices(ctx, operatorKit).catch(async (e: unknown) => {
    await rpcServer.close();
    await imageCache.close();
    await driverServices.close();
    await store.close();
    throw e;
  });

  const app = createApp(ctx);
  const server = apiTls ? createHttpsServer({ cert: apiTls.cert, key: apiTls.key }, app.callback())
    : createServer(app.callback());
  server.keepAliveTimeout = 65_000;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.port, config.host, () => { server.off('error', reject); resolve(); });
    });
  } catch (e) {
    await rpcServer.close();
    await imageCache.close();
    await operator.close();
    await driverServices.close();
    await store.close();
    throw e;
  }
  const port = (server.address() as AddressInfo).port;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  const url = `${scheme}://${host}:${port}`;
  const openrc = await writeOpenrc(config, url, apiTls?.caFile).catch((e: unknown) => {
    log.warn({ err: errorMessage(e) }, 'could not write the openrc file');
    return '';
  });
  const periodic = new PeriodicTasks(ctx);
  periodic.start();
  cluster.onBeat = async (report) => {
    await takeOver(ctx, cluster, report);
    if (report.ringChanged || report.dead.length) await operator.syncConsoles();
  };
  cluster.start();
  log.info({ url, data_dir: config.data_dir, database: describeStore(config), types: drivers.enabledHardwareTypes().map((t) => t.name) },
    'conductor listening');

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      await cluster.stop();
      await periodic.stop();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
        setTimeout(() => server.closeAllConnections(), 2000).unref();
      });
      await Promise.race([Promise.all([tasks.idle(), heartbeats.idle()]), new Promise((r) => setTimeout(r, 10_000).unref())]);
      await rpcServer.close();
      await imageCache.close();
      await operator.close();
      await driverServices.close();
      // Shutting down: a failed offline mark only delays other conductors' takeover until our heartbeat ages out.
      await store.setConductorOnline(ctx.host, false).catch(() => undefined);
      await store.close();
      log.info('conductor stopped');
    })();
    return closing;
  };
  return { url, port, ctx, server, close, caPem: apiTls?.caPem, caFile: apiTls?.caFile, openrc,
    createdCredentials: ensured.created };
}

function announceCredentials(created: RunningConductor['createdCredentials'], caFile: string | undefined,
  openrc: string): void {
  if (created) {
    process.stdout.write(`created http_basic user "${created.username}" with password ${created.password}\n` +
      `  (shown once; kept in ${created.file}, mode 0600)\n`);
  }
  if (caFile) process.stdout.write(`API CA certificate (baremetal --os-cacert): ${caFile}\n`);
  if (openrc) process.stdout.write(`CLI environment: source ${openrc}\n`);
}

/** `--init` (npm run setup): the credentials and TLS files, without starting anything. */
async function init(config: ConductorConfig): Promise<void> {
  const ensured = await ensureAdminCredentials(config);
  const tls = await prepareApiTls(ensured.config);
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  const openrc = await writeOpenrc(ensured.config, `${tls ? 'https' : 'http'}://${host}:${config.port}`, tls?.caFile);
  if (!ensured.created && ensured.config.auth.strategy === 'http_basic') {
    process.stdout.write(`http_basic users: ${ensured.config.auth.htpasswd_file ?? ''} (already there, unchanged)\n`);
  }
  announceCredentials(ensured.created, tls?.caFile, openrc);
}

async function cli(): Promise<void> {
  let config: ConductorConfig;
  let initOnly = false;
  try {
    initOnly = parseFlags(process.argv.slice(2)).init === true;
    config = loadConfig(process.argv.slice(2));
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`baremetal-conductor: ${e.message}\n` +
        'usage: npm run conductor -- [--host H] [--port P] [--data-dir DIR] [--config FILE.json] ' +
        '[--auth http_basic|noauth] [--tls auto|off] [--database-url postgresql://...] [--hostname NAME] [--init]\n');
      process.exit(2);
    }
    throw e;
  }
  if (initOnly) {
    await init(config);
    return;
  }
  const running = await startConductor(config);
  process.stdout.write(`baremetal-conductor listening on ${running.url} (data dir ${config.data_dir})\n`);
  announceCredentials(running.createdCredentials, running.caFile, running.openrc);
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
