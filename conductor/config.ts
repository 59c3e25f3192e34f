/**
 * The conductor's one typed configuration: defaults < config file (JSON) < environment (BMTS_*) < flags.
 * Validated once with zod at start-up; a bad value is a ConfigError naming the key, never a stack trace.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { z } from 'zod';
import { ConfigError, errorMessage } from '../common/errors.js';
import { isForbiddenKey, parseJsonSafe } from '../common/safe-json.js';
import { InspectorConfigSchema } from './inspection/config.js';
import { keystoneAuthSchema } from './keystone-config.js';

const seconds = z.number().nonnegative();

export const ConfigSchema = z.object({
  host: z.string().min(1).default('127.0.0.1'),
  port: z.number().int().min(0).max(65535).default(6385),
  /** Directory holding the SQLite file (and later other state). */
  data_dir: z.string().min(1).default(resolve('.data')),
  /** Conductor hostname recorded in `reservation` and `conductors`. */
  conductor_host: z.string().min(1).default(hostname()),
  conductor_group: z.string().default(''),
  /**
   * Several conductors on one database (conductor/cluster/): this conductor's name (default conductor_host, the
   * machine's hostname), its liveness heartbeat, the hash ring, and the internal JSON-RPC other conductors
   * forward node requests to (Ironic's [conductor] heartbeat_* and [json_rpc]).
   */
  conductor: z.object({
    hostname: z.string().min(1).max(255).optional(),
    heartbeat_interval: z.number().positive().default(10),
    heartbeat_timeout: z.number().positive().default(60),
    /** 2^N ring points per conductor (Ironic's hash_partition_exponent). */
    hash_partition_exponent: z.number().int().min(1).max(14).default(8),
    /** Listen address and port of the internal RPC (port 0: any free port; the URL is registered). */
    rpc_host: z.string().min(1).optional(),
    rpc_port: z.number().int().min(0).max(65535).default(0),
    /** URL other conductors reach this one's RPC at (default: built from rpc_host and the bound port). */
    rpc_url: z.string().url().optional(),
    /** Shared secret of the internal RPC; default: <data_dir>/rpc-secret, created on first start. */
    rpc_secret: z.string().min(16).optional(),
    rpc_secret_file: z.string().optional(),
    /** Extra CA bundle (PEM file) the RPC client trusts for other conductors' https RPC URLs. */
    rpc_ca_file: z.string().optional(),
    rpc_timeout: seconds.default(60),
    // Fleet limits ([conductor] in Ironic; conductor/fleet.ts).
    /** Nodes in deploying / wait call-back before deploy/rebuild requests get 503 ConcurrentActionLimit. */
    max_concurrent_deploy: z.number().int().min(1).default(250),
    /** Nodes in cleaning / clean wait / deleting before manual clean and undeploy requests get 503. */
    max_concurrent_clean: z.number().int().min(1).default(50),
    /** Background workers (provisioning workers, heartbeat runs) running at once; the rest queue. */
    workers_pool_size: z.number().int().min(3).default(300),
    /** BMC calls (power, boot device) in flight at once, in total and per BMC address; the rest queue. */
    max_bmc_calls: z.number().int().min(1).default(64),
    max_bmc_calls_per_address: z.number().int().min(1).default(2),
  }).default({ heartbeat_interval: 10, heartbeat_timeout: 60, hash_partition_exponent: 8, rpc_port: 0,
    rpc_timeout: 60, max_concurrent_deploy: 250, max_concurrent_clean: 50, workers_pool_size: 300, max_bmc_calls: 64,
    max_bmc_calls_per_address: 2 }),
  /**
   * Directories local files (driver_info deploy_kernel/ramdisk, file:// image_source ...) may come from, checked
   * after realpath (Ironic's [conductor]file_url_allowed_paths). Absent: <data_dir>/images. See conductor/file-access.ts.
   */
  file_url_allowed_paths: z.array(z.string().min(1)).optional(),
  database: z.object({
    backend: z.enum(['sqlite']).default('sqlite'),
    /**
     * postgresql://user:password@host:port/dbname: the PostgreSQL store (conductor/store/postgres.ts), which several
     * conductors can share; absent: SQLite in data_dir. The password never reaches a log line.
     */
    url: z.string().regex(/^postgres(?:ql)?:\/\//i, 'must be a postgresql:// URL').optional(),
    /** PostgreSQL connections per conductor. */
    pool_size: z.number().int().min(1).max(100).default(10),
    /** File name inside data_dir, or ':memory:'. */
    sqlite_file: z.string().default('conductor.sqlite'),
    /** Memory for rendered node list items, reused while their node is unchanged (0: no cache). */
    render_cache_mib: z.number().min(0).max(1024).default(8),
  }).default({ backend: 'sqlite', sqlite_file: 'conductor.sqlite', render_cache_mib: 8, pool_size: 10 }),
  /** Operator authentication (conductor/api/auth.ts); http_basic unless noauth is chosen explicitly. */
  auth: z.object({
    strategy: z.enum(['noauth', 'http_basic', 'keystone']).default('http_basic'),
    /** strategy keystone: token validation and Ironic's default policy (conductor/api/keystone.ts, policy.ts). */
    keystone: keystoneAuthSchema.optional(),
    /** htpasswd-style file `user:$2b$...` (bcrypt); default <data_dir>/htpasswd, created with a random password. */
    htpasswd_file: z.string().optional(),
    /** Failed logins from one address within failure_window seconds before it gets 429 until the window ends. */
    max_failures: z.number().int().positive().default(10),
    failure_window: z.number().positive().default(300),
  }).default({ strategy: 'http_basic', max_failures: 10, failure_window: 300 }),
  /** HTTPS for the API (conductor/api-tls.ts): operator cert/key, else a generated CA + certificate in data_dir. */
  tls: z.object({
    mode: z.enum(['auto', 'off']).default('auto'),
    cert_file: z.string().optional(),
    key_file: z.string().optional(),
    /** CA bundle handed to ramdisks (ipa-cafile); default: the generated CA, none for operator files. */
    ca_file: z.string().optional(),
    /** Extra DNS names / IPs for the generated certificate (listen host, api_url host, 127.0.0.1 are always in). */
    extra_sans: z.array(z.string()).default([]),
  }).default({ mode: 'auto', extra_sans: [] }),
  /** Public base URL used for links (`[api]public_endpoint`); default: the request's host URL. */
  public_endpoint: z.string().url().optional(),
  /** Guest-facing API URL handed to ramdisks as ipa-api-url (never the listen address by assumption). */
  api_url: z.string().url().optional(),
  max_body_bytes: z.number().int().positive().default(1024 * 1024),
  max_limit: z.number().int().positive().default(1000),
  default_resource_class: z.string().nullable().default(null),
  enabled_hardware_types: z.array(z.string()).default(['fake-hardware', 'ipmi', 'redfish']),
  /** Per interface kind: enabled implementations (absent = every registered one). */
  enabled_interfaces: z.record(z.string(), z.array(z.string())).default({}),
  /** Per interface kind: the default implementation (absent = the hardware type's first enabled one). */
  default_interfaces: z.record(z.string(), z.string()).default({}),
  automated_clean: z.boolean().default(true),
  deploy_callback_timeout: seconds.default(1800),
  clean_callback_timeout: seconds.default(1800),
  rescue_callback_timeout: seconds.default(1800),
  inspect_wait_timeout: seconds.default(1800),
  heartbeat_timeout: z.number().int().positive().default(300),
  /** Reject http:// agent callback URLs (Ironic's [agent]require_tls). */
  require_tls: z.boolean().default(true),
  restrict_lookup: z.boolean().default(true),
  periodic: z.object({
    /** Seconds; 0 disables the task. */
    sync_power_state_interval: seconds.default(60),
    check_provision_state_interval: seconds.default(60),
    reservation_cleanup_interval: seconds.default(60),
    power_state_sync_max_retries: z.number().int().nonnegative().default(3),
    /** Ironic's [conductor]check_allocations_interval: taking over allocations of conductors that are gone. */
    check_allocations_interval: seconds.default(60),
  }).default({ sync_power_state_interval: 60, check_provision_state_interval: 60, reservation_cleanup_interval: 60,
    power_state_sync_max_retries: 3, check_allocations_interval: 60 }),
  locks: z.object({
    node_locked_retry_attempts: z.number().int().nonnegative().default(3),
    node_locked_retry_interval: seconds.default(1),
  }).default({ node_locked_retry_attempts: 3, node_locked_retry_interval: 1 }),
  /** Boot server settings for the drivers engineer (iPXE / TFTP). */
  boot: z.object({
    http_root: z.string().optional(),
    http_url: z.string().optional(),
    tftp_root: z.string().optional(),
    listen_port: z.number().int().min(0).max(65535).optional(),
    /** Boot server listen address (loopback; nodes come in through http_url). */
    listen_host: z.string().default('127.0.0.1'),
    kernel_append_params: z.string().default('nofb nomodeset vga=normal'),
  }).default({ kernel_append_params: 'nofb nomodeset vga=normal', listen_host: '127.0.0.1' }),
  /** Real power drivers (Ironic [conductor] power timeouts, [ipmi], [redfish]); seconds. See conductor/drivers/real.ts. */
  /**
   * The `ssh` hardware type (conductor/drivers/ssh-virt.ts): host keys are checked against known_hosts_file
   * (default <data_dir>/ssh/known_hosts); trust_on_first_use records an unknown host's key instead of refusing.
   */
  ssh: z.object({
    known_hosts_file: z.string().min(1).optional(),
    trust_on_first_use: z.boolean().default(false),
    command_timeout: seconds.default(30),
  }).default({ trust_on_first_use: false, command_timeout: 30 }),
  power: z.object({
    state_change_timeout: seconds.default(60),
    soft_power_off_timeout: seconds.default(600),
    ipmi_command_retry_timeout: seconds.default(60),
    ipmi_min_command_interval: seconds.default(1),
    redfish_connection_attempts: z.number().int().positive().default(5),
    redfish_connection_retry_interval: seconds.default(2),
  }).default({ state_change_timeout: 60, soft_power_off_timeout: 600, ipmi_command_retry_timeout: 60,
    ipmi_min_command_interval: 1, redfish_connection_attempts: 5, redfish_connection_retry_interval: 2 }),
  /** Talking to agents ([agent] in Ironic); seconds. */
  agent: z.object({
    command_timeout: seconds.default(60),
    max_command_attempts: z.number().int().positive().default(3),
    /**
     * Pause between attempts after a connection failure. Ironic retries at once; an agent whose API comes up a
     * few seconds after its first heartbeat (slow NIC, auto-TLS key generation) would then fail the step.
     */
    command_retry_interval: seconds.default(2),
    command_wait_interval: seconds.default(6),
    command_wait_attempts: z.number().int().positive().default(100),
    /** tear_down_agent: BMC polls after the agent's soft power-off, then a hard power-off. */
    power_off_poll_attempts: z.number().int().nonnegative().default(6),
    power_off_poll_interval: seconds.default(5),
    /** Ask the agent for its logs: on_failure | always | never (kept under data_dir/agent-logs). */
    deploy_logs_collect: z.enum(['on_failure', 'always', 'never']).default('on_failure'),
    /** Accept md5 image checksums and tell agents so at lookup (agent_md5_checksum_enable), as newer Ironic. */
    allow_md5_checksum: z.boolean().default(false),
    /** Largest agent command response body read (JSON results); bigger is an error, never buffered whole. */
    max_response_bytes: z.number().int().positive().default(8 * 2 ** 20),
    /** Largest log.collect_system_logs response (base64 tarball) accepted and stored. */
    max_log_bytes: z.number().int().positive().default(64 * 2 ** 20),
    /**
     * Where agents get instance images (Ironic's [agent]image_download_source; per node: instance_info or
     * driver_info image_download_source). http (default): from image_source itself; local: from the conductor's
     * image cache (conductor/image-cache/); swift: no object store here, so as http. Absent: http, or the
     * deprecated deploy.image_download_source.
     */
    image_download_source: z.enum(['swift', 'http', 'local']).optional(),
  }).default({ command_timeout: 60, max_command_attempts: 3, command_retry_interval: 2, command_wait_interval: 6, command_wait_attempts: 100,
    power_off_poll_attempts: 6, power_off_poll_interval: 5, deploy_logs_collect: 'on_failure', allow_md5_checksum: false,
    max_response_bytes: 8 * 2 ** 20, max_log_bytes: 64 * 2 ** 20 }),
  /** Deploy and cleaning ([deploy] in Ironic). erase_devices 0 = automated cleaning wipes metadata only. */
  deploy: z.object({
    erase_devices_priority: z.number().int().nonnegative().nullable().default(0),
    erase_devices_metadata_priority: z.number().int().nonnegative().nullable().default(null),
    /** Boot mode sent to agents when the node says nothing (SeaBIOS VMs: bios). */
    default_boot_mode: z.enum(['bios', 'uefi']).default('bios'),
    /** Power the node off when a deploy fails (so a broken instance never runs). */
    power_off_on_deploy_failure: z.boolean().default(true),
    /**
     * Deprecated spelling of agent.image_download_source (which wins when set): direct = http (agents fetch the
     * origin), http = local (the conductor's image cache serves it).
     */
    image_download_source: z.enum(['direct', 'http']).optional(),
    /**
     * Let the boot server's image cache (and iPXE deploy_kernel/ramdisk URLs it caches) fetch from loopback
     * addresses. Off: only http(s) URLs that resolve to neither loopback nor link-local addresses are fetched,
     * so an API user cannot make the conductor read services bound to 127.0.0.1 or 169.254.169.254.
     */
    image_cache_allow_loopback: z.boolean().default(false),
    /**
     * Ironic's [deploy]fast_track: after cleaning the agent stays up (node powered on, heartbeating) and a deploy
     * within fast_track_timeout seconds of its last heartbeat uses it without a power cycle (conductor/fast-track.ts).
     */
    fast_track: z.boolean().default(false),
    fast_track_timeout: z.number().int().min(0).max(300).default(300),
  }).default({ erase_devices_priority: 0, erase_devices_metadata_priority: null, default_boot_mode: 'bios',
    power_off_on_deploy_failure: true, image_cache_allow_loopback: false,
    fast_track: false, fast_track_timeout: 300 }),
  /** Convert qcow2 images to raw in the conductor's image cache (Ironic's [DEFAULT]force_raw_images). */
  force_raw_images: z.boolean().default(true),
  /** The master image cache behind image_download_source=local (Ironic's instance_master_path and its size/TTL). */
  image_cache: z.object({
    /** Directory of the cache; default <data_dir>/image-cache. */
    master_path: z.string().min(1).optional(),
    /** Cap in MiB on all cached images, in use or not (Ironic [pxe]image_cache_size). */
    size_mib: z.number().int().positive().default(20480),
    /** Minutes an unused image stays (Ironic [pxe]image_cache_ttl). */
    ttl_minutes: z.number().int().positive().default(10080),
    /** Seconds per origin download (and per qemu-img run). */
    download_timeout: z.number().positive().default(600),
    /** Seconds between drops of links of nodes that left deploy and TTL clean-ups (0: only when space is needed). */
    sweep_interval: seconds.default(60),
    /** Own image server, used only when there is no boot server (boot.http_root unset). */
    listen_host: z.string().default('127.0.0.1'),
    listen_port: z.number().int().min(0).max(65535).default(0),
    /** Guest-facing base URL of that server; default http://listen_host:port. */
    http_url: z.string().url().optional(),
  }).default({ size_mib: 20480, ttl_minutes: 10080, download_timeout: 600, sweep_interval: 60, listen_host: '127.0.0.1',
    listen_port: 0 }),
  /** In-band/out-of-band inspection and discovery (conductor/inspection/config.ts). */
  inspector: InspectorConfigSchema.prefault({}),
  /**
   * DHCP for the provisioning network (conductor/dhcp/): `none` (the site's DHCP hands out the boot files) or
   * `dnsmasq` (per-node host entries while a node boots a ramdisk; run by the conductor or by the site).
   */
  dhcp: z.object({
    provider: z.enum(['none', 'dnsmasq']).default('none'),
    /** Run and supervise dnsmasq (true) or only write its config and per-node files for an external one. */
    manage_dnsmasq: z.boolean().default(true),
    /** hostsdir/, optsdir/, leases, dnsmasq.conf; default <data_dir>/dhcp. */
    dir: z.string().optional(),
    interface: z.string().default('br0'),
    /** `start,end[,lease time]` (dnsmasq dhcp-range). */
    range: z.string().optional(),
    /** Network namespace the managed dnsmasq runs in. */
    namespace: z.string().optional(),
    /** TFTP server address nodes are told (options 66/150, siaddr): the conductor's provisioning address. */
    tftp_server: z.string().optional(),
    /** Answer MACs without a host entry (discovery of unknown nodes). */
    allow_unknown: z.boolean().default(false),
    /** External dnsmasq's pid file: SIGHUP after changes (else its inotify watch reads them). */
    pid_file: z.string().optional(),
    dnsmasq_binary: z.string().default('dnsmasq'),
    /** User the managed dnsmasq runs as (dnsmasq's default: nobody, which must read tftp_root and dhcp.dir). */
    dnsmasq_user: z.string().optional(),
    /**
     * dnsmasq pings an address before its first offer (up to 3 s per new lease). false (no-ping): only where this
     * dnsmasq alone assigns addresses in dhcp.range (the lab's rack), since a host configured by hand in the range
     * then goes unnoticed.
     */
    ping_check: z.boolean().default(true),
    /** UEFI boot file of the ipxe interface: snponly.efi (Ironic's default) or ipxe.efi. */
    uefi_ipxe_bootfile: z.string().default('snponly.efi'),
  }).default({ provider: 'none', manage_dnsmasq: true, interface: 'br0', allow_unknown: false, ping_check: true,
    dnsmasq_binary: 'dnsmasq', uefi_ipxe_bootfile: 'snponly.efi' }),
  /** Modules adding vendor passthru methods (conductor/operator-interfaces.ts); relative paths: under data_dir. */
  vendor_plugins: z.array(z.string().min(1)).default([]),
  /** Serial consoles (Ironic's [console]): socat / web console ports come from port_range "LOW:HIGH". */
  console: z.object({
    /** Address the socat and web console listeners bind to (Ironic's socat_address). */
    host: z.string().min(1).default('127.0.0.1'),
    /** Host put into console_info URLs (default: host). */
    public_host: z.string().min(1).optional(),
    port_range: z.string().regex(/^\d{1,5}:\d{1,5}$/).default('10000:20000'),
    /** Lifetime of a web console's one-time URL token, seconds. */
    token_ttl: z.number().int().positive().default(600),
  }).default({ host: '127.0.0.1', port_range: '10000:20000', token_ttl: 600 }),
  /** How rescue passwords are hashed before they reach the agent (Ironic's [conductor] option). */
  rescue_password_hash_algorithm: z.enum(['sha256', 'sha512']).default('sha256'),
  node_history: z.boolean().default(true),
  node_history_max_entries: z.number().int().positive().default(300),
}).strict();

