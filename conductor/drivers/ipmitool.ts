/**
 * ipmitool power and management interfaces (Ironic's `ipmitool`). Every call goes through common/exec `run()`;
 * the password goes through ipmitool's environment (`-E`), never argv or logs. IPMI over UDP is
 * flaky, so each logical command is retried with backoff within a bounded time; an unreachable BMC and wrong
 * credentials end in distinct, readable errors.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { CommandError, run } from '../../common/exec.js';
import { getLogger } from '../../common/logger.js';
import { DriverOperationError, InvalidParameterValue, PowerStateFailure } from '../errors.js';
import { DriverInfoReader, bootModeOf, waitForPowerState, type BootMode } from './driver-info.js';
import type {
  BootDevice, DriverNode, ManagementInterface, PowerInterface, PowerState, PowerTarget,
} from './types.js';

const log = getLogger('ipmitool');

export const IPMI_PROPERTIES: Record<string, string> = {
  ipmi_address: 'IP address or hostname of the node\'s BMC. Required.',
  ipmi_port: 'Remote IPMI RMCP port (default 623). Optional.',
  ipmi_username: 'BMC user name; omitted means the anonymous user. Optional.',
  ipmi_password: 'BMC password. Optional.',
  ipmi_priv_level: 'ADMINISTRATOR (default), CALLBACK, OPERATOR or USER. Optional.',
  ipmi_protocol_version: '"2.0" (lanplus, default) or "1.5" (lan). Optional.',
  ipmi_cipher_suite: 'IPMI 2.0 cipher suite number (e.g. 3); unset lets ipmitool probe. Optional.',
  ipmi_disable_boot_timeout: 'Send the raw command that disables the BMC\'s 60 s boot-flag timeout before setting the boot device (default true). Optional.',
  deploy_kernel: 'Deploy ramdisk kernel: local path or URL. Required by the ipxe boot interface.',
  deploy_ramdisk: 'Deploy ramdisk initramfs: local path or URL. Required by the ipxe boot interface.',
};

export type PrivLevel = 'ADMINISTRATOR' | 'CALLBACK' | 'OPERATOR' | 'USER';

export interface IpmiInfo {
  address: string;
  port: number | undefined;
  username: string | undefined;
  password: string | undefined;
  protocolVersion: '1.5' | '2.0';
  cipherSuite: number | undefined;
  privLevel: PrivLevel;
  disableBootTimeout: boolean;
}

export function parseIpmiInfo(node: DriverNode): IpmiInfo {
  const r = new DriverInfoReader(node.driver_info);
  const address = r.str('ipmi_address', true);
  const port = r.int('ipmi_port', { min: 1, max: 65535 });
  const username = r.str('ipmi_username');
  const password = r.str('ipmi_password');
  const protocolVersion = r.oneOf('ipmi_protocol_version', ['2.0', '1.5'] as const, '2.0');
  const cipherSuite = r.int('ipmi_cipher_suite', { min: 0, max: 17 });
  const privLevel = r.oneOf('ipmi_priv_level', ['ADMINISTRATOR', 'CALLBACK', 'OPERATOR', 'USER'] as const, 'ADMINISTRATOR', true);
  const disableBootTimeout = r.bool('ipmi_disable_boot_timeout', true);
  if (address !== undefined && /\s/.test(address)) r.bad(`ipmi_address must not contain whitespace, got ${JSON.stringify(address)}`);
  if (cipherSuite !== undefined && protocolVersion === '1.5') r.bad('ipmi_cipher_suite is only valid with ipmi_protocol_version 2.0');
  r.finish('IPMI', node);
  return {
    address: address as string, port, username, password, protocolVersion, cipherSuite, privLevel, disableBootTimeout,
  };
}

export interface IpmitoolOptions {
  /** Total time one logical command may take including retries (Ironic [ipmi]command_retry_timeout, 60 s). */
  commandRetryTimeoutS: number;
  /** Minimum gap between two commands to the same BMC (Ironic [ipmi]min_command_interval). */
  minCommandIntervalS: number;
  /** ipmitool's own per-attempt retransmit interval (-N); with -R 1 an unreachable BMC fails in ~2x this. */
  attemptIntervalS: number;
  /** First backoff between attempts; doubles up to 8x. */
  retryBackoffS: number;
  /** Wait for the target state after on/off/reboot ([conductor]power_state_change_timeout, 60 s). */
  powerStateChangeTimeoutS: number;
  softPowerOffTimeoutS: number;
  pollIntervalS: number;
  defaultBootMode: BootMode;
  ipmitoolPath: string;
}

