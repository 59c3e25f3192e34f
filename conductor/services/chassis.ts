/**
 * Chassis: create / update (JSON patch) / delete with Ironic's rules (description at most 255 characters, extra a
 * dict, UUID immutable, no delete while a node names the chassis).
 */
import { randomUUID } from 'node:crypto';
import type { ConductorContext } from '../context.js';
import { InvalidParameterValue, IronicError } from '../errors.js';
import { isUuid } from '../locks.js';
import {
  createChassis as insertChassis, deleteChassis as removeChassis, getChassis as readChassis, updateChassis as writeChassis,
  type ChassisFields, type ChassisRecord,
} from '../store/chassis.js';
import { DuplicateError } from '../store/types.js';
import { checkDictField } from './field-limits.js';
import { applyJsonPatch, type PatchOp } from './jsonpatch.js';

export const CHASSIS_KEYS: readonly string[] = ['uuid', 'extra', 'description'];

export function chassisNotFound(ident: string, status = 404): IronicError {
  return new IronicError(`Chassis ${ident} could not be found.`, status, 'ChassisNotFound');
}

function checkFields(f: Record<string, unknown>): void {
  if (f.uuid !== undefined && f.uuid !== null && (typeof f.uuid !== 'string' || !isUuid(f.uuid))) {
    throw new InvalidParameterValue(`Expected UUID for uuid: ${String(f.uuid)}`);
  }
  if (f.description !== undefined && f.description !== null) {
    if (typeof f.description !== 'string') {
      throw new InvalidParameterValue(`Invalid value for field "description": expected a string, got ${JSON.stringify(f.description)}.`);
    }
    if (f.description.length > 255) {
      throw new InvalidParameterValue('Value for "description" is too long (more than 255 characters).');
    }
  }
  if (f.extra !== undefined && f.extra !== null) {
    if (typeof f.extra !== 'object' || Array.isArray(f.extra)) {
      throw new InvalidParameterValue(`Invalid value for field "extra": expected a dict, got ${JSON.stringify(f.extra)}.`);
    }
    checkDictField('extra', f.extra);
  }
}

/** The chassis by UUID (chassis have no names: anything else is a 400, as Ironic's args.uuid says). */
export async function getChassis(ctx: ConductorContext, ident: string): Promise<ChassisRecord> {
  if (!isUuid(ident)) throw new InvalidParameterValue(`Expected UUID for chassis_uuid: ${ident}`);
  const ch = await readChassis(ctx.store.sql, ident.toLowerCase());
  if (!ch) throw chassisNotFound(ident);
  return ch;
}

export async function createChassis(ctx: ConductorContext, body: Record<string, unknown>): Promise<ChassisRecord> {
  checkFields(body);
  const uuid = typeof body.uuid === 'string' && body.uuid ? body.uuid.toLowerCase() : randomUUID();
  try {
    return await insertChassis(ctx.store.sql, { uuid, description: (body.description as string | null | undefined) ?? null,
      extra: (body.extra as Record<string, unknown> | null | undefined) ?? {} });
  } catch (e) {
    if (e instanceof DuplicateError) throw new IronicError(`A chassis with UUID ${uuid} already exists.`, 409, 'ChassisAlreadyExists');
    throw e;
  }
}

export async function updateChassis(ctx: ConductorContext, ident: string, ops: PatchOp[]): Promise<ChassisRecord> {
  for (const op of ops) {
    const root = op.path.split('/')[1] ?? '';
    if (!CHASSIS_KEYS.includes(root)) {
      throw new IronicError(`Cannot patch ${op.path}. Only the following can be updated: ${CHASSIS_KEYS.join(', ')}`, 400, 'Invalid');
    }
  }
  const ch = await getChassis(ctx, ident);
  const doc: Record<string, unknown> = { uuid: ch.uuid, description: ch.description, extra: ch.extra };
  const after = applyJsonPatch(doc, ops);
  checkFields(after);
  if ((after.uuid ?? null) !== ch.uuid) throw new InvalidParameterValue('Cannot overwrite UUID for an existing Chassis.');
  const patch: Partial<ChassisFields> = {};
  const description = (after.description as string | null | undefined) ?? null;
  const extra = (after.extra as Record<string, unknown> | null | undefined) ?? {};
  if (description !== ch.description) patch.description = description;
  if (JSON.stringify(extra) !== JSON.stringify(ch.extra)) patch.extra = extra;
  if (Object.keys(patch).length === 0) return ch;
  const out = await writeChassis(ctx.store.sql, ch.uuid, patch);
  if (!out) throw chassisNotFound(ident);
  return out;
}

export async function deleteChassis(ctx: ConductorContext, ident: string): Promise<void> {
  const ch = await getChassis(ctx, ident);
  const r = await removeChassis(ctx.store.sql, ch.uuid);
  // Ironic names the chassis by its database id in this message (Chassis.destroy passes self.id).
  if (r === 'not-empty') {
    throw new IronicError(`Cannot complete the requested action because chassis ${ch.id} contains nodes.`, 400, 'ChassisNotEmpty');
  }
  if (r === 'missing') throw chassisNotFound(ident);
}

/**
 * A node's chassis_uuid on create/PATCH: must name an existing chassis (400, not 404, as Ironic changes the code
 * for requests acting on nodes). Returns the normalised UUID or null.
 */
export async function checkNodeChassis(ctx: ConductorContext, value: unknown): Promise<string | null> {
  if (value === undefined || value === null || value === '') return null;
  if (typeof value !== 'string' || !isUuid(value)) throw new InvalidParameterValue(`Expected UUID for chassis_uuid: ${String(value)}`);
  const ch = await readChassis(ctx.store.sql, value.toLowerCase());
  if (!ch) throw chassisNotFound(value, 400);
  return ch.uuid;
}
