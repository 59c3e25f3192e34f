/**
 * Portgroups (Ironic 1.23+): create / update (JSON patch) / delete with Ironic's rules, and the checks a port's
 * portgroup membership must pass (same node, standalone_ports_supported, one physical network per portgroup).
 */
import { randomUUID } from 'node:crypto';
import type { ConductorContext } from '../context.js';
import { Conflict, InvalidParameterValue, InvalidState, IronicError, NotAcceptable } from '../errors.js';
import { isUuid } from '../locks.js';
import {
  countPortgroupPorts, createPortgroup as insertPortgroup, deletePortgroup as removePortgroup, getPortgroup as readPortgroup,
  updatePortgroup as writePortgroup, type PortgroupFields, type PortgroupRecord,
} from '../store/portgroups.js';
import { DuplicateError, type NodeRecord, type PortRecord } from '../store/types.js';
import { checkDictField } from './field-limits.js';
import { applyJsonPatch, type PatchOp } from './jsonpatch.js';

export const PORTGROUP_KEYS: readonly string[] = ['address', 'extra', 'mode', 'name', 'node_uuid', 'properties',
  'standalone_ports_supported', 'uuid'];
const PATCH_ALLOWED = ['address', 'extra', 'mode', 'name', 'node_uuid', 'properties', 'standalone_ports_supported'];
/** Ironic's [DEFAULT]default_portgroup_mode. */
export const DEFAULT_PORTGROUP_MODE = 'active-backup';
/** Ironic 1.10+: node and portgroup names are RFC 3986 unreserved characters. */
const NAME_RE = /^[A-Za-z0-9\-._~]{1,255}$/;
const HOSTNAME_RE = /^(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*\.?$/i;
const MAC_RE = /^([0-9a-f]{2}[:-]){5}[0-9a-f]{2}$/i;
/** States in which a portgroup may move to another node (Ironic's update_portgroup). */
const MOVE_STATES = ['enroll', 'inspecting', 'inspect wait', 'manageable'];

export function portgroupNotFound(ident: string, status = 404): IronicError {
  return new IronicError(`Portgroup ${ident} could not be found.`, status, 'PortgroupNotFound');
}

export function validPortgroupName(name: string, minor: number): boolean {
  return minor < 10 ? HOSTNAME_RE.test(name) && name.length <= 255 : NAME_RE.test(name);
}

/** Ironic's boolean type accepts the strings the CLI sends (ports.ts has the same; imported the other way round). */
function strBool(v: string): boolean | undefined {
  const l = v.toLowerCase();
  if (['true', '1', 'yes', 'on', 't', 'y'].includes(l)) return true;
  if (['false', '0', 'no', 'off', 'f', 'n'].includes(l)) return false;
  return undefined;
}

function normalizeMac(v: unknown, field: string): string {
  if (typeof v !== 'string' || !MAC_RE.test(v)) throw new InvalidParameterValue(`Expected valid MAC address for ${field}: ${String(v)}`);
  return v.toLowerCase().replace(/-/g, ':');
}

/** Type checks of PORTGROUP_SCHEMA and its extra validators; normalises address and the boolean. */
function checkFields(f: Record<string, unknown>): void {
  for (const k of ['extra', 'properties'] as const) {
    const v = f[k];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'object' || Array.isArray(v)) {
      throw new InvalidParameterValue(`Invalid value for field "${k}": expected a dict, got ${JSON.stringify(v)}.`);
    }
    checkDictField(k, v);
  }
  for (const k of ['mode', 'name'] as const) {
    const v = f[k];
    if (v !== undefined && v !== null && typeof v !== 'string') {
      throw new InvalidParameterValue(`Invalid value for field "${k}": expected a string, got ${JSON.stringify(v)}.`);
    }
    if (typeof v === 'string' && v.length > 255) throw new InvalidParameterValue(`Value for "${k}" is too long (more than 255 characters).`);
  }
  if (f.address !== undefined && f.address !== null) f.address = normalizeMac(f.address, 'address');
  if (f.uuid !== undefined && f.uuid !== null && (typeof f.uuid !== 'string' || !isUuid(f.uuid))) {
    throw new InvalidParameterValue(`Expected UUID for uuid: ${String(f.uuid)}`);
  }
  if (f.node_uuid !== undefined && (typeof f.node_uuid !== 'string' || !isUuid(f.node_uuid))) {
    throw new InvalidParameterValue(`Expected UUID for node_uuid: ${String(f.node_uuid)}`);
  }
  const sps = f.standalone_ports_supported;
  if (sps !== undefined && sps !== null) {
    const b = typeof sps === 'string' ? strBool(sps) : sps;
    if (typeof b !== 'boolean') throw new InvalidParameterValue(`Invalid standalone_ports_supported: ${JSON.stringify(sps)}`);
    f.standalone_ports_supported = b;
  }
}