export type ConductorConfig = z.infer<typeof ConfigSchema>;
export type ConfigInput = z.input<typeof ConfigSchema>;

/**
 * Env vars understood: BMTS_HOST, BMTS_PORT, BMTS_DATA_DIR, BMTS_CONFIG, BMTS_API_URL, BMTS_AUTH_STRATEGY, BMTS_TLS,
 * BMTS_DATABASE_URL, BMTS_CONDUCTOR_HOSTNAME, BMTS_RPC_SECRET (conductor.rpc_secret).
 */
function fromEnv(env: NodeJS.ProcessEnv): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (env.BMTS_HOST) out.host = env.BMTS_HOST;
  if (env.BMTS_PORT) out.port = Number(env.BMTS_PORT);
  if (env.BMTS_DATA_DIR) out.data_dir = env.BMTS_DATA_DIR;
  if (env.BMTS_API_URL) out.api_url = env.BMTS_API_URL;
  if (env.BMTS_AUTH_STRATEGY) out.auth = { strategy: env.BMTS_AUTH_STRATEGY };
  if (env.BMTS_TLS) out.tls = { mode: env.BMTS_TLS };
  if (env.BMTS_DATABASE_URL) out.database = { url: env.BMTS_DATABASE_URL };
  if (env.BMTS_CONDUCTOR_HOSTNAME || env.BMTS_RPC_SECRET) {
    out.conductor = { ...(env.BMTS_CONDUCTOR_HOSTNAME ? { hostname: env.BMTS_CONDUCTOR_HOSTNAME } : {}),
      ...(env.BMTS_RPC_SECRET ? { rpc_secret: env.BMTS_RPC_SECRET } : {}) };
  }
  return out;
}