export const DEFAULT_IPMITOOL_OPTIONS: IpmitoolOptions = {
  commandRetryTimeoutS: 60,
  minCommandIntervalS: 1,
  attemptIntervalS: 2,
  retryBackoffS: 1,
  powerStateChangeTimeoutS: 60,
  softPowerOffTimeoutS: 600,
  pollIntervalS: 1,
  defaultBootMode: 'bios',
  ipmitoolPath: 'ipmitool',
};

export type IpmiFailureKind = 'auth' | 'cipher' | 'unreachable' | 'busy' | 'command';

/** Classify ipmitool's (-v) stderr: only 'unreachable' and 'busy' are worth retrying. */
export function classifyIpmiError(stderr: string): IpmiFailureKind {
  if (/RAKP 2 HMAC is invalid|unauthorized name|Activate Session command failed|invalid (user ?name|password)|Authentication type .* not supported|Password is too long/i.test(stderr)) {
    return 'auth';
  }
  if (/invalid authentication algorithm|invalid integrity algorithm|invalid confidentiality algorithm|cipher suite/i.test(stderr)) {
    return 'cipher';
  }
  if (/insufficient resources for session|Node busy|Out of space|BMC initialization in progress/i.test(stderr)) return 'busy';
  if (/Get Auth Capabilities|No response|Timeout|Unable to establish|Get Session Challenge command failed/i.test(stderr)) {
    return 'unreachable';
  }
  return 'command';
}

/** A failed logical IPMI command after its retries, with the failure kind for callers and tests. */
export class IpmiCommandFailure extends Error {
  constructor(message: string, readonly kind: IpmiFailureKind, readonly attempts: number) {
    super(message);
  }
}

/**
 * Per BMC: commands run one at a time with a minimum gap (many BMCs drop concurrent or rapid sessions). Shared by
 * every conductor in the process, as the BMC is. An idle BMC's entry is dropped once its gap has passed, so the
 * map holds only BMCs with commands in flight or just finished.
 */
const bmcQueues = new Map<string, { tail: Promise<unknown>; lastEnd: number }>();

export const ipmitoolQueuedBmcs = (): number => bmcQueues.size;

async function serialized<T>(key: string, minGapMs: number, fn: () => Promise<T>): Promise<T> {
  const q = bmcQueues.get(key) ?? { tail: Promise.resolve(), lastEnd: 0 };
  bmcQueues.set(key, q);
  const mine = q.tail.then(async () => {
    const wait = q.lastEnd + minGapMs - Date.now();
    if (wait > 0) await sleep(wait);
    try {
      return await fn();
    } finally {
      q.lastEnd = Date.now();
    }
  });
  const tail = mine.catch(() => undefined); // the queue only orders commands; the caller gets `mine` and its error
  q.tail = tail;
  void tail.then(() => {
    const idle = setTimeout(() => {
      if (q.tail === tail && bmcQueues.get(key) === q) bmcQueues.delete(key);
    }, minGapMs);
    idle.unref();
  });
  return mine;
}

function bmcName(info: IpmiInfo): string {
  return `${info.address}:${info.port ?? 623}`;
}