function mapDuplicate(e: unknown, pg: { uuid: string; name?: unknown; address?: unknown }): never {
  if (e instanceof DuplicateError) {
    if (e.field === 'name') throw new IronicError(`A portgroup with name ${String(pg.name)} already exists.`, 409, 'PortgroupDuplicateName');
    if (e.field === 'address') {
      throw new IronicError(`A portgroup with MAC address ${String(pg.address)} already exists.`, 409, 'PortgroupMACAlreadyExists');
    }
    throw new IronicError(`A portgroup with UUID ${pg.uuid} already exists.`, 409, 'PortgroupAlreadyExists');
  }
  throw e;
}

/** A node named in a request body: missing is a 400 there (Ironic changes NodeNotFound's code). */
async function bodyNode(ctx: ConductorContext, uuid: string): Promise<NodeRecord> {
  const node = await ctx.store.getNodeByUuid(uuid.toLowerCase());
  if (!node) throw new IronicError(`Node ${uuid} could not be found.`, 400, 'NodeNotFound');
  return node;
}

/** By UUID or name; anything else is a 400 as Ironic's args.uuid_or_name says. */
export async function getPortgroup(ctx: ConductorContext, ident: string, status = 404): Promise<PortgroupRecord> {
  let pg: PortgroupRecord | undefined;
  if (isUuid(ident)) pg = await readPortgroup(ctx.store.sql, 'uuid', ident.toLowerCase());
  else if (NAME_RE.test(ident)) pg = await readPortgroup(ctx.store.sql, 'name', ident);
  else throw new InvalidParameterValue(`Expected UUID or name for portgroup: ${ident}`);
  if (!pg) throw portgroupNotFound(ident, status);
  return pg;
}

export async function createPortgroup(ctx: ConductorContext, body: Record<string, unknown>, minor: number): Promise<PortgroupRecord> {
  if (body.node_uuid === undefined) throw new InvalidParameterValue("Schema error for portgroup: 'node_uuid' is a required property");
  const f = { ...body };
  checkFields(f);
  const node = await bodyNode(ctx, f.node_uuid as string);
  if (minor < 26 && (f.mode || (f.properties && Object.keys(f.properties as object).length))) throw new NotAcceptable();
  if (typeof f.name === 'string' && f.name && !validPortgroupName(f.name, minor)) {
    throw new InvalidParameterValue(`Cannot create portgroup with invalid name '${f.name}'`);
  }
  const uuid = typeof f.uuid === 'string' && f.uuid ? f.uuid.toLowerCase() : randomUUID();
  try {
    return await insertPortgroup(ctx.store.sql, {
      uuid, node_uuid: node.uuid, name: (f.name as string | null | undefined) || null,
      address: (f.address as string | null | undefined) ?? null, extra: (f.extra as Record<string, unknown> | null) ?? {},
      standalone_ports_supported: (f.standalone_ports_supported as boolean | null | undefined) ?? true,
      mode: (f.mode as string | null | undefined) || DEFAULT_PORTGROUP_MODE,
      properties: (f.properties as Record<string, unknown> | null) ?? {},
    });
  } catch (e) {
    return mapDuplicate(e, { uuid, name: f.name, address: f.address });
  }
}

function pathTouched(ops: PatchOp[], path: string): boolean {
  return ops.some((o) => o.path === path || o.path.startsWith(`${path}/`));
}

