/**
 * Node create / update (JSON patch) / delete: Ironic's API-level and conductor-level rules in one place.
 */
import { stopConsoleOf } from './console.js';
import { allowedFileDirs, checkNodeFileRefs } from '../file-access.js';
import { kernelParamTokens } from '../drivers/ipxe.js';
import { randomUUID } from 'node:crypto';
import type { ConductorContext } from '../context.js';
import { deleteInspectionData } from '../inspection/inventory-store.js';
import { NODE_INTERFACE_KINDS, type NodeInterfaceKind } from '../drivers/index.js';
import {
  Conflict, DuplicateName, InstanceAssociated, InvalidParameterValue, InvalidState, IronicError, NodeAlreadyExists,
  NodeAssociated, NodeProtected, NotAcceptable,
} from '../errors.js';
import { isUuid } from '../locks.js';
import { DELETE_ALLOWED_STATES, initialState, INTERFACE_UPDATE_STATES, UPDATE_ALLOWED_STATES } from '../states.js';
import { DuplicateError, type NodeFields, type NodeRecord } from '../store/types.js';
import { checkDictField, checkStringField } from './field-limits.js';
import { applyJsonPatch, type PatchOp } from './jsonpatch.js';
import { strBool } from './ports.js';
import { checkNodeChassis } from './chassis.js';
import { deleteAllocationsOfNode, removeNodeAllocation } from './allocations.js';

/** Ironic's allowed_update_states for removing the instance_uuid of a node with an allocation. */
const INSTANCE_REMOVAL_STATES: ReadonlySet<string> = new Set(['enroll', 'inspecting', 'inspect wait', 'manageable', 'available']);

const NAME_RE = /^[A-Za-z0-9\-._~]+$/;
const RESERVED_NAMES = new Set(['detail', 'validate', 'ports', 'portgroups', 'states', 'maintenance', 'vifs',
  'management', 'traits', 'vendor_passthru', 'bios', 'history', 'inventory']);

export const DICT_FIELDS = ['driver_info', 'extra', 'instance_info', 'properties', 'network_data'] as const;
const STRING_FIELDS = ['name', 'chassis_uuid', 'description', 'instance_uuid', 'lessee', 'owner', 'resource_class',
  'retired_reason', 'protected_reason', 'shard', 'conductor_group', 'driver', 'boot_mode',
  ...NODE_INTERFACE_KINDS.map((k) => `${k}_interface`)] as const;
const BOOL_FIELDS = ['automated_clean', 'maintenance', 'protected', 'retired', 'secure_boot', 'console_enabled'] as const;

/** PATCH-able top-level fields. */
export const PATCHABLE_FIELDS: ReadonlySet<string> = new Set([
  'automated_clean', ...NODE_INTERFACE_KINDS.map((k) => `${k}_interface`), 'chassis_uuid', 'conductor_group',
  'description', 'driver', 'driver_info', 'extra', 'instance_info', 'instance_uuid', 'lessee', 'maintenance', 'name',
  'network_data', 'owner', 'properties', 'protected', 'protected_reason', 'resource_class', 'retired',
  'retired_reason', 'shard',
]);

export function validateName(name: unknown): void {
  if (name === null) return;
  if (typeof name !== 'string' || !NAME_RE.test(name) || name.length > 255 || isUuid(name) || RESERVED_NAMES.has(name)) {
    throw new InvalidParameterValue(`Expected a logical name but received ${JSON.stringify(name)}.`);
  }
}

