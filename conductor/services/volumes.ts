/**
 * Volume connectors and targets (Ironic 21.4 api/controllers/v1/volume_{connector,target}.py and the conductor's
 * update/destroy_volume_*): body schemas, node checks, unique keys as 409s, and changes refused unless the node
 * is powered off (Ironic checks power_state, not the provision state). Ironic 21.4 checks no connector `type`
 * or target `volume_type` value at the API: the storage interface (cinder) does at deploy time, and `noop` never.
 */
import { randomUUID } from 'node:crypto';
import type { ConductorContext } from '../context.js';
import { Conflict, IronicError, InvalidParameterValue, InvalidStateRequested, NotFound } from '../errors.js';
import { isUuid } from '../locks.js';
import type { NodeRecord } from '../store/types.js';
import { DuplicateError } from '../store/types.js';
import { volumes } from '../store/volumes.js';
import type { NewVolumeConnector, NewVolumeTarget, VolumeConnectorRecord, VolumeTargetRecord } from '../store/volumes.js';
import { applyJsonPatch, type PatchOp } from './jsonpatch.js';

export type VolumeKind = 'connector' | 'target';

export class OperationNotPermitted extends IronicError {
  constructor() { super('Operation not permitted.', 403); }
}

interface Spec { required: string[]; types: Record<string, 'string' | 'integer' | 'object'>; patchable: string[] }
const SPECS: Record<VolumeKind, Spec> = {
  connector: { required: ['connector_id', 'node_uuid', 'type'],
    types: { connector_id: 'string', extra: 'object', node_uuid: 'string', type: 'string', uuid: 'string' },
    patchable: ['connector_id', 'extra', 'node_uuid', 'type'] },
  target: { required: ['boot_index', 'node_uuid', 'volume_id', 'volume_type'],
    types: { boot_index: 'integer', extra: 'object', node_uuid: 'string', properties: 'object', volume_id: 'string',
      volume_type: 'string', uuid: 'string' },
    patchable: ['boot_index', 'extra', 'node_uuid', 'properties', 'volume_id', 'volume_type'] },
};
const NULLABLE = new Set(['extra', 'properties', 'uuid']);

/** Ironic's TARGET_SCHEMA / CONNECTOR_SCHEMA plus the uuid checks (args.uuid). */
function validate(kind: VolumeKind, body: Record<string, unknown>): void {
  const spec = SPECS[kind];
  for (const k of Object.keys(body)) {
    if (!(k in spec.types)) throw new InvalidParameterValue(`Schema error for ${kind}: Additional properties are not allowed ('${k}' was unexpected)`);
  }
  for (const k of spec.required) {
    if (!(k in body)) throw new InvalidParameterValue(`Schema error for ${kind}: '${k}' is a required property`);
  }
  for (const [k, t] of Object.entries(spec.types)) {
    const v = body[k];
    if (v === undefined || (v === null && NULLABLE.has(k))) continue;
    const ok = t === 'string' ? typeof v === 'string' : t === 'integer' ? Number.isInteger(v)
      : typeof v === 'object' && v !== null && !Array.isArray(v);
    if (!ok) throw new InvalidParameterValue(`Schema error for ${kind}: ${JSON.stringify(v)} is not of type '${t}'`);
  }
  for (const k of ['node_uuid', 'uuid']) {
    const v = body[k];
    if (typeof v === 'string' && !isUuid(v)) throw new InvalidParameterValue(`Expected a UUID for ${k}: ${v}`);
  }
}

function duplicate(kind: VolumeKind, e: DuplicateError, rec: { uuid: string; type?: string; connector_id?: string; boot_index?: number }): Conflict {
  if (e.field === 'uuid') return new Conflict(`A volume ${kind} with UUID ${rec.uuid} already exists.`);
  return kind === 'connector'
    ? new Conflict(`A volume connector with type ${rec.type} and connector ID ${rec.connector_id} already exists.`)
    : new Conflict(`A volume target with boot index '${rec.boot_index}' for the same node already exists.`);
}

function notFound(kind: VolumeKind, uuid: string): NotFound {
  return new NotFound(`Volume ${kind} ${uuid} could not be found.`);
}

export async function getVolume(ctx: ConductorContext, kind: 'connector', uuid: string): Promise<VolumeConnectorRecord>;
export async function getVolume(ctx: ConductorContext, kind: 'target', uuid: string): Promise<VolumeTargetRecord>;
export async function getVolume(ctx: ConductorContext, kind: VolumeKind, uuid: string): Promise<VolumeConnectorRecord | VolumeTargetRecord> {
  if (!isUuid(uuid)) throw new InvalidParameterValue(`Expected a UUID for ${kind}_uuid: ${uuid}`);
  const rec = kind === 'connector' ? await volumes(ctx.store).getConnector(uuid.toLowerCase())
    : await volumes(ctx.store).getTarget(uuid.toLowerCase());
  if (!rec) throw notFound(kind, uuid);
  return rec;
}