/** The BMC, interface and credentials part of an ipmitool command line (the password goes separately). */
export function ipmitoolSessionArgs(info: IpmiInfo): string[] {
  const args = ['-I', info.protocolVersion === '2.0' ? 'lanplus' : 'lan', '-H', info.address, '-L', info.privLevel];
  if (info.port !== undefined) args.push('-p', String(info.port));
  if (info.username !== undefined) args.push('-U', info.username);
  if (info.cipherSuite !== undefined) args.push('-C', String(info.cipherSuite));
  return args;
}

/**
 * Run one ipmitool command against the node's BMC with retries; resolves to stdout. The password reaches ipmitool
 * in its environment (-E, IPMI_PASSWORD): never on the command line others can read, and, unlike Ironic's password
 * file, nothing on disk that a conductor killed mid-command would leave behind.
 */
export async function runIpmitool(info: IpmiInfo, command: readonly string[], opts: IpmitoolOptions): Promise<string> {
  const args = ['-v', ...ipmitoolSessionArgs(info), '-R', '1', '-N', String(opts.attemptIntervalS), '-E', ...command];
  const env = { IPMI_PASSWORD: info.password ?? '' };
  const deadline = Date.now() + opts.commandRetryTimeoutS * 1000;
  let attempt = 0;
  let backoff = opts.retryBackoffS * 1000;
  for (;;) {
    attempt++;
    const remaining = Math.max(deadline - Date.now(), 1000);
    try {
      const r = await serialized(bmcName(info), opts.minCommandIntervalS * 1000, () =>
        // The per-attempt kill bound: ipmitool's own retransmits plus slack, never beyond the overall budget.
        run(opts.ipmitoolPath, args, { env, timeoutMs: Math.min(remaining, opts.attemptIntervalS * 4000 + 5000), quiet: command[1] === 'status' }));
      return r.stdout;
    } catch (e) {
      if (!(e instanceof CommandError)) throw e;
      const stderr = e.stderr.replace(/^Loading IANA PEN Registry\.\.\.\n?/m, '').trim();
      const kind = /timed out after/.test(e.message) ? 'unreachable' : classifyIpmiError(stderr);
      const retryable = kind === 'unreachable' || kind === 'busy';
      if (!retryable || Date.now() + backoff >= deadline) {
        throw new IpmiCommandFailure(describe(info, command, kind, stderr, attempt, opts), kind, attempt);
      }
      log.warn({ bmc: bmcName(info), cmd: command.join(' '), kind, attempt }, 'ipmitool failed; retrying');
      await sleep(backoff);
      backoff = Math.min(backoff * 2, opts.retryBackoffS * 8000);
    }
  }
}

function describe(info: IpmiInfo, command: readonly string[], kind: IpmiFailureKind, stderr: string, attempts: number,
  opts: IpmitoolOptions): string {
  const bmc = bmcName(info);
  const tail = stderr.split('\n').filter(Boolean).slice(-3).join(' | ');
  const what = `IPMI command "${command.join(' ')}" to BMC ${bmc}`;
  switch (kind) {
    case 'auth':
      return `${what} failed: authentication rejected by the BMC; check ipmi_username/ipmi_password and ipmi_priv_level (${tail})`;
    case 'cipher':
      return `${what} failed: the BMC does not support the requested cipher suite; check ipmi_cipher_suite (${tail})`;
    case 'unreachable':
      return `${what} failed: no response from the BMC after ${attempts} attempt(s) within ${opts.commandRetryTimeoutS} s; ` +
        `check ipmi_address/ipmi_port and that IPMI over LAN is enabled (${tail || 'timed out'})`;
    case 'busy':
      return `${what} failed: the BMC stayed busy after ${attempts} attempt(s) within ${opts.commandRetryTimeoutS} s (${tail})`;
    default:
      return `${what} failed: ${tail || 'unknown error'}`;
  }
}