function checkTypes(fields: Record<string, unknown>): void {
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined) continue;
    if ((DICT_FIELDS as readonly string[]).includes(k)) {
      if (v === null || typeof v !== 'object' || Array.isArray(v)) {
        throw new InvalidParameterValue(`Invalid value for field "${k}": expected a dict, got ${JSON.stringify(v)}.`);
      }
      checkDictField(k, v);
    } else if ((STRING_FIELDS as readonly string[]).includes(k)) {
      if (v !== null && typeof v !== 'string') {
        throw new InvalidParameterValue(`Invalid value for field "${k}": expected a string, got ${JSON.stringify(v)}.`);
      }
      if (k !== 'description') checkStringField(k, v);
    } else if ((BOOL_FIELDS as readonly string[]).includes(k)) {
      if (typeof v === 'string' && strBool(v) !== undefined) fields[k] = strBool(v);
      else if (v !== null && typeof v !== 'boolean') {
        throw new InvalidParameterValue(`Invalid value for field "${k}": expected a boolean, got ${JSON.stringify(v)}.`);
      }
    }
  }
  if (fields.name !== undefined) validateName(fields.name);
  for (const k of ['instance_uuid', 'chassis_uuid'] as const) {
    const v = fields[k];
    if (typeof v === 'string' && !isUuid(v)) throw new InvalidParameterValue(`Expected a UUID for ${k} but received ${v}.`);
  }
  if (typeof fields.resource_class === 'string' && fields.resource_class.length > 80) {
    throw new InvalidParameterValue('Invalid resource_class: longer than 80 characters.');
  }
  if (typeof fields.description === 'string' && fields.description.length > 4096) {
    throw new InvalidParameterValue('Value for "description" is too long (more than 4096 characters).');
  }
  if (typeof fields.conductor_group === 'string' && !/^[A-Za-z0-9_.-]{0,255}$/.test(fields.conductor_group)) {
    throw new InvalidParameterValue(`Invalid conductor_group ${fields.conductor_group}.`);
  }
}

/** Kernel parameters end up in iPXE scripts: refused at the API when they could break out of the kernel line. */
function checkKernelParams(fields: Record<string, unknown>): void {
  for (const f of ['driver_info', 'instance_info'] as const) {
    const d = fields[f];
    if (!d || typeof d !== 'object' || Array.isArray(d) || !Object.hasOwn(d, 'kernel_append_params')) continue;
    const v = (d as Record<string, unknown>).kernel_append_params;
    if (typeof v === 'string') kernelParamTokens(v, `${f}.kernel_append_params`);
  }
}

function mapDuplicate(e: unknown, node: { uuid: string; name?: string | null; instance_uuid?: string | null }): never {
  if (e instanceof DuplicateError) {
    if (e.field === 'name') throw new DuplicateName(String(node.name));
    if (e.field === 'uuid') throw new NodeAlreadyExists(node.uuid);
    if (e.field === 'instance_uuid') throw new InstanceAssociated(String(node.instance_uuid), node.uuid);
  }
  throw e;
}

function interfaceRequests(fields: Record<string, unknown>): Partial<Record<NodeInterfaceKind, string | null>> {
  const out: Partial<Record<NodeInterfaceKind, string | null>> = {};
  for (const kind of NODE_INTERFACE_KINDS) {
    const v = fields[`${kind}_interface`];
    if (v !== undefined) out[kind] = v as string | null;
  }
  return out;
}

function noValidHost(driver: string): IronicError {
  return new IronicError(`No valid host was found. Reason: No conductor service registered which supports driver ` +
    `${driver} for conductor group "".`, 400, 'NoValidHost');
}

/** POST /v1/nodes: `body` has passed the API's key check (no unknown keys). */
export async function createNode(ctx: ConductorContext, body: Record<string, unknown>, apiMinor: number): Promise<NodeRecord> {
  checkTypes(body);
  checkNodeFileRefs(allowedFileDirs(ctx.config), body);
  checkKernelParams(body);
  const driver = body.driver;
  if (typeof driver !== 'string' || !driver) throw new InvalidParameterValue('Mandatory field missing: driver');
  try {
    ctx.drivers.getHardwareType(driver);
  } catch {
    throw noValidHost(driver);
  }
  const uuid = typeof body.uuid === 'string' ? body.uuid.toLowerCase() : randomUUID();
  if (body.uuid !== undefined && (typeof body.uuid !== 'string' || !isUuid(body.uuid))) {
    throw new InvalidParameterValue(`Expected a UUID but received ${JSON.stringify(body.uuid)}.`);
  }
  const ifaces = ctx.drivers.resolveInterfaceFields(driver, interfaceRequests(body));
  const fields: Record<string, unknown> = { ...body, ...ifaces, uuid, driver };
  if (body.chassis_uuid !== undefined) fields.chassis_uuid = await checkNodeChassis(ctx, body.chassis_uuid);
  // These columns are NOT NULL; an explicit null means "not set", as in a PATCH that removes them.
  for (const b of ['maintenance', 'console_enabled', 'protected', 'retired'] as const) if (fields[b] === null) delete fields[b];
  fields.conductor_group = typeof body.conductor_group === 'string' ? body.conductor_group.toLowerCase() : '';
  if (body.resource_class === undefined) fields.resource_class = ctx.config.default_resource_class;
  if (body.protected_reason && !body.protected) {
    throw new InvalidParameterValue('Cannot set protected_reason when protected is unset');
  }
  try {
    return await ctx.store.createNode({ ...(fields as Partial<NodeFields>), ...initialState(apiMinor), uuid, driver });
  } catch (e) {
    return mapDuplicate(e, { uuid, name: body.name as string | null, instance_uuid: body.instance_uuid as string | null });
  }
}