async function nodeForCreate(ctx: ConductorContext, nodeUuid: string): Promise<NodeRecord> {
  const node = await ctx.store.getNodeByUuid(nodeUuid.toLowerCase());
  if (!node) throw new InvalidParameterValue(`Invalid input for field/attribute node_uuid. Value: '${nodeUuid}'. `);
  return node;
}

export async function createVolume(ctx: ConductorContext, kind: VolumeKind, body: Record<string, unknown>):
  Promise<VolumeConnectorRecord | VolumeTargetRecord> {
  validate(kind, body);
  const node = await nodeForCreate(ctx, body.node_uuid as string);
  const uuid = typeof body.uuid === 'string' ? body.uuid.toLowerCase() : randomUUID();
  const extra = (body.extra as Record<string, unknown> | null | undefined) ?? {};
  if (kind === 'connector') {
    const c: NewVolumeConnector = { uuid, node_uuid: node.uuid, type: body.type as string, connector_id: body.connector_id as string, extra };
    return volumes(ctx.store).createConnector(c).catch((e: unknown) => { throw e instanceof DuplicateError ? duplicate(kind, e, c) : e; });
  }
  const t: NewVolumeTarget = { uuid, node_uuid: node.uuid, volume_type: body.volume_type as string, volume_id: body.volume_id as string,
    boot_index: body.boot_index as number, properties: (body.properties as Record<string, unknown> | null | undefined) ?? {}, extra };
  return volumes(ctx.store).createTarget(t).catch((e: unknown) => { throw e instanceof DuplicateError ? duplicate(kind, e, t) : e; });
}

/** Under the node's lock, with Ironic's power-off rule for `action` (volume connector update, ... deletion). */
async function whilePoweredOff<T>(ctx: ConductorContext, nodeUuid: string, action: string, fn: () => Promise<T>): Promise<T> {
  return ctx.tasks.withNodeTask(nodeUuid, { exclusive: true, purpose: action }, async (task) => {
    if (task.node.power_state !== 'power off') {
      throw new InvalidStateRequested(`The requested action "${action}" can not be performed on node "${task.node.uuid}" while it ` +
        `is in state "${task.node.power_state ?? 'None'}".`);
    }
    return fn();
  });
}

export async function updateVolume(ctx: ConductorContext, kind: VolumeKind, uuid: string, ops: PatchOp[]):
  Promise<VolumeConnectorRecord | VolumeTargetRecord> {
  const rec = kind === 'connector' ? await getVolume(ctx, 'connector', uuid) : await getVolume(ctx, 'target', uuid);
  const spec = SPECS[kind];
  for (const op of ops) {
    const field = op.path.split('/')[1] ?? '';
    if (!spec.patchable.includes(field)) {
      throw new InvalidParameterValue(`Cannot patch ${op.path}. Only the following can be updated: ${spec.patchable.join(', ')}`);
    }
    if (field === 'node_uuid' && op.op !== 'remove' && (typeof op.value !== 'string' || !isUuid(op.value))) {
      throw new InvalidParameterValue(`Expected a UUID for node_uuid, but received ${String(op.value)}.`);
    }
  }
  const { created_at: _c, updated_at: _u, ...doc } = rec as unknown as Record<string, unknown>;
  const patched = applyJsonPatch(doc, ops);
  validate(kind, patched);
  if (patched.uuid !== rec.uuid) throw new InvalidParameterValue('Cannot change the UUID.');
  const newNode = (patched.node_uuid as string).toLowerCase();
  if (newNode !== rec.node_uuid) await nodeForCreate(ctx, newNode);
  return whilePoweredOff(ctx, rec.node_uuid, `volume ${kind} update`, async () => {
    patched.extra ??= {};
    if (kind === 'target') patched.properties ??= {};
    patched.node_uuid = newNode;
    try {
      return kind === 'connector' ? await volumes(ctx.store).updateConnector(patched as unknown as NewVolumeConnector)
        : await volumes(ctx.store).updateTarget(patched as unknown as NewVolumeTarget);
    } catch (e) {
      throw e instanceof DuplicateError ? duplicate(kind, e, patched as { uuid: string }) : e;
    }
  });
}

export async function deleteVolume(ctx: ConductorContext, kind: VolumeKind, uuid: string): Promise<void> {
  const rec = kind === 'connector' ? await getVolume(ctx, 'connector', uuid) : await getVolume(ctx, 'target', uuid);
  await whilePoweredOff(ctx, rec.node_uuid, `volume ${kind} deletion`, () =>
    (kind === 'connector' ? volumes(ctx.store).deleteConnector(rec.uuid) : volumes(ctx.store).deleteTarget(rec.uuid)));
}