export function parsePowerStatus(stdout: string): PowerState {
  const s = stdout.trim();
  if (s === 'Chassis Power is on') return 'power on';
  if (s === 'Chassis Power is off') return 'power off';
  return 'error';
}

const BOOTDEV_ARG: Record<BootDevice, string> = { pxe: 'pxe', disk: 'disk', cdrom: 'cdrom', bios: 'bios', safe: 'safe' };
/** Boot flag device selector bytes (IPMI 2.0 table 28-14, bits 5:2 shifted), for the UEFI raw command. */
const BOOTDEV_BYTE: Record<BootDevice, string> = { pxe: '0x04', disk: '0x08', cdrom: '0x14', bios: '0x18', safe: '0x0c' };

/** `chassis bootparam get 5` output → boot device and persistence. */
export function parseBootParam(stdout: string): { boot_device: BootDevice | null; persistent: boolean | null } {
  const sel = /Boot Device Selector\s*:\s*(.+)/.exec(stdout)?.[1]?.trim() ?? '';
  let dev: BootDevice | null = null;
  if (/Safe-?Mode/i.test(sel)) dev = 'safe';
  else if (/PXE/i.test(sel)) dev = 'pxe';
  else if (/Hard-?Drive/i.test(sel)) dev = 'disk';
  else if (/CD\/DVD/i.test(sel)) dev = 'cdrom';
  else if (/BIOS Setup/i.test(sel)) dev = 'bios';
  const persistent = /Options apply to all future boots/.test(stdout) ? true : /Options apply to only next boot/.test(stdout) ? false : null;
  return { boot_device: dev, persistent };
}

function failure(err: unknown, wrap: (m: string, c: unknown) => Error): Error {
  if (err instanceof IpmiCommandFailure) return wrap(err.message, err);
  return err instanceof Error ? err : new Error(String(err));
}

export class IpmitoolPower implements PowerInterface {
  readonly name = 'ipmitool';
  readonly properties = IPMI_PROPERTIES;
  readonly opts: IpmitoolOptions;

  constructor(opts: Partial<IpmitoolOptions> = {}) {
    this.opts = { ...DEFAULT_IPMITOOL_OPTIONS, ...opts };
  }

  validate(node: DriverNode): void {
    parseIpmiInfo(node);
  }

  getSupportedPowerStates(): PowerTarget[] {
    return ['power on', 'power off', 'rebooting', 'soft power off', 'soft rebooting'];
  }

  async getPowerState(node: DriverNode): Promise<PowerState> {
    const info = parseIpmiInfo(node);
    try {
      const state = parsePowerStatus(await runIpmitool(info, ['power', 'status'], this.opts));
      if (state === 'error') throw new PowerStateFailure(`IPMI power status of node ${node.uuid}: unexpected ipmitool output`);
      return state;
    } catch (e) {
      throw failure(e, (m, c) => new PowerStateFailure(`Failed to get power state of node ${node.uuid}: ${m}`, c));
    }
  }

  async setPowerState(node: DriverNode, target: PowerTarget, timeoutS?: number): Promise<void> {
    const info = parseIpmiInfo(node);
    const soft = target === 'soft power off' || target === 'soft rebooting';
    const timeoutMs = (timeoutS ?? (soft ? this.opts.softPowerOffTimeoutS : this.opts.powerStateChangeTimeoutS)) * 1000;
    try {
      switch (target) {
        case 'power on':
          return await this.change(node, info, ['power', 'on'], 'power on', timeoutMs);
        case 'power off':
          return await this.change(node, info, ['power', 'off'], 'power off', timeoutMs);
        case 'soft power off':
          return await this.change(node, info, ['power', 'soft'], 'power off', timeoutMs);
        case 'rebooting':
        case 'soft rebooting': {
          // Like Ironic: off (wait) then on (wait), never `power cycle`, so both halves are confirmed.
          if ((await this.getPowerState(node)) !== 'power off') {
            await this.change(node, info, ['power', soft ? 'soft' : 'off'], 'power off', timeoutMs);
          }
          return await this.change(node, info, ['power', 'on'], 'power on', (timeoutS ?? this.opts.powerStateChangeTimeoutS) * 1000);
        }
        default:
          throw new InvalidParameterValue(`Unsupported power target ${String(target)}`);
      }
    } catch (e) {
      throw failure(e, (m, c) => new PowerStateFailure(`Failed to change power state of node ${node.uuid} to ${target}: ${m}`, c));
    }
  }

