/**
 * Allocations in the store (Ironic's allocations table), written once for both databases on store.sql
 * (sql-runner.ts). The node side of an allocation (nodes.instance_uuid, nodes.allocation_uuid) changes only in the
 * same transaction as the allocation row, as Ironic's dbapi does, so a node and its allocation never disagree.
 */
import { InvalidParameterValue, NotFound } from '../errors.js';
import { isoTime } from '../time.js';
import type { SqlRunner } from './sql-runner.js';
import type { Row } from './sqlite-rows.js';
import type { Json, SortDir } from './types.js';

export type AllocationState = 'allocating' | 'active' | 'error';

export interface AllocationRecord {
  id: number;
  uuid: string;
  name: string | null;
  node_uuid: string | null;
  state: AllocationState;
  owner: string | null;
  last_error: string | null;
  resource_class: string | null;
  traits: string[];
  candidate_nodes: string[];
  extra: Json;
  conductor_affinity: string | null;
  created_at: string;
  updated_at: string | null;
}

export type NewAllocation = Pick<AllocationRecord, 'uuid'> & Partial<Pick<AllocationRecord, 'name' | 'owner' |
  'resource_class' | 'traits' | 'candidate_nodes' | 'extra' | 'conductor_affinity'>>;

export interface AllocationQuery {
  node_uuid?: string;
  resource_class?: string;
  state?: string;
  owner?: string;
  /** Only these states and this conductor (taking over another conductor's unfinished allocations). */
  conductor_affinity?: string;
  sort_key?: string;
  sort_dir?: SortDir;
  marker?: string;
  limit?: number;
}

/** Columns a list may be sorted by: every column but the JSON ones (Ironic's invalid_sort_key_list). */
export const ALLOCATION_SORT_KEYS: ReadonlySet<string> = new Set(['id', 'uuid', 'name', 'node_uuid', 'state', 'owner',
  'last_error', 'resource_class', 'conductor_affinity', 'created_at', 'updated_at']);
export const ALLOCATION_UNSORTABLE: ReadonlySet<string> = new Set(['extra', 'candidate_nodes', 'traits']);

function fromRow(r: Row): AllocationRecord {
  return {
    id: Number(r.id), uuid: r.uuid as string, name: (r.name as string | null) ?? null,
    node_uuid: (r.node_uuid as string | null) ?? null, state: r.state as AllocationState,
    owner: (r.owner as string | null) ?? null, last_error: (r.last_error as string | null) ?? null,
    resource_class: (r.resource_class as string | null) ?? null,
    traits: JSON.parse(r.traits as string) as string[], candidate_nodes: JSON.parse(r.candidate_nodes as string) as string[],
    extra: JSON.parse(r.extra as string) as Json, conductor_affinity: (r.conductor_affinity as string | null) ?? null,
    created_at: r.created_at as string, updated_at: (r.updated_at as string | null) ?? null,
  };
}

export async function createAllocation(sql: SqlRunner, a: NewAllocation): Promise<AllocationRecord> {
  const rows = await sql.write(`INSERT INTO allocations (uuid, name, node_uuid, state, owner, last_error, resource_class,
    traits, candidate_nodes, extra, conductor_affinity, created_at, updated_at) VALUES (?, ?, NULL, 'allocating', ?, NULL, ?,
    ?, ?, ?, ?, ?, NULL) RETURNING *`, [a.uuid, a.name ?? null, a.owner ?? null, a.resource_class ?? null,
    JSON.stringify(a.traits ?? []), JSON.stringify(a.candidate_nodes ?? []), JSON.stringify(a.extra ?? {}),
    a.conductor_affinity ?? null, isoTime()]);
  return fromRow(rows[0] as Row);
}

export async function getAllocationByUuid(sql: SqlRunner, uuid: string): Promise<AllocationRecord | undefined> {
  const r = (await sql.read('SELECT * FROM allocations WHERE uuid = ?', [uuid]))[0];
  return r ? fromRow(r) : undefined;
}

export async function getAllocationByName(sql: SqlRunner, name: string): Promise<AllocationRecord | undefined> {
  const r = (await sql.read('SELECT * FROM allocations WHERE name = ?', [name]))[0];
  return r ? fromRow(r) : undefined;
}

export async function listAllocations(sql: SqlRunner, q: AllocationQuery): Promise<AllocationRecord[]> {
  const where: string[] = [];
  const args: unknown[] = [];
  for (const k of ['node_uuid', 'resource_class', 'state', 'owner', 'conductor_affinity'] as const) {
    const v = q[k];
    if (v !== undefined) { where.push(`${k} = ?`); args.push(v); }
  }
  const key = q.sort_key ?? 'id';
  if (!ALLOCATION_SORT_KEYS.has(key)) {
    throw new InvalidParameterValue(`The sort_key value ${key} is an invalid field for sorting`);
  }
  const dir = q.sort_dir === 'desc' ? 'DESC' : 'ASC';
  const cmp = dir === 'DESC' ? '<' : '>';
  const expr = sql.dialect.sortExpr(key, key === 'id' ? 'int' : 'text');
  if (q.marker !== undefined) {
    const m = (await sql.read(`SELECT id, ${expr} AS k FROM allocations WHERE uuid = ?`, [q.marker]))[0];
    if (!m) throw new NotFound(`Allocation ${q.marker} could not be found.`);
    if (key === 'id') { where.push(`id ${cmp} ?`); args.push(m.id); } else {
      where.push(`(${expr} ${cmp} ? OR (${expr} = ? AND id ${cmp} ?))`);
      args.push(m.k, m.k, m.id);
    }
  }
  const limit = q.limit !== undefined ? ` LIMIT ${Math.max(0, Math.floor(q.limit))}` : '';
  const text = `SELECT * FROM allocations${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ` +
    `ORDER BY ${expr} ${dir}${key === 'id' ? '' : `, id ${dir}`}${limit}`;
  return (await sql.read(text, args)).map(fromRow);
}

