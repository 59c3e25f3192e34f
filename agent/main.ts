/**
 * The agent's start-up: config → hardware context → hardware managers → (inspection with the full inventory) →
 * lookup by the NICs' MACs → API server (auto-TLS when the conductor supports it) → heartbeat loop.
 * `startAgent` is the embeddable form (tests); the CLI entry at the bottom runs under tsx and bundled as CJS.
 */
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, errorMessage } from '../common/errors.js';
import { addLogFile, getLogger, logLevelFrom, setLogLevel } from '../common/logger.js';
import { inRamdisk } from '../common/ramdisk.js';
import { setHardwareContext } from '../hardware-managers/context.js';
import { setImageSettings } from '../image/settings.js';
import { dispatchToManagers, loadManagers } from '../hardware-managers/dispatch.js';
import type { LookupConfig, LookupNode } from '../protocol/lookup.js';
import { AGENT_VERIFY_CA_VERSION } from '../protocol/lookup.js';
import { loadConfig, normaliseMac, USAGE, type AgentConfig } from './config.js';
import { callbackUrl, compareVersions, ConductorClient, detectAdvertiseHost } from './conductor-client.js';
import { CommandExecutor } from './commands/executor.js';
import { CommandRegistry } from './commands/registry.js';
import { registerBuiltinExtensions } from './extensions/index.js';
import { Heartbeater } from './heartbeat.js';
import { runInspection, type InspectionOutcome } from './inspection/callback.js';
import type { AgentLifecycle, EndReason } from './lifecycle.js';
import { AGENT_VERSION, type CommandResult } from '../protocol/agent-api.js';
import { createApp, startServer, type AgentHttpServer, type TlsMaterial } from './server.js';
import { generateSelfSigned, readTlsFiles } from './tls.js';

const log = getLogger('agent');

export interface StartOptions {
  /** Commands to serve (default: every built-in extension). */
  registry?: CommandRegistry;
  /** Aborts a lookup in progress (SIGTERM during start-up). */
  signal?: AbortSignal;
}

export interface RunningAgent {
  config: AgentConfig;
  /** The port the API listens on (the configured one, or the one picked for port 0). */
  port: number;
  protocol: 'http' | 'https';
  /** What heartbeats advertise (null without a conductor). */
  callbackUrl: string | null;
  node: LookupNode | null;
  /** The PEM sent as agent_verify_ca (auto-TLS), else null. */
  verifyCa: string | null;
  token(): string | null;
  executor: CommandExecutor;
  heartbeater: Heartbeater | null;
  /** What the inspection callback answered (null when ipa-inspection-callback-url is not set). */
  inspection: InspectionOutcome | null;
  /** Resolves with an exit code when the agent ended itself (power-off/reboot/lockdown outside the ramdisk). */
  ended: Promise<number>;
  stop(): Promise<void>;
}

/** Log files already receiving this process's log (startAgent may run more than once in tests). */
const logFilesAdded = new Set<string>();

function resolveLogFile(config: AgentConfig): string {
  if (config.logFile) return config.logFile;
  return inRamdisk() ? '/var/log/baremetal-agent.log' : join(tmpdir(), `baremetal-agent-${process.pid}.log`);
}

/** The ramdisk's supervisor already tees our output into the default log file: do not write it twice. */
function teedBySupervisor(file: string, config: AgentConfig): boolean {
  if (config.logFile || !inRamdisk() || !existsSync(file)) return false;
  try {
    return readFileSync(file, 'utf8').includes('bmts-supervise');
  } catch {
    return false;
  }
}

/** MACs of this machine for lookup when the managers list none (a manager failing must not stop the lookup). */
function sysfsMacs(): string[] {
  const out: string[] = [];
  for (const nic of (() => {
    try {
      return readdirSync('/sys/class/net');
    } catch {
      return [] as string[];
    }
  })()) {
    try {
      const m = normaliseMac(readFileSync(`/sys/class/net/${nic}/address`, 'utf8'));
      if (m && m !== '00:00:00:00:00:00') out.push(m);
    } catch {
      // interface vanished
    }
  }
  return out;
}

