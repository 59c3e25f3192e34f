/**
 * Ports: create / update / delete with Ironic's rules (MAC format and uniqueness, local_link_connection keys),
 * each under the owning node's exclusive lock.
 */
import { randomUUID } from 'node:crypto';
import type { ConductorContext } from '../context.js';
import { InvalidParameterValue, InvalidState, IronicError, MACAlreadyExists, NodeNotFound, PortAlreadyExists, PortNotFound } from '../errors.js';
import { isUuid } from '../locks.js';
import { DuplicateError, type PortFields, type PortRecord } from '../store/types.js';
import { checkDictField } from './field-limits.js';
import { applyJsonPatch, type PatchOp } from './jsonpatch.js';
import { checkPortMembership } from './portgroups.js';

const MAC_RE = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i;
const LLC_KEYS = ['switch_id', 'port_id', 'switch_info', 'network_type', 'hostname'];

export const PORT_PATCHABLE: ReadonlySet<string> = new Set(['address', 'extra', 'is_smartnic', 'local_link_connection',
  'node_uuid', 'physical_network', 'portgroup_uuid', 'pxe_enabled']);

export function normalizeMac(mac: unknown): string {
  if (typeof mac !== 'string' || !MAC_RE.test(mac)) {
    throw new InvalidParameterValue(`Expected a MAC address but received ${typeof mac === 'string' ? mac : JSON.stringify(mac)}.`);
  }
  return mac.toLowerCase();
}

export function strBool(v: string): boolean | undefined {
  const l = v.toLowerCase();
  if (['true', '1', 'yes', 'on', 't', 'y'].includes(l)) return true;
  if (['false', '0', 'no', 'off', 'f', 'n'].includes(l)) return false;
  return undefined;
}

function checkFields(f: Record<string, unknown>): void {
  if (f.address !== undefined) f.address = normalizeMac(f.address);
  for (const k of ['extra', 'local_link_connection'] as const) {
    const v = f[k];
    if (v !== undefined && (v === null || typeof v !== 'object' || Array.isArray(v))) {
      throw new InvalidParameterValue(`Invalid value for field "${k}": expected a dict.`);
    }
  }
  const llc = f.local_link_connection as Record<string, unknown> | undefined;
  if (llc && Object.keys(llc).length) {
    const bad = Object.keys(llc).filter((k) => !LLC_KEYS.includes(k));
    if (bad.length) throw new InvalidParameterValue(`Invalid local_link_connection keys: ${bad.join(', ')}.`);
    const smart = f.is_smartnic === true;
    if (llc.network_type !== undefined && llc.network_type !== 'managed' && llc.network_type !== 'unmanaged') {
      throw new InvalidParameterValue(`Invalid network_type ${String(llc.network_type)}; expected managed or unmanaged.`);
    }
    if (llc.network_type !== 'unmanaged') {
      const need = smart ? ['port_id', 'hostname'] : ['port_id', 'switch_id'];
      const missing = need.filter((k) => typeof llc[k] !== 'string' || !llc[k]);
      if (missing.length) {
        throw new InvalidParameterValue(`local_link_connection is missing required keys: ${missing.join(', ')}.`);
      }
    }
  }
  for (const k of ['pxe_enabled', 'is_smartnic'] as const) {
    // Ironic's boolean type accepts the strings the CLI sends (`--pxe-enabled true`).
    if (typeof f[k] === 'string') f[k] = strBool(f[k] as string) ?? f[k];
    if (f[k] !== undefined && typeof f[k] !== 'boolean') throw new InvalidParameterValue(`Invalid value for ${k}: expected a boolean.`);
  }
  for (const k of ['extra', 'local_link_connection'] as const) checkDictField(k, f[k]);
  if (f.physical_network !== undefined && f.physical_network !== null &&
    (typeof f.physical_network !== 'string' || f.physical_network.length > 64)) {
    throw new InvalidParameterValue('Invalid physical_network: expected a string of at most 64 characters.');
  }
  if (f.physical_network === '') throw new IronicError('A non-empty value is required when setting physical_network', 400, 'Invalid');
  if (f.node_uuid !== undefined && (typeof f.node_uuid !== 'string' || !isUuid(f.node_uuid))) {
    throw new InvalidParameterValue(`Expected a UUID for node_uuid but received ${JSON.stringify(f.node_uuid)}.`);
  }
}

function mapDuplicate(e: unknown, port: { uuid: string; address?: unknown }): never {
  if (e instanceof DuplicateError) {
    if (e.field === 'address') throw new MACAlreadyExists(String(port.address));
    if (e.field === 'uuid') throw new PortAlreadyExists(port.uuid);
  }
  throw e;
}

async function nodeForPort(ctx: ConductorContext, nodeUuid: string): Promise<string> {
  const node = await ctx.store.getNodeByUuid(nodeUuid.toLowerCase());
  if (!node) {
    // Ironic answers 400 here: the client named a node that does not exist in its request body.
    throw new IronicError(new NodeNotFound(nodeUuid).message, 400, 'NodeNotFound');
  }
  return node.uuid;
}