export interface ParsedFlags {
  host?: string;
  port?: number;
  dataDir?: string;
  config?: string;
  auth?: string;
  tls?: string;
  databaseUrl?: string;
  /** conductor.hostname: this conductor's name among several. */
  hostname?: string;
  /** Create the credentials and TLS files, print them, and exit (npm run setup). */
  init?: boolean;
}

export function parseFlags(argv: readonly string[]): ParsedFlags {
  const flags: ParsedFlags = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    const eq = arg.indexOf('=');
    const key = eq > 0 ? arg.slice(0, eq) : arg;
    const value = (): string => {
      if (eq > 0) return arg.slice(eq + 1);
      const v = argv[++i];
      if (v === undefined) throw new ConfigError(`flag ${key} needs a value`);
      return v;
    };
    switch (key) {
      case '--host': flags.host = value(); break;
      case '--port': {
        const v = value();
        if (!/^\d+$/.test(v)) throw new ConfigError(`--port: not a port number: ${v}`);
        flags.port = Number(v);
        break;
      }
      case '--data-dir': flags.dataDir = resolve(value()); break;
      case '--config': flags.config = value(); break;
      case '--auth': flags.auth = value(); break;
      case '--tls': flags.tls = value(); break;
      case '--database-url': flags.databaseUrl = value(); break;
      case '--hostname': flags.hostname = value(); break;
      case '--init': flags.init = true; break;
      default: throw new ConfigError(`unknown flag: ${arg}`);
    }
  }
  return flags;
}

