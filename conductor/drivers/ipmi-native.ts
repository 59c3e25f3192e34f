/**
 * `ipmi-native` power and management for the `ipmi` hardware type: the same driver_info keys as `ipmitool`
 * (parseIpmiInfo), spoken in-process over RMCP+ (conductor/ipmi-native/) instead of forking ipmitool per call.
 * Sessions are pooled per BMC, so a power-state sync of a fleet costs one request per node. IPMI 1.5 is not
 * spoken natively (use ipmitool for it); cipher suites 3 and 17, and when unset 17 with a fallback to 3.
 */
import { DriverOperationError, InvalidParameterValue, PowerStateFailure } from '../errors.js';
import { getBootFlags, getChassisStatus, chassisControl, setBootFlags, type BootSelector, type ChassisAction } from '../ipmi-native/commands.js';
import { IpmiError } from '../ipmi-native/errors.js';
import type { IpmiSessionPool } from '../ipmi-native/pool.js';
import type { IpmiSession } from '../ipmi-native/session.js';
import { bootModeOf, waitForPowerState, type BootMode } from './driver-info.js';
import { IPMI_PROPERTIES, parseIpmiInfo, type IpmiInfo } from './ipmitool.js';
import type { BootDevice, DriverNode, ManagementInterface, PowerInterface, PowerState, PowerTarget } from './types.js';

export interface IpmiNativeOptions {
  powerStateChangeTimeoutS: number;
  softPowerOffTimeoutS: number;
  pollIntervalS: number;
  defaultBootMode: BootMode;
}

export const DEFAULT_IPMI_NATIVE_OPTIONS: IpmiNativeOptions = {
  powerStateChangeTimeoutS: 60, softPowerOffTimeoutS: 600, pollIntervalS: 1, defaultBootMode: 'bios',
};

export const IPMI_NATIVE_PROPERTIES: Record<string, string> = {
  ...IPMI_PROPERTIES,
  ipmi_protocol_version: '"2.0" only with ipmi-native (RMCP+). Optional.',
  ipmi_cipher_suite: '3 (HMAC-SHA1, AES-128) or 17 (HMAC-SHA256, AES-128); unset tries 17, then 3. Optional.',
};

function parseNativeInfo(node: DriverNode): IpmiInfo {
  const info = parseIpmiInfo(node);
  const bad: string[] = [];
  if (info.protocolVersion !== '2.0') bad.push('ipmi_protocol_version must be "2.0" with ipmi-native (IPMI 1.5 needs ipmitool)');
  if (info.cipherSuite !== undefined && info.cipherSuite !== 3 && info.cipherSuite !== 17) {
    bad.push(`ipmi_cipher_suite must be 3 or 17 with ipmi-native, got ${info.cipherSuite}`);
  }
  if (Buffer.byteLength(info.password ?? '', 'utf8') > 20) bad.push('ipmi_password must be at most 20 bytes (IPMI 2.0)');
  if (Buffer.byteLength(info.username ?? '', 'utf8') > 16) bad.push('ipmi_username must be at most 16 bytes (IPMI 2.0)');
  if (bad.length > 0) throw new InvalidParameterValue(`Invalid IPMI properties in node ${node.uuid} driver_info: ${bad.join('; ')}.`);
  return info;
}

class IpmiNativeBase {
  readonly name = 'ipmi-native';
  readonly properties = IPMI_NATIVE_PROPERTIES;
  readonly opts: IpmiNativeOptions;

  constructor(protected readonly pool: IpmiSessionPool, opts: Partial<IpmiNativeOptions> = {}) {
    this.opts = { ...DEFAULT_IPMI_NATIVE_OPTIONS, ...opts };
  }

  validate(node: DriverNode): void {
    parseNativeInfo(node);
  }

  protected run<T>(info: IpmiInfo, fn: (s: IpmiSession) => Promise<T>): Promise<T> {
    return this.pool.with({
      host: info.address, port: info.port ?? 623, username: info.username ?? '', password: info.password ?? '',
      cipherSuite: info.cipherSuite, privLevel: info.privLevel,
    }, fn);
  }
}

function wrap(e: unknown, make: (m: string, cause: unknown) => Error): Error {
  if (e instanceof IpmiError) return make(e.message, e);
  return e instanceof Error ? e : new Error(String(e));
}

export class IpmiNativePower extends IpmiNativeBase implements PowerInterface {
  getSupportedPowerStates(): PowerTarget[] {
    return ['power on', 'power off', 'rebooting', 'soft power off', 'soft rebooting'];
  }

