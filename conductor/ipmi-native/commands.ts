/**
 * The IPMI commands the drivers need, over an IpmiSession: Get Device ID, Get Chassis Status, Chassis Control,
 * Set/Get System Boot Options (boot flags, parameter 5) and raw requests. Command layouts: IPMI 2.0 §20.1
 * (Get Device ID), §28.2–28.3 (chassis status/control), §28.12–28.13 and table 28-14 (boot options).
 */
import { IpmiError } from './errors.js';
import { describeCompletionCode, type IpmiReply, type IpmiSession } from './session.js';

export const NETFN_CHASSIS = 0x00;
export const NETFN_APP = 0x06;

async function ok(s: IpmiSession, what: string, netFn: number, cmd: number, data: readonly number[] = [], minLen = 0): Promise<Buffer> {
  const r = await s.call(netFn, cmd, data);
  if (r.completionCode !== 0) {
    throw new IpmiError(`IPMI ${what} failed on BMC ${s.target.host}:${s.target.port}: ${describeCompletionCode(r.completionCode)}`,
      'command', r.completionCode);
  }
  if (r.data.length < minLen) {
    throw new IpmiError(`IPMI ${what} on BMC ${s.target.host}:${s.target.port}: short response (${r.data.length} of ${minLen} bytes)`, 'command');
  }
  return r.data;
}

export interface DeviceId {
  deviceId: number;
  deviceRevision: number;
  firmwareRevision: string;
  ipmiVersion: string;
  manufacturerId: number;
  productId: number;
}

export async function getDeviceId(s: IpmiSession): Promise<DeviceId> {
  const d = await ok(s, 'Get Device ID', NETFN_APP, 0x01, [], 11);
  const minor = (d[3] as number).toString(16).padStart(2, '0'); // BCD
  const v = d[4] as number;
  return {
    deviceId: d[0] as number, deviceRevision: (d[1] as number) & 0x0f, firmwareRevision: `${(d[2] as number) & 0x7f}.${minor}`,
    ipmiVersion: `${v & 0x0f}.${v >> 4}`, manufacturerId: d.readUIntLE(6, 3), productId: d.readUInt16LE(9),
  };
}

export interface ChassisStatus {
  powerOn: boolean;
  powerOverload: boolean;
  interlock: boolean;
  powerFault: boolean;
  powerControlFault: boolean;
  /** 0 = stay off, 1 = restore previous, 2 = always on, 3 = unknown. */
  powerRestorePolicy: number;
  lastPowerEvent: number;
  miscState: number;
}

export async function getChassisStatus(s: IpmiSession): Promise<ChassisStatus> {
  const d = await ok(s, 'Get Chassis Status', NETFN_CHASSIS, 0x01, [], 3);
  const p = d[0] as number;
  return {
    powerOn: (p & 0x01) !== 0, powerOverload: (p & 0x02) !== 0, interlock: (p & 0x04) !== 0, powerFault: (p & 0x08) !== 0,
    powerControlFault: (p & 0x10) !== 0, powerRestorePolicy: (p >> 5) & 0x03, lastPowerEvent: d[1] as number, miscState: d[2] as number,
  };
}

export const CHASSIS_CONTROL = { off: 0x00, on: 0x01, cycle: 0x02, reset: 0x03, diag: 0x04, soft: 0x05 } as const;
export type ChassisAction = keyof typeof CHASSIS_CONTROL;

export async function chassisControl(s: IpmiSession, action: ChassisAction): Promise<void> {
  if (!Object.hasOwn(CHASSIS_CONTROL, action)) throw new RangeError(`unknown chassis control ${String(action)}`);
  await ok(s, `Chassis Control (${action})`, NETFN_CHASSIS, 0x02, [CHASSIS_CONTROL[action]]);
}

/** Boot device selector values (table 28-14, boot flags data 2 bits 5:2, already shifted). */
export const BOOT_DEVICE_SELECTOR = { none: 0x00, pxe: 0x04, disk: 0x08, safe: 0x0c, diag: 0x10, cdrom: 0x14, bios: 0x18, floppy: 0x3c } as const;
export type BootSelector = keyof typeof BOOT_DEVICE_SELECTOR;

export interface BootFlags {
  device: BootSelector | null;
  persistent: boolean;
  efi: boolean;
  /** The BMC's "boot flags valid" bit. */
  valid: boolean;
}

/**
 * Set the boot flags (parameter 5); `disableTimeout` first sets parameter 3 so the BMC does not clear the flags
 * when no power command follows within 60 s (what Ironic's ipmi_disable_boot_timeout does).
 */
export async function setBootFlags(s: IpmiSession, f: { device: BootSelector; persistent: boolean; efi: boolean; disableTimeout?: boolean }): Promise<void> {
  if (!Object.hasOwn(BOOT_DEVICE_SELECTOR, f.device)) throw new RangeError(`unknown boot device ${String(f.device)}`);
  if (f.disableTimeout) await ok(s, 'Set System Boot Options (boot flag valid bit clearing)', NETFN_CHASSIS, 0x08, [0x03, 0x08]);
  const byte1 = 0x80 | (f.persistent ? 0x40 : 0) | (f.efi ? 0x20 : 0);
  await ok(s, 'Set System Boot Options (boot flags)', NETFN_CHASSIS, 0x08, [0x05, byte1, BOOT_DEVICE_SELECTOR[f.device], 0x00, 0x00, 0x00]);
}

export async function getBootFlags(s: IpmiSession): Promise<BootFlags> {
  const d = await ok(s, 'Get System Boot Options (boot flags)', NETFN_CHASSIS, 0x09, [0x05, 0x00, 0x00], 4);
  if (((d[1] as number) & 0x7f) !== 0x05) throw new IpmiError(`IPMI Get System Boot Options answered parameter ${(d[1] as number) & 0x7f}, not 5`, 'command');
  const b1 = d[2] as number;
  const sel = (d[3] as number) & 0x3c;
  const device = (Object.entries(BOOT_DEVICE_SELECTOR).find(([, v]) => v === sel)?.[0] ?? null) as BootSelector | null;
  return { device, persistent: (b1 & 0x40) !== 0, efi: (b1 & 0x20) !== 0, valid: (b1 & 0x80) !== 0 };
}

/** Any request; the completion code is returned, not thrown. */
export function raw(s: IpmiSession, netFn: number, cmd: number, data: readonly number[] = []): Promise<IpmiReply> {
  if (!Number.isInteger(netFn) || netFn < 0 || netFn > 0x3f || !Number.isInteger(cmd) || cmd < 0 || cmd > 0xff) {
    throw new RangeError('raw IPMI: netFn must be 0..0x3f and cmd 0..0xff');
  }
  if (data.some((b) => !Number.isInteger(b) || b < 0 || b > 0xff)) throw new RangeError('raw IPMI: data bytes must be 0..0xff');
  return s.call(netFn, cmd, data);
}
