/**
 * Redfish power and management interfaces (Ironic's `redfish`, which uses sushy): PowerState from the
 * ComputerSystem, ComputerSystem.Reset with a ResetType the system advertises, and the Boot override properties
 * via PATCH.
 */
import { statSync } from 'node:fs';
import { DriverOperationError, InvalidParameterValue, PowerStateFailure, UnsupportedDriverExtension } from '../errors.js';
import { DriverInfoReader, bootModeOf, parseBool, waitForPowerState, type BootMode } from './driver-info.js';
import {
  DEFAULT_REDFISH_CLIENT_OPTIONS, RedfishClientPool, RedfishError, type RedfishAuthType, type RedfishClient,
  type RedfishClientOptions, type RedfishConnInfo,
} from './redfish-client.js';
import type {
  BootDevice, DriverNode, IndicatorState, ManagementInterface, NodeBootMode, PowerInterface, PowerState, PowerTarget,
  SupportedIndicators,
} from './types.js';

export const REDFISH_PROPERTIES: Record<string, string> = {
  redfish_address: 'The URL of the Redfish service, e.g. https://bmc.example:443 (https:// is assumed without a scheme). Required.',
  redfish_system_id: 'The ComputerSystem\'s path (/redfish/v1/Systems/1) or Id; optional when the BMC has exactly one system.',
  redfish_username: 'User name for the BMC. Optional.',
  redfish_password: 'Password for the BMC. Optional.',
  redfish_verify_ca: 'true (default: verify with system CAs), false (no verification) or the path of a CA bundle file/directory. Optional.',
  redfish_auth_type: 'auto (default: session if offered, else basic), basic or session. Optional.',
  deploy_kernel: 'Deploy ramdisk kernel: local path or URL. Required by the ipxe boot interface.',
  deploy_ramdisk: 'Deploy ramdisk initramfs: local path or URL. Required by the ipxe boot interface.',
};

export interface RedfishInfo extends RedfishConnInfo {
  systemId: string | undefined;
}

/**
 * A CA bundle must be a regular file (after symlinks): a directory or device (/dev/zero, a FIFO) would be read
 * without end or expose what the conductor can see; absolute paths only.
 */
function isRegularFile(path: string): boolean {
  if (!path.startsWith('/') || path.includes('\0')) return false;
  try { return statSync(path).isFile(); } catch { return false; }
}

export function parseRedfishInfo(node: DriverNode): RedfishInfo {
  const r = new DriverInfoReader(node.driver_info);
  let address = r.str('redfish_address', true);
  if (address !== undefined) {
    if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(address)) address = `https://${address}`;
    try {
      const u = new URL(address);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') r.bad(`redfish_address must be an http(s) URL, got ${JSON.stringify(address)}`);
      address = u.origin;
    } catch {
      r.bad(`redfish_address is not a valid URL: ${JSON.stringify(address)}`);
    }
  }
  const systemId = r.str('redfish_system_id');
  const username = r.str('redfish_username');
  const password = r.str('redfish_password');
  const authType = r.oneOf<RedfishAuthType>('redfish_auth_type', ['auto', 'basic', 'session'], 'auto');
  let verifyCa: boolean | string = true;
  const rawVerify = node.driver_info.redfish_verify_ca;
  if (rawVerify !== undefined && rawVerify !== null && rawVerify !== '') {
    const b = parseBool(rawVerify);
    if (b !== undefined) verifyCa = b;
    else if (typeof rawVerify === 'string' && isRegularFile(rawVerify)) verifyCa = rawVerify;
    else r.bad(`redfish_verify_ca must be a boolean or the path of an existing CA bundle, got ${JSON.stringify(rawVerify)}`);
  }
  r.finish('Redfish', node);
  return { address: address as string, systemId, username, password, verifyCa, authType };
}

export interface RedfishOptions extends RedfishClientOptions {
  powerStateChangeTimeoutS: number;
  softPowerOffTimeoutS: number;
  pollIntervalS: number;
  defaultBootMode: BootMode;
}

