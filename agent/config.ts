/**
 * The agent's settings, read once at start-up: the kernel command line
 * (/proc/cmdline, or --cmdline-file FILE instead), then IPA_* environment variables, then `--KEY=VALUE` flags,
 * later sources winning. Every key is the kernel-command-line spelling (`ipa-api-url`, `BOOTIF`); unknown keys
 * are ignored, malformed values are one ConfigError naming the key.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ConfigError } from '../common/errors.js';

export interface AgentConfig {
  /** Conductor base URLs, tried in order (empty: no lookup/heartbeat). */
  apiUrls: string[];
  lookupTimeoutS: number;
  lookupIntervalS: number;
  listenHost: string;
  listenPort: number;
  advertiseHost: string | null;
  advertisePort: number;
  advertiseProtocol: 'http' | 'https';
  insecure: boolean;
  cafile: string | null;
  debug: boolean;
  standalone: boolean;
  agentToken: string | null;
  globalRequestId: string | null;
  enableAutoTls: boolean;
  listenTls: boolean;
  tlsCertFile: string | null;
  tlsKeyFile: string | null;
  /** Force this Ironic API microversion instead of detecting it via GET /. */
  ironicApiVersion: string | null;
  httpRequestTimeoutS: number;
  /** PXE MAC from BOOTIF, lower-case colon form. */
  bootif: string | null;
  /** When set, the only block devices the hardware managers see or touch. */
  deviceAllowlist: string[] | null;
  hardwareManagerDir: string | null;
  hardwareManagers: string[];
  /** null: the default (ramdisk: /var/log/baremetal-agent.log, host: a temp file). */
  logFile: string | null;
  /** Minimum gap between a heartbeat and a forced one (IPA: 5 s); tests lower it. */
  heartbeatMinIntervalS: number;
  /** Ironic 21.4 lists commands without a token, so reads are open unless this is set. */
  requireTokenForReads: boolean;
  /** Largest POST /v1/commands body accepted (413 above). */
  commandBodyLimitBytes: number;
  /** Largest firmware image update_firmware downloads. */
  firmwareMaxBytes: number;
  /** MACs sent on lookup instead of the inventory's (tests on hosts whose MACs no conductor knows). */
  lookupMacs: string[] | null;
  nodeUuid: string | null;
  /** ipa-inspection-callback-url: post inspection data there before the lookup (agent/inspection.ts). */
  inspectionCallbackUrls: string[];
  /** ipa-inspection-collectors (IPA's default: default,logs). */
  inspectionCollectors: string[];
  /** ipa-lldp-timeout: how long the lldp collector listens for LLDP frames (IPA's default 30 s). */
  lldpTimeoutS: number;
  /**
   * Look up and heartbeat on the pre-1.22 vendor passthru routes (ipa-legacy-vendor-passthru=1), for old
   * conductors; `driverName` is the driver those routes name (old IPA's ipa-driver-name).
   */
  legacyVendorPassthru: boolean;
  driverName: string;
  /** Outside the ramdisk: the directory rescue.finalize_rescue writes etc/shadow under (never the host's). */
  rescueRoot: string | null;
}

const TRUE = new Set(['1', 'true', 'yes', 'on', 't', 'y']);
const FALSE = new Set(['0', 'false', 'no', 'off', 'f', 'n']);

const bool = z.string().transform((v, ctx) => {
  const s = v.trim().toLowerCase();
  if (TRUE.has(s)) return true;
  if (FALSE.has(s)) return false;
  ctx.addIssue({ code: 'custom', message: 'expected a boolean (1/0, true/false, yes/no, on/off)' });
  return z.NEVER;
});

const num = (min: number, max = Number.MAX_SAFE_INTEGER) =>
  z.string().transform((v, ctx) => {
    const n = Number(v.trim());
    if (v.trim() === '' || !Number.isFinite(n) || n < min || n > max) {
      ctx.addIssue({ code: 'custom', message: `expected a number between ${min} and ${max}` });
      return z.NEVER;
    }
    return n;
  });

const portFrom = (min: number) =>
  z.string().transform((v, ctx) => {
    const n = Number(v.trim());
    if (!/^\d+$/.test(v.trim()) || n < min || n > 65535) {
      ctx.addIssue({ code: 'custom', message: `expected a TCP port (${min}-65535)` });
      return z.NEVER;
    }
    return n;
  });
const port = portFrom(1);