/**
 * The lookup's addresses: the MACs of the NICs the inventory lists, from the same dispatch the inventory takes its
 * `interfaces` from (listNetworkInterfaces), so the lookup does not wait for the rest of it (disks, CPU, memory,
 * DMI, BMC: seconds on slow hardware or under emulation). IPA looks up with the same addresses (its
 * hardware_info['interfaces'] is list_network_interfaces' answer). The full inventory is still collected whenever
 * something asks for it: inspection (before the lookup, as IPA), get_hardware_info, the clean and deploy steps.
 */
async function lookupAddresses(): Promise<string[]> {
  try {
    const nics = await dispatchToManagers<{ mac_address?: unknown }[]>('listNetworkInterfaces');
    const macs = (Array.isArray(nics) ? nics : [])
      .map((i) => (typeof i?.mac_address === 'string' ? normaliseMac(i.mac_address) : null))
      .filter((m): m is string => m !== null && m !== '00:00:00:00:00:00');
    if (macs.length > 0) return macs;
    log.warn('the hardware managers list no interface with a MAC; using /sys/class/net');
  } catch (e) {
    log.warn({ err: errorMessage(e) }, 'listing the network interfaces failed; using /sys/class/net for the lookup addresses');
  }
  return sysfsMacs();
}

/**
 * Milliseconds from the process start to Node's bootstrap phases and to now (the start-up timeline of
 * `npm run bench -- ramdisk` splits the agent's start with it: executable + V8 + Node bootstrap vs our modules).
 */
function startupMs(): Record<string, number> {
  const t = performance.nodeTiming;
  const r = (v: number): number => Math.round(v);
  return { v8: r(t.v8Start), environment: r(t.environment), bootstrap: r(t.bootstrapComplete), now: r(performance.now()) };
}