export const DEFAULT_REDFISH_OPTIONS: RedfishOptions = {
  ...DEFAULT_REDFISH_CLIENT_OPTIONS, powerStateChangeTimeoutS: 60, softPowerOffTimeoutS: 600, pollIntervalS: 1, defaultBootMode: 'bios',
};

/** Resolves the node's ComputerSystem path: the configured one, or the only member of /redfish/v1/Systems. */
async function systemPath(client: RedfishClient, info: RedfishInfo): Promise<string> {
  if (info.systemId) return info.systemId.startsWith('/') ? info.systemId : `/redfish/v1/Systems/${encodeURIComponent(info.systemId)}`;
  const coll = await client.call('GET', '/redfish/v1/Systems');
  const members = Array.isArray(coll.Members) ? (coll.Members as Array<Record<string, unknown>>) : [];
  const ids = members.map((m) => m['@odata.id']).filter((x): x is string => typeof x === 'string');
  if (ids.length === 1) return ids[0] as string;
  throw new RedfishError(ids.length === 0
    ? `the BMC at ${info.address} lists no ComputerSystem`
    : `redfish_system_id is required: the BMC at ${info.address} has ${ids.length} systems (${ids.join(', ')})`, 'protocol');
}

export interface Ctx { client: RedfishClient; path: string; system: Record<string, unknown> }

export function mapPowerState(s: unknown): PowerState {
  if (s === 'On' || s === 'PoweringOn') return 'power on';
  if (s === 'Off' || s === 'PoweringOff') return 'power off';
  return 'error';
}

/** ResetType values the system allows: the inline AllowableValues, else its @Redfish.ActionInfo, else all. */
async function allowedResetTypes(ctx: Ctx): Promise<{ target: string; allowed: string[] | undefined }> {
  const actions = ctx.system.Actions as Record<string, Record<string, unknown> | undefined> | undefined;
  const reset = actions?.['#ComputerSystem.Reset'];
  const target = typeof reset?.target === 'string' ? reset.target : `${ctx.path}/Actions/ComputerSystem.Reset`;
  const inline = reset?.['ResetType@Redfish.AllowableValues'];
  if (Array.isArray(inline)) return { target, allowed: inline.filter((x): x is string => typeof x === 'string') };
  const infoUri = reset?.['@Redfish.ActionInfo'];
  if (typeof infoUri === 'string') {
    const ai = await ctx.client.call('GET', infoUri);
    const params = Array.isArray(ai.Parameters) ? (ai.Parameters as Array<Record<string, unknown>>) : [];
    const vals = params.find((p) => p.Name === 'ResetType')?.AllowableValues;
    if (Array.isArray(vals)) return { target, allowed: vals.filter((x): x is string => typeof x === 'string') };
  }
  return { target, allowed: undefined };
}

export abstract class RedfishBase {
  readonly opts: RedfishOptions;
  readonly properties = REDFISH_PROPERTIES;

  /** `pool`: the conductor's shared sessions (a private pool when constructed alone, as in unit tests). */
  constructor(opts: Partial<RedfishOptions> = {}, private readonly pool: RedfishClientPool = new RedfishClientPool()) {
    this.opts = { ...DEFAULT_REDFISH_OPTIONS, ...opts };
  }

  validate(node: DriverNode): void {
    parseRedfishInfo(node);
  }

  protected async ctx(node: DriverNode): Promise<Ctx> {
    const info = parseRedfishInfo(node);
    const client = this.pool.clientFor(info, this.opts);
    const path = await systemPath(client, info);
    return { client, path, system: await client.call('GET', path) };
  }
}

export class RedfishPower extends RedfishBase implements PowerInterface {
  readonly name = 'redfish';

  getSupportedPowerStates(): PowerTarget[] {
    return ['power on', 'power off', 'rebooting', 'soft power off', 'soft rebooting'];
  }

  async getPowerState(node: DriverNode): Promise<PowerState> {
    try {
      const { system } = await this.ctx(node);
      const st = mapPowerState(system.PowerState);
      if (st === 'error') throw new PowerStateFailure(`Redfish system of node ${node.uuid} reports unknown PowerState ${JSON.stringify(system.PowerState)}`);
      return st;
    } catch (e) {
      throw wrap(e, (m, c) => new PowerStateFailure(`Failed to get power state of node ${node.uuid}: ${m}`, c));
    }
  }