const list = z.string().transform((v) =>
  v
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0),
);

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/** pxelinux sends `01-52-54-00-12-34-56` (ARP type 01 first), iPXE `52:54:00:12:34:56`. */
export function normaliseMac(raw: string): string | null {
  let s = raw.trim().toLowerCase();
  if (/^01-([0-9a-f]{2}-){5}[0-9a-f]{2}$/.test(s)) s = s.slice(3);
  s = s.replace(/-/g, ':');
  return MAC_RE.test(s) ? s : null;
}

const mac = z.string().transform((v, ctx) => {
  const m = normaliseMac(v);
  if (m === null) {
    ctx.addIssue({ code: 'custom', message: 'expected a MAC address (52:54:00:12:34:56 or 01-52-54-00-12-34-56)' });
    return z.NEVER;
  }
  return m;
});

const macList = list.transform((macs, ctx) => {
  const out: string[] = [];
  for (const m of macs) {
    const n = normaliseMac(m);
    if (n === null) {
      ctx.addIssue({ code: 'custom', message: `not a MAC address: ${m}` });
      return z.NEVER;
    }
    out.push(n);
  }
  return out;
});

const apiUrls = list.transform((urls, ctx) => {
  for (const u of urls) {
    let ok = false;
    try {
      const p = new URL(u);
      ok = (p.protocol === 'http:' || p.protocol === 'https:') && p.hostname !== '';
    } catch {
      ok = false;
    }
    if (!ok) {
      // IPA also accepts `mdns`; we have no multicast discovery, so say so instead of silently doing nothing.
      ctx.addIssue({
        code: 'custom',
        message: u === 'mdns' ? 'mdns discovery is not supported; give http(s) URLs' : `not an http(s) URL: ${u}`,
      });
      return z.NEVER;
    }
  }
  return urls.map((u) => u.replace(/\/+$/, ''));
});

const devices = list.transform((devs, ctx) => {
  for (const d of devs) {
    if (!/^\/dev\/\S+$/.test(d)) {
      ctx.addIssue({ code: 'custom', message: `not a /dev path: ${d}` });
      return z.NEVER;
    }
  }
  return devs;
});

const nonEmpty = z.string().trim().min(1, 'must not be empty');
const requestId = z.string().regex(/^req-[0-9a-fA-F-]{36}$/, 'expected req-<uuid>');
const apiVersion = z.string().regex(/^1\.\d+$/, 'expected a microversion such as 1.68');
const uuid = z.string().regex(/^[0-9a-fA-F-]{36}$/, 'expected a UUID');

/** Every key we read, with its parser. Keys outside this table are ignored. */
const KEYS = {
  'ipa-api-url': apiUrls,
  'ipa-lookup-timeout': num(0),
  'ipa-lookup-interval': num(0),
  'ipa-listen-host': nonEmpty,
  // 0: any free port (tests, embedding); the callback URL then carries the port actually bound
  'ipa-listen-port': portFrom(0),
  'ipa-advertise-host': nonEmpty,
  'ipa-advertise-port': port,
  'ipa-advertise-protocol': z.enum(['http', 'https']),
  'ipa-insecure': bool,
  'ipa-cafile': nonEmpty,
  'ipa-debug': bool,
  'ipa-standalone': bool,
  'ipa-agent-token': nonEmpty,
  'ipa-global-request-id': requestId,
  'ipa-enable-auto-tls': bool,
  'ipa-listen-tls': bool,
  'ipa-tls-cert-file': nonEmpty,
  'ipa-tls-key-file': nonEmpty,
  'ipa-ironic-api-version': apiVersion,
  'ipa-http-request-timeout': num(1),
  BOOTIF: mac,
  'ipa-device-allowlist': devices,
  'ipa-hardware-manager-dir': nonEmpty,
  'ipa-hardware-managers': list,
  'ipa-log-file': nonEmpty,
  'ipa-heartbeat-min-interval': num(0),
  'ipa-require-token-for-reads': bool,
  'ipa-command-body-limit': num(1024),
  'ipa-firmware-max-bytes': num(1),
  'ipa-lookup-macs': macList,
  'ipa-node-uuid': uuid,
  'ipa-inspection-callback-url': apiUrls,
  'ipa-inspection-collectors': list,
  'ipa-lldp-timeout': num(1),
  'ipa-legacy-vendor-passthru': bool,
  'ipa-rescue-root': nonEmpty,
  'ipa-driver-name': z.string().regex(/^[A-Za-z0-9_.-]{1,255}$/, 'expected a driver name'),
} as const;

type Key = keyof typeof KEYS;
export const CONFIG_KEYS = Object.keys(KEYS) as Key[];

function isKey(k: string): k is Key {
  return Object.hasOwn(KEYS, k);
}