  private async change(node: DriverNode, info: IpmiInfo, cmd: string[], want: PowerState, timeoutMs: number): Promise<void> {
    await runIpmitool(info, cmd, this.opts);
    const r = await waitForPowerState(() => this.getPowerState(node), want, timeoutMs, this.opts.pollIntervalS * 1000);
    if (!r.reached) {
      throw new PowerStateFailure(
        `Node ${node.uuid} did not reach "${want}" within ${Math.round(timeoutMs / 1000)} s after "ipmitool ${cmd.join(' ')}" (still "${r.last}")`,
      );
    }
  }
}

export class IpmitoolManagement implements ManagementInterface {
  readonly name = 'ipmitool';
  readonly properties = IPMI_PROPERTIES;
  readonly opts: IpmitoolOptions;

  constructor(opts: Partial<IpmitoolOptions> = {}) {
    this.opts = { ...DEFAULT_IPMITOOL_OPTIONS, ...opts };
  }

  validate(node: DriverNode): void {
    parseIpmiInfo(node);
  }

  getSupportedBootDevices(): BootDevice[] {
    return ['pxe', 'disk', 'cdrom', 'bios', 'safe'];
  }

  async setBootDevice(node: DriverNode, device: BootDevice, persistent: boolean): Promise<void> {
    if (!Object.hasOwn(BOOTDEV_ARG, device)) throw new InvalidParameterValue(`Invalid boot device ${String(device)} specified.`);
    const info = parseIpmiInfo(node);
    try {
      if (info.disableBootTimeout) await runIpmitool(info, ['raw', '0x00', '0x08', '0x03', '0x08'], this.opts);
      if (bootModeOf(node, this.opts.defaultBootMode) === 'uefi') {
        // `chassis bootdev` can't set the EFI bit on ipmitool 1.8.19; the raw Set System Boot Options can.
        await runIpmitool(info, ['raw', '0x00', '0x08', '0x05', persistent ? '0xe0' : '0xa0', BOOTDEV_BYTE[device], '0x00', '0x00', '0x00'], this.opts);
      } else {
        await runIpmitool(info, ['chassis', 'bootdev', BOOTDEV_ARG[device], ...(persistent ? ['options=persistent'] : [])], this.opts);
      }
    } catch (e) {
      throw failure(e, (m, c) => new DriverOperationError(`Failed to set boot device of node ${node.uuid} to ${device}: ${m}`, c));
    }
  }

  async getBootDevice(node: DriverNode): Promise<{ boot_device: BootDevice | null; persistent: boolean | null }> {
    const info = parseIpmiInfo(node);
    try {
      return parseBootParam(await runIpmitool(info, ['chassis', 'bootparam', 'get', '5'], this.opts));
    } catch (e) {
      throw failure(e, (m, c) => new DriverOperationError(`Failed to get boot device of node ${node.uuid}: ${m}`, c));
    }
  }

  /** As Ironic: `chassis power diag` (Chassis Control 05h, pulse a diagnostic interrupt). */
  async injectNmi(node: DriverNode): Promise<void> {
    const info = parseIpmiInfo(node);
    try {
      await runIpmitool(info, ['chassis', 'power', 'diag'], this.opts);
    } catch (e) {
      throw failure(e, (m, c) => new DriverOperationError(`Failed to inject NMI to node ${node.uuid}: ${m}`, c));
    }
  }
}