  async setPowerState(node: DriverNode, target: PowerTarget, timeoutS?: number): Promise<void> {
    const soft = target === 'soft power off' || target === 'soft rebooting';
    const timeoutMs = (timeoutS ?? (soft ? this.opts.softPowerOffTimeoutS : this.opts.powerStateChangeTimeoutS)) * 1000;
    const onTimeoutMs = (timeoutS ?? this.opts.powerStateChangeTimeoutS) * 1000;
    try {
      const ctx = await this.ctx(node);
      const current = mapPowerState(ctx.system.PowerState);
      switch (target) {
        case 'power on':
          if (current === 'power on') return;
          return await this.reset(node, ctx, ['On', 'ForceOn'], 'power on', timeoutMs);
        case 'power off':
          if (current === 'power off') return;
          return await this.reset(node, ctx, ['ForceOff'], 'power off', timeoutMs);
        case 'soft power off':
          if (current === 'power off') return;
          return await this.reset(node, ctx, ['GracefulShutdown'], 'power off', timeoutMs);
        case 'rebooting':
          // As Ironic 21.4: a confirmed ForceOff, then On, rather than trusting ForceRestart semantics per vendor.
          if (current !== 'power off') await this.reset(node, ctx, ['ForceOff'], 'power off', timeoutMs);
          return await this.reset(node, ctx, ['On', 'ForceOn'], 'power on', onTimeoutMs);
        case 'soft rebooting': {
          const { allowed } = await allowedResetTypes(ctx);
          if (current === 'power on' && (!allowed || allowed.includes('GracefulRestart'))) {
            return await this.reset(node, ctx, ['GracefulRestart'], 'power on', timeoutMs);
          }
          if (current !== 'power off') await this.reset(node, ctx, ['GracefulShutdown'], 'power off', timeoutMs);
          return await this.reset(node, ctx, ['On', 'ForceOn'], 'power on', onTimeoutMs);
        }
        default:
          throw new InvalidParameterValue(`Unsupported power target ${String(target)}`);
      }
    } catch (e) {
      throw wrap(e, (m, c) => new PowerStateFailure(`Failed to change power state of node ${node.uuid} to ${target}: ${m}`, c));
    }
  }

  private async reset(node: DriverNode, ctx: Ctx, prefer: string[], want: PowerState, timeoutMs: number): Promise<void> {
    const { target, allowed } = await allowedResetTypes(ctx);
    const type = allowed ? prefer.find((p) => allowed.includes(p)) : prefer[0];
    if (!type) {
      throw new PowerStateFailure(`the system ${ctx.path} does not allow ResetType ${prefer.join(' or ')} (allowed: ${allowed?.join(', ')})`);
    }
    await ctx.client.call('POST', target, { ResetType: type });
    const r = await waitForPowerState(async () => mapPowerState((await ctx.client.call('GET', ctx.path)).PowerState), want, timeoutMs,
      this.opts.pollIntervalS * 1000);
    if (!r.reached) {
      throw new PowerStateFailure(`Node ${node.uuid} did not reach "${want}" within ${Math.round(timeoutMs / 1000)} s after ResetType ${type} (still "${r.last}")`);
    }
  }
}

const TO_REDFISH: Partial<Record<BootDevice, string>> = { pxe: 'Pxe', disk: 'Hdd', cdrom: 'Cd', bios: 'BiosSetup' };
const FROM_REDFISH: Record<string, BootDevice> = { Pxe: 'pxe', Hdd: 'disk', Cd: 'cdrom', BiosSetup: 'bios' };

export class RedfishManagement extends RedfishBase implements ManagementInterface {
  readonly name = 'redfish';

  getSupportedBootDevices(): BootDevice[] {
    return ['pxe', 'disk', 'cdrom', 'bios'];
  }