export async function startAgent(config: AgentConfig, opts: StartOptions = {}): Promise<RunningAgent> {
  const startedAt = Date.now() / 1000;
  if (config.debug) setLogLevel('debug');
  const logFile = resolveLogFile(config);
  if (!logFilesAdded.has(logFile) && !teedBySupervisor(logFile, config)) {
    addLogFile(logFile);
    logFilesAdded.add(logFile);
  }
  log.info({ version: AGENT_VERSION, inRamdisk: inRamdisk(), logFile, apiUrls: config.apiUrls, startup_ms: startupMs() }, 'agent starting');

  setHardwareContext({ deviceAllowlist: config.deviceAllowlist, bootif: config.bootif });
  // Image downloads trust what the agent's own TLS settings say (IPA shares them the same way).
  setImageSettings({ insecure: config.insecure, cafile: config.cafile, firmwareMaxBytes: config.firmwareMaxBytes });
  try {
    await loadManagers({
      pluginDirs: config.hardwareManagerDir ? [config.hardwareManagerDir] : [],
      pluginPackages: config.hardwareManagers,
    });
  } catch (e) {
    log.error({ err: errorMessage(e) }, 'hardware managers could not be loaded; hardware commands will fail');
  }

  let node: LookupNode | null = null;
  let lookupConfig: LookupConfig | null = null;
  let token: string | null = config.agentToken;
  let heartbeatTimeoutS = 300;
  let client: ConductorClient | null = null;
  // IPA inspects before the lookup: a node being inspected (or an unknown one, for discovery) is found by its data.
  let inspection: InspectionOutcome | null = null;
  if (config.inspectionCallbackUrls.length > 0 && !config.standalone) {
    inspection = await runInspection({
      callbackUrls: config.inspectionCallbackUrls, collectors: config.inspectionCollectors, logFile,
      lldpTimeoutS: config.lldpTimeoutS,
      insecure: config.insecure, cafile: config.cafile, requestTimeoutMs: config.httpRequestTimeoutS * 1000,
      globalRequestId: config.globalRequestId,
    });
  }
  if (config.apiUrls.length > 0 && !config.standalone) {
    client = new ConductorClient({
      apiUrls: config.apiUrls,
      insecure: config.insecure,
      cafile: config.cafile,
      globalRequestId: config.globalRequestId,
      apiVersion: config.ironicApiVersion,
      requestTimeoutMs: config.httpRequestTimeoutS * 1000,
      legacy: config.legacyVendorPassthru ? { driverName: config.driverName } : null,
    });
    const macs = config.lookupMacs ?? [...new Set([...(config.bootif ? [config.bootif] : []), ...(await lookupAddresses())])];
    log.info({ macs }, 'looking up the node');
    const found = await client.lookup({
      macs,
      nodeUuid: config.nodeUuid ?? inspection?.uuid ?? null,
      timeoutS: config.lookupTimeoutS,
      intervalS: config.lookupIntervalS,
      configuredToken: config.agentToken,
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    node = found.node;
    lookupConfig = found.config;
    token = found.token;
    heartbeatTimeoutS = found.heartbeatTimeoutS;
    setHardwareContext({ node, ...(found.config.agent_skip_bmc_detect === true ? { skipBmcDetect: true } : {}) });
    applyLookupImageSettings(found.config);
  } else if (config.apiUrls.length === 0 && !config.standalone && !inspection) {
    log.warn('no ipa-api-url: no lookup and no heartbeats; commands need ipa-agent-token');
  }

  let tls: TlsMaterial | null = null;
  let verifyCa: string | null = null;
  let advertiseHost = config.advertiseHost;
  if (!advertiseHost && client) advertiseHost = await detectAdvertiseHost(client.apiUrl);
  if (config.listenTls && config.tlsCertFile && config.tlsKeyFile) {
    tls = readTlsFiles(config.tlsCertFile, config.tlsKeyFile);
  } else if (config.enableAutoTls && client && advertiseHost) {
    if (compareVersions(await client.apiVersion(), AGENT_VERIFY_CA_VERSION) >= 0) {
      const cert = await generateSelfSigned(advertiseHost);
      tls = cert;
      verifyCa = cert.cert;
      log.info({ fingerprint: cert.fingerprint, host: advertiseHost }, 'auto-TLS: serving HTTPS with a self-signed certificate');
    } else {
      log.info('conductor API is older than 1.68: auto-TLS off, serving plain HTTP');
    }
  }

  let heartbeater: Heartbeater | null = null;
  // What commands may ask of this agent (ctx.agent); stop() below is only called once everything is up.
  const agentHooks: AgentLifecycle = {
    standalone: config.standalone,
    logFile,
    rescueRoot: config.rescueRoot,
    nodeInfo: () => ({ node, config: lookupConfig }),
    setNodeInfo: (info) => {
      node = info.node;
      lookupConfig = info.config;
    },
    stopServing: (reason: EndReason, o) =>
      new Promise<void>((resolve) => {
        log.warn({ reason, exit: o.exit }, 'stopping the API and heartbeats');
        // Let the response of the command that asked for this leave first.
        setTimeout(() => {
          void stop().then(() => {
            resolve();
            if (o.exit) resolveEnded(0);
            // Locked down (IPA sleeps forever): with the server closed nothing else keeps the process alive, and
            // a supervisor restarting the agent would undo the lockdown.
            else setInterval(() => undefined, 1 << 30);
          });
        }, 200).unref();
      }),
  };
  const executor = new CommandExecutor(opts.registry ?? registerBuiltinExtensions(), {
    onAsyncDone: () => heartbeater?.force(),
    agent: agentHooks,
  });
  const app = createApp({
    executor,
    token: () => token,
    standalone: config.standalone,
    requireTokenForReads: config.requireTokenForReads,
    bodyLimitBytes: config.commandBodyLimitBytes,
    startedAt,
  });
  const server: AgentHttpServer = await startServer(app, { host: config.listenHost, port: config.listenPort, tls });
  const protocol = tls ? 'https' : config.advertiseProtocol;
  const advertisePort = config.advertisePort === 0 ? server.port : config.advertisePort;
  const cbUrl = advertiseHost ? callbackUrl(protocol, advertiseHost, advertisePort) : null;
  log.info({ listen: `${config.listenHost}:${server.port}`, protocol: server.protocol, callback_url: cbUrl }, 'API serving');

  if (client && node && cbUrl) {
    const c = client;
    const uuid = node.uuid;
    heartbeater = new Heartbeater({
      send: () => c.heartbeat(uuid, { callbackUrl: cbUrl, token, verifyCa }),
      heartbeatTimeoutS,
      minGapS: config.heartbeatMinIntervalS,
    });
    heartbeater.start();
  }

  let resolveEnded!: (code: number) => void;
  const ended = new Promise<number>((r) => (resolveEnded = r));
  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      await heartbeater?.stop();
      await server.close();
      executor.shutdown();
    })();
    return stopping;
  };

  return {
    config,
    port: server.port,
    protocol: server.protocol,
    callbackUrl: cbUrl,
    node,
    verifyCa,
    token: () => token,
    executor,
    heartbeater,
    inspection,
    ended,
    stop,
  };
}