/** name/extra (PATCH, API 1.57). */
export async function updateAllocation(sql: SqlRunner, uuid: string, patch: { name?: string | null; extra?: Json }):
  Promise<AllocationRecord> {
  const sets: string[] = [];
  const args: unknown[] = [];
  if (patch.name !== undefined) { sets.push('name = ?'); args.push(patch.name); }
  if (patch.extra !== undefined) { sets.push('extra = ?'); args.push(JSON.stringify(patch.extra)); }
  sets.push('updated_at = ?');
  args.push(isoTime(), uuid);
  const r = (await sql.write(`UPDATE allocations SET ${sets.join(', ')} WHERE uuid = ? RETURNING *`, args))[0];
  if (!r) throw new NotFound(`Allocation ${uuid} could not be found.`);
  return fromRow(r);
}

/**
 * Gives `node` to the allocation, atomically: the node is taken only if it is still available, out of
 * maintenance, unreserved, of the resource class and bound to no instance or allocation, and the allocation only
 * if it is still allocating. False when either condition failed (another allocation won the node, or the
 * allocation was deleted meanwhile); nothing is changed then.
 */
export function claimNode(sql: SqlRunner, allocation: { uuid: string; resource_class: string | null }, nodeUuid: string):
  Promise<boolean> {
  const now = isoTime();
  return sql.atomic([
    { sql: `UPDATE nodes SET instance_uuid = ?, allocation_uuid = ?, updated_at = ?, version = version + 1
        WHERE uuid = ? AND instance_uuid IS NULL AND allocation_uuid IS NULL AND provision_state = 'available'
        AND maintenance = 0 AND reservation IS NULL AND resource_class = ?`,
      args: [allocation.uuid, allocation.uuid, now, nodeUuid, allocation.resource_class], required: true },
    { sql: `UPDATE allocations SET node_uuid = ?, state = 'active', last_error = NULL, updated_at = ?
        WHERE uuid = ? AND state = 'allocating'`, args: [nodeUuid, now, allocation.uuid], required: true },
  ]);
}

/**
 * Backfilling (API 1.58): binds an already deployed node to the allocation. The node may already carry the
 * allocation's UUID as instance_uuid (the usual case: the allocation takes the instance's UUID).
 */
export function backfillNode(sql: SqlRunner, allocationUuid: string, nodeUuid: string): Promise<boolean> {
  const now = isoTime();
  return sql.atomic([
    { sql: `UPDATE nodes SET instance_uuid = ?, allocation_uuid = ?, updated_at = ?, version = version + 1
        WHERE uuid = ? AND allocation_uuid IS NULL AND (instance_uuid IS NULL OR instance_uuid = ?)`,
      args: [allocationUuid, allocationUuid, now, nodeUuid, allocationUuid], required: true },
    { sql: `UPDATE allocations SET node_uuid = ?, state = 'active', last_error = NULL, updated_at = ? WHERE uuid = ?`,
      args: [nodeUuid, now, allocationUuid], required: true },
  ]);
}

/**
 * The allocation fails (state error, Ironic's last_error). Only an allocating one: a deleted one stays deleted and
 * one another worker finished meanwhile keeps its node.
 */
export async function failAllocation(sql: SqlRunner, uuid: string, error: string): Promise<void> {
  await sql.write(`UPDATE allocations SET node_uuid = NULL, state = 'error', last_error = ?, updated_at = ?
    WHERE uuid = ? AND state = 'allocating'`, [error, isoTime(), uuid]);
}

/** Moves an unfinished allocation from conductor `from` to `to`; false when another conductor took it first. */
export function takeOverAllocation(sql: SqlRunner, uuid: string, from: string | null, to: string): Promise<boolean> {
  return sql.atomic([{ sql: `UPDATE allocations SET conductor_affinity = ?, updated_at = ? WHERE uuid = ?
      AND state = 'allocating' AND ${from === null ? 'conductor_affinity IS NULL' : 'conductor_affinity = ?'}`,
  args: from === null ? [to, isoTime(), uuid] : [to, isoTime(), uuid, from], required: true }]);
}

/** Deletes the allocation and frees its node (instance_uuid, allocation_uuid) in one transaction, as Ironic. */
export async function destroyAllocation(sql: SqlRunner, uuid: string): Promise<boolean> {
  return sql.atomic([
    { sql: `UPDATE nodes SET instance_uuid = NULL, allocation_uuid = NULL, updated_at = ?, version = version + 1
        WHERE allocation_uuid = ?`, args: [isoTime(), uuid] },
    { sql: 'DELETE FROM allocations WHERE uuid = ?', args: [uuid], required: true },
  ]);
}