/**
 * Split a kernel command line as Linux does: whitespace separates parameters except inside double quotes,
 * the quotes themselves are dropped (`a="b c"` → a=b c); each `key=value` splits at its first `=`, tokens
 * without `=` are ignored.
 */
export function parseCmdline(text: string): Map<string, string> {
  const out = new Map<string, string>();
  let i = 0;
  while (i < text.length) {
    while (i < text.length && /\s/.test(text[i] ?? '')) i++;
    if (i >= text.length) break;
    let token = '';
    let quoted = false;
    while (i < text.length) {
      const c = text[i] ?? '';
      if (c === '"') quoted = !quoted;
      else if (!quoted && /\s/.test(c)) break;
      else token += c;
      i++;
    }
    const eq = token.indexOf('=');
    if (eq > 0) out.set(token.slice(0, eq), token.slice(eq + 1));
  }
  return out;
}

export interface ParsedArgs {
  values: Map<string, string>;
  cmdlineFile: string | null;
  version: boolean;
  help: boolean;
}

/** `--KEY=VALUE`, `--KEY VALUE`, a bare boolean `--ipa-insecure`, `--cmdline-file FILE`, `--version`, `--help`. */
export function parseArgs(argv: readonly string[]): ParsedArgs {
  const values = new Map<string, string>();
  let cmdlineFile: string | null = null;
  let version = false;
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (arg === '--version' || arg === '-V') {
      version = true;
      continue;
    }
    if (arg === '--help' || arg === '-h') {
      help = true;
      continue;
    }
    if (!arg.startsWith('--')) throw new ConfigError(`unexpected argument "${arg}" (flags are --KEY=VALUE)`);
    const body = arg.slice(2);
    const eq = body.indexOf('=');
    const key = eq >= 0 ? body.slice(0, eq) : body;
    let value: string | undefined = eq >= 0 ? body.slice(eq + 1) : undefined;
    if (value === undefined) {
      const next = argv[i + 1];
      if (next !== undefined && !next.startsWith('--')) {
        value = next;
        i++;
      } else if (key !== 'cmdline-file' && isKey(key) && KEYS[key] === bool) {
        value = '1';
      } else {
        throw new ConfigError(`flag --${key} needs a value (--${key}=VALUE)`);
      }
    }
    if (key === 'cmdline-file') cmdlineFile = value;
    else if (isKey(key)) values.set(key, value);
    else if (!key.startsWith('ipa-')) throw new ConfigError(`unknown flag --${key}`);
    // unknown ipa-* keys are ignored, like unknown kernel parameters
  }
  return { values, cmdlineFile, version, help };
}

/** IPA_API_URL → ipa-api-url; only our keys. */
function fromEnv(env: NodeJS.ProcessEnv): Map<string, string> {
  const out = new Map<string, string>();
  for (const key of CONFIG_KEYS) {
    if (key === 'BOOTIF') continue;
    const v = env[key.toUpperCase().replace(/-/g, '_')];
    if (v !== undefined && v !== '') out.set(key, v);
  }
  return out;
}

function validate(raw: Map<string, string>): Partial<Record<Key, unknown>> {
  // Null prototype: a key not given stays undefined, whatever Object.prototype holds.
  const out: Partial<Record<Key, unknown>> = Object.create(null) as Partial<Record<Key, unknown>>;
  for (const [key, value] of raw) {
    if (!isKey(key)) continue;
    const r = KEYS[key].safeParse(value);
    if (!r.success) {
      const why = r.error.issues[0]?.message ?? 'invalid value';
      throw new ConfigError(`invalid ${key}=${JSON.stringify(value)}: ${why}`);
    }
    out[key] = r.data;
  }
  return out;
}

