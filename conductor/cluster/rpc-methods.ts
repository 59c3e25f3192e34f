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
  heartbeat: async (c: ConductorContext, [id, body]: readonly unknown[]) => {
    const parsed = STRICT_HEARTBEAT.safeParse(body);
    if (!parsed.success) throw new InvalidParameterValue('RPC parameter body is not a heartbeat');
    await heartbeat(c, str(id, 'node_id'), parsed.data);
    return null;
  },
}));