/** The patchable view of a node: what JSON-patch paths address. */
function patchDoc(node: NodeRecord): Record<string, unknown> {
  const doc: Record<string, unknown> = {};
  for (const f of PATCHABLE_FIELDS) doc[f] = (node as unknown as Record<string, unknown>)[f];
  return doc;
}

/** PATCH /v1/nodes/{id} with an RFC 6902 patch. */
export async function updateNode(ctx: ConductorContext, ident: string, ops: PatchOp[],
  opts: { resetInterfaces?: boolean; apiMinor?: number } = {}): Promise<NodeRecord> {
  for (const op of ops) {
    const root = op.path.split('/')[1] ?? '';
    if (!PATCHABLE_FIELDS.has(root)) {
      if (root === 'uuid' || root === 'id' || root === 'created_at' || root === 'updated_at' ||
        root.endsWith('state') || root === 'reservation' || root === 'driver_internal_info' || root === 'last_error' ||
        root === 'provision_updated_at' || root === 'maintenance_reason' || root === 'fault' || root === 'conductor' ||
        root === 'allocation_uuid' || root === 'traits' || root === 'clean_step' || root === 'deploy_step') {
        throw new InvalidParameterValue(`'/${root}' is an internal attribute and can not be updated`);
      }
      throw new InvalidParameterValue(`Cannot patch /${root}. Only the following can be updated: ` +
        `${[...PATCHABLE_FIELDS].sort().join(', ')}`);
    }
    if (op.op === 'remove' && op.path === '/driver') {
      throw new InvalidParameterValue(`'/driver' is a mandatory attribute and can not be removed`);
    }
  }
  const found = await ctx.tasks.findNode(ident);
  if (found.target_provision_state && !UPDATE_ALLOWED_STATES.has(found.provision_state)) {
    throw new InvalidState(`Node ${found.uuid} can not be updated while a state transition is in progress.`);
  }
  return ctx.tasks.withNodeTask(found, { exclusive: true, purpose: 'node update' }, async (task) => {
    const node = task.node;
    const before = patchDoc(node);
    const after = applyJsonPatch(before, ops);
    const changed: Record<string, unknown> = {};
    for (const f of PATCHABLE_FIELDS) {
      let v = after[f];
      if (v === undefined) v = (DICT_FIELDS as readonly string[]).includes(f) ? {} : null;
      if (JSON.stringify(v) !== JSON.stringify(before[f])) changed[f] = v;
    }
    if (Object.keys(changed).length === 0) return node;
    if ('driver' in changed && (changed.driver === null || changed.driver === '')) {
      throw new InvalidParameterValue(`'/driver' is a mandatory attribute and can not be removed`);
    }
    for (const b of ['maintenance', 'protected', 'retired'] as const) if (b in changed && changed[b] === null) changed[b] = false;
    if ('conductor_group' in changed) changed.conductor_group = String(changed.conductor_group ?? '').toLowerCase();
    checkTypes(changed);
    if ('chassis_uuid' in changed) {
      changed.chassis_uuid = await checkNodeChassis(ctx, changed.chassis_uuid);
      // Ironic 1.25: only from then on may a node's chassis be unset.
      if (node.chassis_uuid && changed.chassis_uuid === null && (opts.apiMinor ?? 25) < 25) throw new NotAcceptable();
    }
    checkNodeFileRefs(allowedFileDirs(ctx.config), changed);
    checkKernelParams(changed);

    const driver = (changed.driver ?? node.driver) as string;
    const ifaceChanged = NODE_INTERFACE_KINDS.filter((k) => `${k}_interface` in changed);
    if ('driver' in changed || ifaceChanged.length) {
      if (!INTERFACE_UPDATE_STATES.has(node.provision_state) && !node.maintenance && ifaceChanged.length) {
        throw new InvalidState(`Interface fields can only be changed for nodes in the enroll, inspecting, ` +
          `inspect wait, manageable or available state, or in maintenance; node ${node.uuid} is in ` +
          `${node.provision_state}.`);
      }
      try {
        ctx.drivers.getHardwareType(driver);
      } catch {
        throw noValidHost(driver);
      }
      const requests: Partial<Record<NodeInterfaceKind, string | null>> = {};
      for (const kind of NODE_INTERFACE_KINDS) {
        const key = `${kind}_interface`;
        if (key in changed) requests[kind] = changed[key] as string | null;
        else if (!('driver' in changed && opts.resetInterfaces)) requests[kind] = node[key as keyof NodeRecord] as string | null;
      }
      Object.assign(changed, ctx.drivers.resolveInterfaceFields(driver, requests));
    }
    if ('instance_uuid' in changed && changed.instance_uuid !== null && node.instance_uuid) {
      throw new NodeAssociated(node.uuid, node.instance_uuid);
    }
    if (changed.maintenance === false) Object.assign(changed, { maintenance_reason: null, fault: null });
    if (changed.protected === false) changed.protected_reason = null;
    if (changed.retired === false) changed.retired_reason = null;
    const prot = (changed.protected ?? node.protected) as boolean;
    if (changed.protected_reason && !prot) {
      throw new InvalidParameterValue('Cannot set protected_reason when protected is unset');
    }
    if (changed.protected === true && !['active', 'rescue'].includes(node.provision_state)) {
      throw new InvalidState(`Protected can only be set in states active and rescue`);
    }
    const retired = (changed.retired ?? node.retired) as boolean;
    if (changed.retired_reason && !retired) {
      throw new InvalidParameterValue('Cannot set retired_reason when retired is unset');
    }
    if ('instance_uuid' in changed && changed.instance_uuid === null && node.allocation_uuid) {
      if (!node.maintenance && !INSTANCE_REMOVAL_STATES.has(node.provision_state)) {
        // Ironic's InvalidState is a 409.
        throw new Conflict(`Node ${node.uuid} with an allocation can not have instance_uuid removed unless it is in one ` +
          `of allowed (${[...INSTANCE_REMOVAL_STATES].join(', ')}) states or in maintenance mode.`);
      }
      await removeNodeAllocation(ctx, task);
    }
    try {
      return await task.save(changed as Partial<NodeFields>);
    } catch (e) {
      return mapDuplicate(e, { uuid: node.uuid, name: changed.name as string | null,
        instance_uuid: changed.instance_uuid as string | null });
    }
  });
}

/** DELETE /v1/nodes/{id}. */
export async function deleteNode(ctx: ConductorContext, ident: string): Promise<void> {
  await ctx.tasks.withNodeTask(ident, { exclusive: true, purpose: 'node deletion' }, async (task) => {
    const n = task.node;
    if (n.protected) throw new NodeProtected(n.uuid);
    if (n.instance_uuid && !n.maintenance) throw new NodeAssociated(n.uuid, n.instance_uuid);
    if (!DELETE_ALLOWED_STATES.has(n.provision_state) && !n.maintenance) {
      throw new InvalidState(`Can not delete node "${n.uuid}" while it is in provision state "${n.provision_state}". ` +
        `Valid provision states to perform deletion are: "adopt failed", "available", "enroll", "manageable"`);
    }
    await stopConsoleOf(task);
    await deleteAllocationsOfNode(ctx, n.uuid);
    await ctx.store.deleteNode(n.uuid);
    await deleteInspectionData(ctx.config, n.uuid);
  });
}