function deepMerge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    if (isForbiddenKey(k)) continue;
    const prev = Object.hasOwn(out, k) ? out[k] : undefined;
    if (v && typeof v === 'object' && !Array.isArray(v) && prev && typeof prev === 'object' && !Array.isArray(prev)) {
      out[k] = deepMerge(prev as Record<string, unknown>, v as Record<string, unknown>);
    } else if (v !== undefined) {
      out[k] = v;
    }
  }
  return out;
}

/** Validates a plain object (tests build configs this way). */
export function buildConfig(input: ConfigInput | Record<string, unknown> = {}): ConductorConfig {
  const r = ConfigSchema.safeParse(input);
  if (!r.success) {
    const msg = r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    throw new ConfigError(`invalid conductor configuration: ${msg}`);
  }
  // conductor.hostname is the documented name; conductor_host stays its older spelling (one value for both).
  if (r.data.conductor.hostname !== undefined) r.data.conductor_host = r.data.conductor.hostname;
  return r.data;
}

export function loadConfig(argv: readonly string[] = [], env: NodeJS.ProcessEnv = process.env): ConductorConfig {
  const flags = parseFlags(argv);
  const file = flags.config ?? env.BMTS_CONFIG;
  let fromFile: Record<string, unknown> = {};
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new ConfigError(`cannot read config file ${file}: ${errorMessage(e)}`);
    }
    try {
      const parsed: unknown = parseJsonSafe(text, { maxDepth: 32, maxStringLength: text.length });
      if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not a JSON object');
      fromFile = parsed as Record<string, unknown>;
    } catch (e) {
      throw new ConfigError(`config file ${file} is not valid JSON: ${errorMessage(e)}`);
    }
  }
  const fromFlags: Record<string, unknown> = {};
  if (flags.host !== undefined) fromFlags.host = flags.host;
  if (flags.port !== undefined) fromFlags.port = flags.port;
  if (flags.dataDir !== undefined) fromFlags.data_dir = flags.dataDir;
  if (flags.auth !== undefined) fromFlags.auth = { strategy: flags.auth };
  if (flags.tls !== undefined) fromFlags.tls = { mode: flags.tls };
  if (flags.databaseUrl !== undefined) fromFlags.database = { url: flags.databaseUrl };
  if (flags.hostname !== undefined) fromFlags.conductor = { hostname: flags.hostname };
  const merged = deepMerge(deepMerge(fromFile, fromEnv(env)), fromFlags);
  if (typeof merged.data_dir === 'string') merged.data_dir = resolve(merged.data_dir);
  return buildConfig(merged);
}