export async function updatePortgroup(ctx: ConductorContext, ident: string, ops: PatchOp[], minor: number): Promise<PortgroupRecord> {
  const pg = await getPortgroup(ctx, ident);
  if (minor < 26 && (pathTouched(ops, '/mode') || pathTouched(ops, '/properties'))) throw new NotAcceptable();
  for (const op of ops) {
    const root = op.path.split('/')[1] ?? '';
    if (!PATCH_ALLOWED.includes(root)) {
      throw new IronicError(`Cannot patch ${op.path}. Only the following can be updated: ${PATCH_ALLOWED.join(', ')}`, 400, 'Invalid');
    }
    if (op.path === '/name' && op.op !== 'remove' && typeof op.value === 'string' && op.value &&
      !validPortgroupName(op.value, minor)) {
      throw new InvalidParameterValue(`Portgroup ${ident}: Cannot change name to invalid name '${op.value}'`);
    }
  }
  const fields = ['address', 'extra', 'mode', 'name', 'node_uuid', 'properties', 'standalone_ports_supported'] as const;
  const before: Record<string, unknown> = {};
  for (const k of fields) before[k] = pg[k];
  const after = applyJsonPatch(before, ops);
  if (!('mode' in after)) throw new InvalidParameterValue("'mode' is a mandatory attribute and can not be removed");
  if (after.node_uuid === undefined) throw new InvalidParameterValue("Schema error for patch: 'node_uuid' is a required property");
  checkFields(after);
  const target = after.node_uuid !== pg.node_uuid ? await bodyNode(ctx, String(after.node_uuid)) : undefined;
  const changed: Partial<PortgroupFields> = {};
  for (const k of fields) {
    let v = after[k];
    if (v === undefined) v = k === 'extra' || k === 'properties' ? {} : k === 'standalone_ports_supported' ? true : null;
    if (JSON.stringify(v) !== JSON.stringify(before[k])) (changed as Record<string, unknown>)[k] = v;
  }
  if (changed.standalone_ports_supported === null) changed.standalone_ports_supported = false;
  if (Object.keys(changed).length === 0) return pg;
  if (target) changed.node_uuid = target.uuid;
  return ctx.tasks.withNodeTask(pg.node_uuid, { exclusive: true, purpose: 'update portgroup' }, async (task) => {
    const node = task.node;
    if (node.provision_state === 'inspecting') {
      throw new Conflict(`Cannot update portgroup "${pg.uuid}" on node "${node.uuid}" while it is in state "inspecting".`);
    }
    if (changed.node_uuid !== undefined) {
      if (!MOVE_STATES.includes(node.provision_state) && !node.maintenance) {
        throw new InvalidState(`Portgroup ${pg.uuid} can not be associated to node ${node.uuid} unless the node is in a ` +
          `${MOVE_STATES.join(', ')} state or in maintenance mode.`);
      }
      if (await countPortgroupPorts(ctx.store.sql, pg.uuid) > 0) {
        throw new IronicError(`Portgroup ${pg.uuid} can not be associated with node ${node.uuid} because there are ports ` +
          'associated with this portgroup.', 400, 'PortgroupNotEmpty');
      }
    }
    if (changed.standalone_ports_supported === false && node.network_interface !== 'noop') {
      // The flat interface's portgroup_changed: members must not PXE-boot or carry a VIF on their own.
      for (const p of task.ports.filter((x) => x.portgroup_uuid === pg.uuid)) {
        const reason: string[] = [];
        if (p.pxe_enabled) reason.push("'pxe_enabled' is set to True");
        const vif = p.internal_info.tenant_vif_port_id;
        if (typeof vif === 'string') reason.push(`VIF ${vif} is attached to this port`);
        if (reason.length) {
          throw new Conflict(`standalone_ports_supported can not be set to False, because the port group ${pg.uuid} ` +
            `contains port with ${reason.join(', ')}`);
        }
      }
    }
    try {
      const out = await writePortgroup(ctx.store.sql, pg.uuid, changed);
      if (!out) throw portgroupNotFound(ident);
      return out;
    } catch (e) {
      return mapDuplicate(e, { uuid: pg.uuid, name: changed.name, address: changed.address });
    }
  });
}