  async setBootDevice(node: DriverNode, device: BootDevice, persistent: boolean): Promise<void> {
    const target = TO_REDFISH[device];
    if (!target) throw new InvalidParameterValue(`Invalid boot device ${String(device)} specified; redfish supports ${this.getSupportedBootDevices().join(', ')}.`);
    try {
      const ctx = await this.ctx(node);
      const boot = (ctx.system.Boot ?? {}) as Record<string, unknown>;
      const allowedTargets = boot['BootSourceOverrideTarget@Redfish.AllowableValues'];
      if (Array.isArray(allowedTargets) && !allowedTargets.includes(target)) {
        throw new DriverOperationError(`the system ${ctx.path} does not allow BootSourceOverrideTarget ${target} (allowed: ${allowedTargets.join(', ')})`);
      }
      const enabled = persistent ? 'Continuous' : 'Once';
      const patch: Record<string, string> = { BootSourceOverrideTarget: target };
      // Like Ironic, Enabled is only sent when it changes; some BMCs reject re-setting it.
      if (boot.BootSourceOverrideEnabled !== enabled) patch.BootSourceOverrideEnabled = enabled;
      const mode = bootModeOf(node, this.opts.defaultBootMode) === 'uefi' ? 'UEFI' : 'Legacy';
      if ('BootSourceOverrideMode' in boot && boot.BootSourceOverrideMode !== mode) patch.BootSourceOverrideMode = mode;
      await ctx.client.call('PATCH', ctx.path, { Boot: patch });
    } catch (e) {
      throw wrap(e, (m, c) => new DriverOperationError(`Failed to set boot device of node ${node.uuid} to ${device}: ${m}`, c));
    }
  }

  async getBootDevice(node: DriverNode): Promise<{ boot_device: BootDevice | null; persistent: boolean | null }> {
    try {
      const { system } = await this.ctx(node);
      const boot = (system.Boot ?? {}) as Record<string, unknown>;
      const enabled = boot.BootSourceOverrideEnabled;
      const dev = typeof boot.BootSourceOverrideTarget === 'string' ? FROM_REDFISH[boot.BootSourceOverrideTarget] ?? null : null;
      if (enabled === 'Disabled') return { boot_device: null, persistent: null };
      return { boot_device: dev, persistent: enabled === 'Continuous' };
    } catch (e) {
      throw wrap(e, (m, c) => new DriverOperationError(`Failed to get boot device of node ${node.uuid}: ${m}`, c));
    }
  }

  /** BootSourceOverrideMode: UEFI is `uefi`, Legacy `bios` (Ironic's redfish BOOT_MODE_MAP). */
  async getBootMode(node: DriverNode): Promise<NodeBootMode | null> {
    try {
      const mode = ((await this.ctx(node)).system.Boot as Record<string, unknown> | undefined)?.BootSourceOverrideMode;
      return mode === 'UEFI' ? 'uefi' : mode === 'Legacy' ? 'bios' : null;
    } catch (e) {
      throw wrap(e, (m, c) => new DriverOperationError(`Failed to get boot mode of node ${node.uuid}: ${m}`, c));
    }
  }

  async setBootMode(node: DriverNode, mode: NodeBootMode): Promise<void> {
    const target = mode === 'uefi' ? 'UEFI' : 'Legacy';
    try {
      const ctx = await this.ctx(node);
      const boot = (ctx.system.Boot ?? {}) as Record<string, unknown>;
      const allowed = boot['BootSourceOverrideMode@Redfish.AllowableValues'];
      if (Array.isArray(allowed) && !allowed.includes(target)) {
        throw new DriverOperationError(`the system ${ctx.path} does not allow BootSourceOverrideMode ${target}`);
      }
      await ctx.client.call('PATCH', ctx.path, { Boot: { BootSourceOverrideMode: target } });
    } catch (e) {
      throw wrap(e, (m, c) => new DriverOperationError(`Setting boot mode to ${mode} failed for node ${node.uuid}. Error: ${m}`, c));
    }
  }