export async function createPort(ctx: ConductorContext, body: Record<string, unknown>): Promise<PortRecord> {
  if (body.address === undefined) throw new InvalidParameterValue('Mandatory field missing: address');
  if (body.node_uuid === undefined) throw new InvalidParameterValue('Mandatory field missing: node_uuid');
  const fields = { ...body };
  checkFields(fields);
  if (fields.uuid !== undefined && (typeof fields.uuid !== 'string' || !isUuid(fields.uuid))) {
    throw new InvalidParameterValue(`Expected a UUID but received ${JSON.stringify(fields.uuid)}.`);
  }
  const uuid = (fields.uuid as string | undefined)?.toLowerCase() ?? randomUUID();
  const nodeUuid = await nodeForPort(ctx, fields.node_uuid as string);
  return ctx.tasks.withNodeTask(nodeUuid, { exclusive: true, purpose: 'port create' }, async (task) => {
    if (fields.portgroup_uuid !== undefined && fields.portgroup_uuid !== null) {
      fields.portgroup_uuid = await checkPortMembership(ctx, { node_uuid: nodeUuid, portgroup_uuid: String(fields.portgroup_uuid),
        pxe_enabled: fields.pxe_enabled !== false, physical_network: (fields.physical_network as string | null | undefined) ?? null },
      new Set(['portgroup_uuid', 'physical_network']), true, task.node.network_interface);
    }
    try {
      return await ctx.store.createPort({ ...(fields as Partial<PortFields>), uuid, node_uuid: nodeUuid,
        address: fields.address as string });
    } catch (e) {
      return mapDuplicate(e, { uuid, address: fields.address });
    }
  });
}

export async function getPort(ctx: ConductorContext, ident: string): Promise<PortRecord> {
  const port = isUuid(ident) ? await ctx.store.getPortByUuid(ident.toLowerCase())
    : MAC_RE.test(ident) ? await ctx.store.getPortByAddress(ident) : undefined;
  if (!port) throw new PortNotFound(ident);
  return port;
}

export async function updatePort(ctx: ConductorContext, ident: string, ops: PatchOp[]): Promise<PortRecord> {
  for (const op of ops) {
    const root = op.path.split('/')[1] ?? '';
    if (!PORT_PATCHABLE.has(root)) {
      throw new InvalidParameterValue(`'/${root}' is an internal attribute and can not be updated`);
    }
    if (op.op === 'remove' && (op.path === '/address' || op.path === '/node_uuid')) {
      throw new InvalidParameterValue(`'${op.path}' is a mandatory attribute and can not be removed`);
    }
  }
  const port = await getPort(ctx, ident);
  return ctx.tasks.withNodeTask(port.node_uuid, { exclusive: true, purpose: 'port update' }, async (task) => {
    const doc: Record<string, unknown> = {};
    for (const f of PORT_PATCHABLE) doc[f] = (port as unknown as Record<string, unknown>)[f];
    const after = applyJsonPatch(doc, ops);
    const changed: Record<string, unknown> = {};
    for (const f of PORT_PATCHABLE) {
      let v = after[f];
      if (v === undefined) v = f === 'extra' || f === 'local_link_connection' ? {} : f === 'pxe_enabled' ? true : null;
      if (JSON.stringify(v) !== JSON.stringify(doc[f])) changed[f] = v;
    }
    if (changed.is_smartnic === null) changed.is_smartnic = false;
    const checked: Record<string, unknown> = { ...changed,
      ...(changed.local_link_connection ? { is_smartnic: after.is_smartnic ?? false } : {}) };
    checkFields(checked);
    for (const k of Object.keys(changed)) changed[k] = checked[k];
    if (changed.address !== undefined) changed.address = normalizeMac(changed.address);
    if (changed.node_uuid !== undefined) changed.node_uuid = await nodeForPort(ctx, changed.node_uuid as string);
    if (Object.keys(changed).length === 0) return port;
    const merged = { ...port, ...changed } as PortRecord;
    if (merged.portgroup_uuid) {
      const pg = await checkPortMembership(ctx, merged, new Set(Object.keys(changed)), false, task.node.network_interface);
      if ('portgroup_uuid' in changed) changed.portgroup_uuid = pg;
    }
    try {
      return await ctx.store.updatePort(port.uuid, changed as Partial<PortFields>);
    } catch (e) {
      return mapDuplicate(e, { uuid: port.uuid, address: changed.address });
    }
  });
}

export async function deletePort(ctx: ConductorContext, ident: string): Promise<void> {
  const port = await getPort(ctx, ident);
  await ctx.tasks.withNodeTask(port.node_uuid, { exclusive: true, purpose: 'port delete' }, async (task) => {
    // Ironic's destroy_port: a port still bound to a VIF stays, unless the node is in maintenance.
    const uses = [['tenant_vif_port_id', 'tenant'], ['cleaning_vif_port_id', 'cleaning'],
      ['provisioning_vif_port_id', 'provisioning'], ['rescuing_vif_port_id', 'rescuing'],
      ['inspection_vif_port_id', 'inspecting']] as const;
    const bound = uses.find(([key]) => port.internal_info[key]);
    if (bound && !task.node.maintenance) {
      throw new InvalidState(`Cannot delete the port ${port.uuid} as it is bound to VIF ` +
        `${String(port.internal_info[bound[0]])} for ${bound[1]} use.`);
    }
    await ctx.store.deletePort(port.uuid);
  });
}