function describeInFlight(r: CommandResult | null): string {
  return r ? `command ${r.command_name} (${r.id}) still RUNNING` : 'no command running';
}

/** The CLI: exit 0 on SIGTERM/SIGINT and after power-off outside the ramdisk, 1 on start-up failure, 2 on bad config. */
export async function runCli(argv: readonly string[]): Promise<number> {
  let loaded: ReturnType<typeof loadConfig>;
  try {
    loaded = loadConfig(argv);
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`baremetal-agent: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
  if (loaded.kind === 'version') {
    process.stdout.write(`baremetal-agent ${AGENT_VERSION}\n`);
    return 0;
  }
  if (loaded.kind === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const abort = new AbortController();
  let agent: RunningAgent | null = null;
  let signalled: (code: number) => void = () => undefined;
  const bySignal = new Promise<number>((r) => (signalled = r));
  const onSignal = (sig: NodeJS.Signals): void => {
    log.info({ signal: sig, inFlight: describeInFlight(agent?.executor.running() ?? null) }, 'signal received, shutting down');
    abort.abort(new Error(`interrupted by ${sig}`));
    // A heartbeat stuck on an unresponsive conductor must not hold the exit for its whole request timeout.
    const grace = new Promise<void>((r) => setTimeout(r, 5000).unref());
    void Promise.race([agent ? agent.stop() : Promise.resolve(), grace]).then(() => signalled(0));
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  process.on('unhandledRejection', (e) => log.error({ err: errorMessage(e) }, 'unhandled rejection'));
  try {
    agent = await startAgent(loaded.config, { signal: abort.signal });
  } catch (e) {
    if (abort.signal.aborted) return bySignal;
    if (e instanceof ConfigError) {
      process.stderr.write(`baremetal-agent: ${e.message}\n`);
      return 2;
    }
    log.error({ err: errorMessage(e) }, 'agent failed to start');
    process.stderr.write(`baremetal-agent: ${errorMessage(e)}\n`);
    return 1;
  }
  return Promise.race([agent.ended, bySignal]);
}

/** True when this module is the program (tsx agent/main.ts, node bundle.cjs, the SEA), false when imported. */
function isEntry(): boolean {
  const url = import.meta.url as string | undefined;
  // Bundled to CJS without a define for import.meta.url: the bundle is the agent.
  if (!url) return true;
  const argv1 = process.argv[1];
  if (!argv1) return false;
  try {
    return realpathSync(fileURLToPath(url)) === realpathSync(argv1);
  } catch {
    return false;
  }
}

if (isEntry()) {
  setLogLevel(logLevelFrom(process.env));
  runCli(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      process.stderr.write(`baremetal-agent: ${errorMessage(e)}\n`);
      process.exit(1);
    },
  );
}

/** Lookup config keys that override local image settings, when the conductor sends them. */
function applyLookupImageSettings(cfg: LookupConfig): void {
  const update: Parameters<typeof setImageSettings>[0] = {};
  if (typeof cfg.agent_md5_checksum_enable === 'boolean') update.md5Enabled = cfg.agent_md5_checksum_enable;
  if (Array.isArray(cfg.permitted_image_formats)) update.permittedFormats = cfg.permitted_image_formats.map(String);
  if (typeof cfg.enable_bios_bootloader_install === 'boolean') update.enableBiosBootloaderInstall = cfg.enable_bios_bootloader_install;
  if (Object.keys(update).length) setImageSettings(update);
}
