/**
 * The conductor-side methods other conductors may call over the internal RPC (names as Ironic's conductor
 * RPC API), each a thin adapter onto the same service function the API calls locally, so a forwarded request
 * runs exactly what the owner would run for its own API. Parameters arrive as JSON from an authenticated peer
 * and are still checked for shape: a bad call is an InvalidParameterValue, never a crash.
 */
import { HeartbeatBodySchema } from '../../protocol/lookup.js';
import type { ConductorContext } from '../context.js';
import { InvalidParameterValue } from '../errors.js';
import { heartbeat } from '../services/agent.js';
import {
  changePowerState, getBootDevice, getSupportedBootDevices, setBootDevice, validateNode,
} from '../services/power.js';
import { doProvisionAction, type ProvisionRequest } from '../services/provision.js';
import type { NodeBootMode } from '../drivers/types.js';
import type { HttpMethod } from '../drivers/vendor.js';
import { BOOT_MODES, changeBootMode, changeSecureBoot, getIndicatorState, setIndicatorState, supportedIndicators } from '../services/boot-mode.js';
import { getConsoleState, setConsoleMode } from '../services/console.js';
import { injectNmi } from '../services/power.js';
import { nodeVendorPassthru, type PassthruResult } from '../services/vendor-passthru.js';

type Method = (c: ConductorContext, params: readonly unknown[]) => Promise<unknown>;

function str(v: unknown, what: string): string {
  if (typeof v !== 'string') throw new InvalidParameterValue(`RPC parameter ${what} must be a string`);
  return v;
}

function int(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new InvalidParameterValue(`RPC parameter ${what} must be an integer`);
  return v;
}

function obj(v: unknown, what: string): Record<string, unknown> {
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new InvalidParameterValue(`RPC parameter ${what} must be an object`);
  return v as Record<string, unknown>;
}

function bool(v: unknown, what: string): boolean {
  if (typeof v !== 'boolean') throw new InvalidParameterValue(`RPC parameter ${what} must be a boolean`);
  return v;
}

const VERBS: readonly string[] = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'];

/** A passthru result as JSON: an attachment that is a Buffer travels as base64. */
export interface WirePassthru { async: boolean; attach: boolean; value?: unknown; value_b64?: string }

function toWire(r: PassthruResult): WirePassthru {
  if (Buffer.isBuffer(r.value)) return { async: r.async, attach: r.attach, value_b64: r.value.toString('base64') };
  return { async: r.async, attach: r.attach, value: r.value };
}

/** The caller's side of toWire; a local result passes through unchanged. */
export function fromWire(r: PassthruResult | WirePassthru): PassthruResult {
  if ('value_b64' in r && typeof r.value_b64 === 'string') {
    return { async: r.async, attach: r.attach, value: Buffer.from(r.value_b64, 'base64') };
  }
  return { async: r.async, attach: r.attach, value: r.value };
}

const STRICT_HEARTBEAT = HeartbeatBodySchema.strict();

export const RPC_METHODS: Readonly<Record<string, Method>> = Object.freeze(Object.assign(Object.create(null) as
  Record<string, Method>, {
  ping: async (c: ConductorContext) => ({ hostname: c.host }),
  do_provisioning_action: async (c: ConductorContext, [id, req, minor]: readonly unknown[]) => {
    const body = obj(req, 'request');
    str(body.target, 'request.target');
    await doProvisionAction(c, str(id, 'node_id'), body as unknown as ProvisionRequest, int(minor, 'api_minor'));
    return null;
  },
  change_node_power_state: async (c: ConductorContext, [id, target, timeout]: readonly unknown[]) => {
    await changePowerState(c, str(id, 'node_id'), str(target, 'new_state'),
      timeout === null || timeout === undefined ? undefined : int(timeout, 'timeout'));
    return null;
  },
  get_boot_device: (c: ConductorContext, [id]: readonly unknown[]) => getBootDevice(c, str(id, 'node_id')),
  get_supported_boot_devices: (c: ConductorContext, [id]: readonly unknown[]) =>
    getSupportedBootDevices(c, str(id, 'node_id')),
  set_boot_device: async (c: ConductorContext, [id, device, persistent]: readonly unknown[]) => {
    if (typeof persistent !== 'boolean') throw new InvalidParameterValue('RPC parameter persistent must be a boolean');
    await setBootDevice(c, str(id, 'node_id'), str(device, 'device'), persistent);
    return null;
  },
  validate_driver_interfaces: (c: ConductorContext, [id]: readonly unknown[]) => validateNode(c, str(id, 'node_id')),
  inject_nmi: async (c: ConductorContext, [id]: readonly unknown[]) => {
    await injectNmi(c, str(id, 'node_id'));
    return null;
  },
  set_console_mode: async (c: ConductorContext, [id, enabled]: readonly unknown[]) => {
    await setConsoleMode(c, str(id, 'node_id'), bool(enabled, 'enabled'));
    return null;
  },
  get_console_information: (c: ConductorContext, [id]: readonly unknown[]) => getConsoleState(c, str(id, 'node_id')),
  set_boot_mode: async (c: ConductorContext, [id, mode]: readonly unknown[]) => {
    if (!(BOOT_MODES as readonly unknown[]).includes(mode)) throw new InvalidParameterValue('RPC parameter mode is not a boot mode');
    await changeBootMode(c, str(id, 'node_id'), mode as NodeBootMode);
    return null;
  },
  set_secure_boot: async (c: ConductorContext, [id, on]: readonly unknown[]) => {
    await changeSecureBoot(c, str(id, 'node_id'), bool(on, 'secure_boot'));
    return null;
  },
  get_supported_indicators: (c: ConductorContext, [id]: readonly unknown[]) => supportedIndicators(c, str(id, 'node_id')),
  get_indicator_state: (c: ConductorContext, [id, unique]: readonly unknown[]) =>
    getIndicatorState(c, str(id, 'node_id'), str(unique, 'indicator')),
  set_indicator_state: async (c: ConductorContext, [id, unique, state]: readonly unknown[]) => {
    await setIndicatorState(c, str(id, 'node_id'), str(unique, 'indicator'), str(state, 'state'));
    return null;
  },
  vendor_passthru: async (c: ConductorContext, [id, method, verb, args]: readonly unknown[]) => {
    if (typeof verb !== 'string' || !VERBS.includes(verb)) throw new InvalidParameterValue('RPC parameter http_method is not an HTTP verb');
    const name = method === null || method === undefined ? undefined : str(method, 'driver_method');
    return toWire(await nodeVendorPassthru(c, str(id, 'node_id'), name, verb as HttpMethod, obj(args, 'info')));
  },
  heartbeat: async (c: ConductorContext, [id, body]: readonly unknown[]) => {
    const parsed = STRICT_HEARTBEAT.safeParse(body);
    if (!parsed.success) throw new InvalidParameterValue('RPC parameter body is not a heartbeat');
    await heartbeat(c, str(id, 'node_id'), parsed.data);
    return null;
  },
}));