  private async secureBootPath(node: DriverNode): Promise<{ ctx: Ctx; path: string }> {
    const ctx = await this.ctx(node);
    const link = (ctx.system.SecureBoot as Record<string, unknown> | undefined)?.['@odata.id'];
    if (typeof link !== 'string') {
      throw new UnsupportedDriverExtension(`Secure boot is not supported by the Redfish system of node ${node.uuid}`);
    }
    return { ctx, path: link };
  }

  async getSecureBootState(node: DriverNode): Promise<boolean | null> {
    try {
      const { ctx, path } = await this.secureBootPath(node);
      const sb = await ctx.client.call('GET', path);
      return typeof sb.SecureBootEnable === 'boolean' ? sb.SecureBootEnable : null;
    } catch (e) {
      throw wrap(e, (m, c) => new DriverOperationError(`Failed to get secure boot state of node ${node.uuid}: ${m}`, c));
    }
  }

  async setSecureBootState(node: DriverNode, on: boolean): Promise<void> {
    try {
      const { ctx, path } = await this.secureBootPath(node);
      await ctx.client.call('PATCH', path, { SecureBootEnable: on });
      const now = (await ctx.client.call('GET', path)).SecureBootEnable;
      if (now !== on) throw new DriverOperationError(`SecureBootEnable is still ${String(now)} after the change`);
    } catch (e) {
      throw wrap(e, (m, c) => new DriverOperationError(`Setting secure boot to ${on} failed for node ${node.uuid}. Error: ${m}`, c));
    }
  }

  /** The system's IndicatorLED only (Ironic also offers chassis and drive LEDs). */
  async getSupportedIndicators(node: DriverNode): Promise<SupportedIndicators> {
    const { system } = await this.ctx(node);
    if (typeof system.IndicatorLED !== 'string') return {};
    return { system: { [system.Id as string ?? 'system']: { readonly: false, states: ['BLINKING', 'OFF', 'ON'] } } };
  }

  async getIndicatorState(node: DriverNode, component: string, indicator: string): Promise<IndicatorState> {
    const { system } = await this.ctx(node);
    if (component !== 'system' || indicator !== system.Id || typeof system.IndicatorLED !== 'string') {
      throw new InvalidParameterValue(`Invalid indicator ${indicator}@${component} specified.`);
    }
    return ({ Lit: 'ON', Blinking: 'BLINKING', Off: 'OFF' } as Record<string, IndicatorState>)[system.IndicatorLED] ?? 'UNKNOWN';
  }

  async setIndicatorState(node: DriverNode, component: string, indicator: string, state: IndicatorState): Promise<void> {
    const ctx = await this.ctx(node);
    if (component !== 'system' || indicator !== ctx.system.Id) {
      throw new InvalidParameterValue(`Invalid indicator ${indicator}@${component} specified.`);
    }
    const led = ({ ON: 'Lit', BLINKING: 'Blinking', OFF: 'Off' } as Record<string, string>)[state];
    if (!led) throw new InvalidParameterValue(`Invalid indicator state ${state} specified.`);
    try {
      await ctx.client.call('PATCH', ctx.path, { IndicatorLED: led });
    } catch (e) {
      throw wrap(e, (m, c) => new DriverOperationError(`Setting indicator ${indicator}@${component} of node ${node.uuid} failed: ${m}`, c));
    }
  }

  /** As Ironic (sushy RESET_NMI): ComputerSystem.Reset with ResetType Nmi, if the system allows it. */
  async injectNmi(node: DriverNode): Promise<void> {
    try {
      const ctx = await this.ctx(node);
      const { target, allowed } = await allowedResetTypes(ctx);
      if (allowed && !allowed.includes('Nmi')) {
        throw new DriverOperationError(`the system ${ctx.path} does not allow ResetType Nmi (allowed: ${allowed.join(', ')})`);
      }
      await ctx.client.call('POST', target, { ResetType: 'Nmi' });
    } catch (e) {
      throw wrap(e, (m, c) => new DriverOperationError(`Failed to inject NMI to node ${node.uuid}: ${m}`, c));
    }
  }
}

export function wrap(err: unknown, make: (m: string, c: unknown) => Error): Error {
  if (err instanceof RedfishError) return make(err.message, err);
  return err instanceof Error ? err : new Error(String(err));
}