  async getPowerState(node: DriverNode): Promise<PowerState> {
    const info = parseNativeInfo(node);
    try {
      return (await this.read(info)) ? 'power on' : 'power off';
    } catch (e) {
      throw wrap(e, (m, c) => new PowerStateFailure(`Failed to get power state of node ${node.uuid}: ${m}`, c));
    }
  }

  private async read(info: IpmiInfo): Promise<boolean> {
    return (await this.run(info, (s) => getChassisStatus(s))).powerOn;
  }

  async setPowerState(node: DriverNode, target: PowerTarget, timeoutS?: number): Promise<void> {
    const info = parseNativeInfo(node);
    const soft = target === 'soft power off' || target === 'soft rebooting';
    const timeoutMs = (timeoutS ?? (soft ? this.opts.softPowerOffTimeoutS : this.opts.powerStateChangeTimeoutS)) * 1000;
    try {
      switch (target) {
        case 'power on':
          return await this.change(node, info, 'on', 'power on', timeoutMs);
        case 'power off':
          return await this.change(node, info, 'off', 'power off', timeoutMs);
        case 'soft power off':
          return await this.change(node, info, 'soft', 'power off', timeoutMs);
        case 'rebooting':
        case 'soft rebooting':
          // Like the ipmitool interface: off (confirmed) then on (confirmed), never a blind power cycle.
          if (await this.read(info)) await this.change(node, info, soft ? 'soft' : 'off', 'power off', timeoutMs);
          return await this.change(node, info, 'on', 'power on', (timeoutS ?? this.opts.powerStateChangeTimeoutS) * 1000);
        default:
          throw new InvalidParameterValue(`Unsupported power target ${String(target)}`);
      }
    } catch (e) {
      throw wrap(e, (m, c) => new PowerStateFailure(`Failed to change power state of node ${node.uuid} to ${target}: ${m}`, c));
    }
  }

  private async change(node: DriverNode, info: IpmiInfo, action: ChassisAction, want: PowerState, timeoutMs: number): Promise<void> {
    await this.run(info, (s) => chassisControl(s, action));
    const r = await waitForPowerState(async () => ((await this.read(info)) ? 'power on' : 'power off') as PowerState, want,
      timeoutMs, this.opts.pollIntervalS * 1000);
    if (!r.reached) {
      throw new PowerStateFailure(`Node ${node.uuid} did not reach "${want}" within ${Math.round(timeoutMs / 1000)} s after ` +
        `IPMI chassis control "${action}" (still "${r.last}")`);
    }
  }
}

const DEVICE_TO_SELECTOR: Record<BootDevice, BootSelector> = { pxe: 'pxe', disk: 'disk', cdrom: 'cdrom', bios: 'bios', safe: 'safe' };

export class IpmiNativeManagement extends IpmiNativeBase implements ManagementInterface {
  getSupportedBootDevices(): BootDevice[] {
    return ['pxe', 'disk', 'cdrom', 'bios', 'safe'];
  }

  async setBootDevice(node: DriverNode, device: BootDevice, persistent: boolean): Promise<void> {
    if (!Object.hasOwn(DEVICE_TO_SELECTOR, device)) throw new InvalidParameterValue(`Invalid boot device ${String(device)} specified.`);
    const info = parseNativeInfo(node);
    const efi = bootModeOf(node, this.opts.defaultBootMode) === 'uefi';
    try {
      await this.run(info, (s) => setBootFlags(s, { device: DEVICE_TO_SELECTOR[device], persistent, efi, disableTimeout: info.disableBootTimeout }));
    } catch (e) {
      throw wrap(e, (m, c) => new DriverOperationError(`Failed to set boot device of node ${node.uuid} to ${device}: ${m}`, c));
    }
  }

  async getBootDevice(node: DriverNode): Promise<{ boot_device: BootDevice | null; persistent: boolean | null }> {
    const info = parseNativeInfo(node);
    try {
      const f = await this.run(info, (s) => getBootFlags(s));
      const dev = f.device && (Object.keys(DEVICE_TO_SELECTOR) as BootDevice[]).find((d) => DEVICE_TO_SELECTOR[d] === f.device);
      return { boot_device: dev ?? null, persistent: f.persistent };
    } catch (e) {
      throw wrap(e, (m, c) => new DriverOperationError(`Failed to get boot device of node ${node.uuid}: ${m}`, c));
    }
  }
}