/** Merge the raw sources (cmdline < env < flags) and turn them into an AgentConfig. */
export function buildConfig(sources: Map<string, string>[]): AgentConfig {
  const merged = new Map<string, string>();
  for (const s of sources) for (const [k, v] of s) merged.set(k, v);
  const v = validate(merged);
  const get = <T>(k: Key, d: T): T => (v[k] === undefined ? d : (v[k] as T));
  const listenPort = get('ipa-listen-port', 9999);
  const listenTls = get('ipa-listen-tls', false);
  const tlsCertFile = get<string | null>('ipa-tls-cert-file', null);
  const tlsKeyFile = get<string | null>('ipa-tls-key-file', null);
  if (listenTls && (tlsCertFile === null || tlsKeyFile === null)) {
    throw new ConfigError('ipa-listen-tls=1 needs ipa-tls-cert-file and ipa-tls-key-file');
  }
  return {
    apiUrls: get<string[]>('ipa-api-url', []),
    lookupTimeoutS: get('ipa-lookup-timeout', 600),
    lookupIntervalS: get('ipa-lookup-interval', 1),
    listenHost: get('ipa-listen-host', '0.0.0.0'),
    listenPort,
    advertiseHost: get<string | null>('ipa-advertise-host', null),
    // IPA defaults this to 9999; following the listen port keeps `--ipa-listen-port=N` alone working.
    advertisePort: get('ipa-advertise-port', listenPort),
    advertiseProtocol: get<'http' | 'https'>('ipa-advertise-protocol', listenTls ? 'https' : 'http'),
    insecure: get('ipa-insecure', false),
    cafile: get<string | null>('ipa-cafile', null),
    debug: get('ipa-debug', false),
    standalone: get('ipa-standalone', false),
    agentToken: get<string | null>('ipa-agent-token', null),
    globalRequestId: get<string | null>('ipa-global-request-id', null),
    enableAutoTls: get('ipa-enable-auto-tls', true),
    listenTls,
    tlsCertFile,
    tlsKeyFile,
    ironicApiVersion: get<string | null>('ipa-ironic-api-version', null),
    httpRequestTimeoutS: get('ipa-http-request-timeout', 30),
    bootif: get<string | null>('BOOTIF', null),
    deviceAllowlist: get<string[] | null>('ipa-device-allowlist', null),
    hardwareManagerDir: get<string | null>('ipa-hardware-manager-dir', null),
    hardwareManagers: get<string[]>('ipa-hardware-managers', []),
    logFile: get<string | null>('ipa-log-file', null),
    heartbeatMinIntervalS: get('ipa-heartbeat-min-interval', 5),
    requireTokenForReads: get('ipa-require-token-for-reads', false),
    commandBodyLimitBytes: get('ipa-command-body-limit', 1024 * 1024),
    firmwareMaxBytes: get('ipa-firmware-max-bytes', 1024 * 1024 * 1024),
    lookupMacs: get<string[] | null>('ipa-lookup-macs', null),
    nodeUuid: get<string | null>('ipa-node-uuid', null),
    inspectionCallbackUrls: get<string[]>('ipa-inspection-callback-url', []),
    inspectionCollectors: get<string[]>('ipa-inspection-collectors', ['default', 'logs']),
    lldpTimeoutS: get('ipa-lldp-timeout', 30),
    legacyVendorPassthru: get('ipa-legacy-vendor-passthru', false),
    driverName: get('ipa-driver-name', 'agent_ipmitool'),
    rescueRoot: get<string | null>('ipa-rescue-root', null),
  };
}

export interface LoadOptions {
  /** Defaults to /proc/cmdline (an unreadable one counts as empty). */
  procCmdlinePath?: string;
  env?: NodeJS.ProcessEnv;
}

export type LoadResult =
  | { kind: 'run'; config: AgentConfig }
  | { kind: 'version' }
  | { kind: 'help' };

/** Read every source for a CLI invocation. Throws ConfigError on anything malformed. */
export function loadConfig(argv: readonly string[], opts: LoadOptions = {}): LoadResult {
  const args = parseArgs(argv);
  if (args.version) return { kind: 'version' };
  if (args.help) return { kind: 'help' };
  let cmdlineText = '';
  if (args.cmdlineFile !== null) {
    try {
      cmdlineText = readFileSync(args.cmdlineFile, 'utf8');
    } catch (e) {
      throw new ConfigError(`cannot read --cmdline-file ${args.cmdlineFile}: ${(e as NodeJS.ErrnoException).code ?? e}`);
    }
  } else {
    try {
      cmdlineText = readFileSync(opts.procCmdlinePath ?? '/proc/cmdline', 'utf8');
    } catch {
      cmdlineText = '';
    }
  }
  const config = buildConfig([parseCmdline(cmdlineText), fromEnv(opts.env ?? process.env), args.values]);
  return { kind: 'run', config };
}

/** A config from flags only (tests and embedding): no /proc/cmdline, no environment. */
export function configFromFlags(flags: Record<string, string | number | boolean>): AgentConfig {
  const m = new Map<string, string>();
  for (const [k, v] of Object.entries(flags)) m.set(k, typeof v === 'boolean' ? (v ? '1' : '0') : String(v));
  return buildConfig([m]);
}

export const USAGE = `usage: baremetal-agent [--cmdline-file FILE] [--KEY=VALUE ...] [--version]
Keys are kernel-command-line keys (ipa-api-url, ipa-listen-port, BOOTIF, ...), also read from /proc/cmdline
and IPA_* environment variables. Known keys: ${CONFIG_KEYS.join(' ')}`;