export async function deletePortgroup(ctx: ConductorContext, ident: string): Promise<void> {
  const pg = await getPortgroup(ctx, ident);
  await ctx.tasks.withNodeTask(pg.node_uuid, { exclusive: true, purpose: 'portgroup deletion' }, async () => {
    const r = await removePortgroup(ctx.store.sql, pg.uuid);
    // Ironic names the portgroup by its database id here (Portgroup.destroy passes self.id).
    if (r === 'not-empty') {
      throw new IronicError(`Cannot complete the requested action because portgroup ${pg.id} contains ports.`, 400,
        'PortgroupNotEmpty');
    }
    if (r === 'missing') throw portgroupNotFound(ident);
  });
}

/**
 * A port joining (or staying in) a portgroup, as Ironic's port API and conductor check it: the portgroup exists (400),
 * belongs to the port's node, accepts PXE-enabled members only with standalone_ports_supported, and all members
 * share one physical network. `changed`: the port fields this request sets. Returns the portgroup's UUID.
 */
export async function checkPortMembership(ctx: ConductorContext, port: {
  uuid?: string; node_uuid: string; portgroup_uuid: string | null; pxe_enabled: boolean; physical_network: string | null;
  internal_info?: PortRecord['internal_info'];
}, changed: ReadonlySet<string>, creating: boolean, networkInterface: string | null): Promise<string | null> {
  if (!port.portgroup_uuid) return null;
  if (!isUuid(port.portgroup_uuid)) throw new InvalidParameterValue(`Expected UUID for portgroup_uuid: ${port.portgroup_uuid}`);
  const pg = await readPortgroup(ctx.store.sql, 'uuid', port.portgroup_uuid.toLowerCase());
  if (!pg) throw portgroupNotFound(port.portgroup_uuid, 400);
  if (pg.node_uuid !== port.node_uuid) {
    throw new IronicError('Port can not be added to a portgroup belonging to a different node.', 400, 'BadRequest');
  }
  if (creating && port.pxe_enabled && !pg.standalone_ports_supported) {
    throw new Conflict(`Port group ${pg.uuid} doesn't support standalone ports. This port cannot be created as a member ` +
      "of that portgroup as the port's 'pxe_enabled' field was set to True.");
  }
  if (changed.has('portgroup_uuid') || changed.has('physical_network')) {
    const members = (await ctx.store.listPorts({ portgroup_uuid: pg.uuid })).filter((p) => p.uuid !== port.uuid);
    const nets = new Set(members.map((p) => p.physical_network));
    if (nets.size > 1) {
      throw new IronicError(`Port group ${pg.uuid} has member ports with inconsistent physical networks ` +
        `(${[...nets].map(String).join(', ')}). All ports in a port group must have the same physical network.`, 500,
      'PortgroupPhysnetInconsistent');
    }
    const pgNet = nets.size ? [...nets][0] : undefined;
    if (pgNet !== undefined && pgNet !== port.physical_network) {
      throw new Conflict(`Port with physical network ${String(port.physical_network)} cannot become a member of port ` +
        `group ${pg.uuid} which has ports in physical network ${String(pgNet)}.`);
    }
  }
  if (!creating && networkInterface !== 'noop' && (changed.has('pxe_enabled') || changed.has('portgroup_uuid') ||
    typeof port.internal_info?.tenant_vif_port_id === 'string') && !pg.standalone_ports_supported) {
    const reason: string[] = [];
    if (port.pxe_enabled) reason.push("'pxe_enabled' was set to True");
    const vif = port.internal_info?.tenant_vif_port_id;
    if (typeof vif === 'string') reason.push(`VIF ${vif} is attached to the port`);
    if (reason.length) {
      throw new Conflict(`Port group ${pg.uuid} doesn't support standalone ports. This port ${String(port.uuid)} cannot be ` +
        ` a member of that port group because of: ${reason.join(', ')}`);
    }
  }
  return pg.uuid;
}
