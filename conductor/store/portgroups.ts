/**
 * Chassis and portgroup rows on either store, through its SqlRunner (types.ts): the same statements for SQLite and
 * PostgreSQL. Deleting a chassis that still has nodes, or a portgroup that still has ports, is one conditional
 * DELETE, so a node or port added concurrently can never be left pointing at a deleted row's UUID unnoticed.
 */
import { InvalidParameterValue } from '../errors.js';
import { isoTime } from '../time.js';
import type { Json, SortDir, SqlRunner } from './types.js';

type Row = Record<string, unknown>;

export interface ChassisRecord {
  id: number;
  uuid: string;
  description: string | null;
  extra: Json;
  created_at: string;
  updated_at: string | null;
}
export type ChassisFields = Pick<ChassisRecord, 'description' | 'extra'>;

export interface PortgroupRecord {
  id: number;
  uuid: string;
  name: string | null;
  node_uuid: string;
  address: string | null;
  extra: Json;
  internal_info: Json;
  standalone_ports_supported: boolean;
  mode: string | null;
  properties: Json;
  created_at: string;
  updated_at: string | null;
}
export type PortgroupFields = Omit<PortgroupRecord, 'id' | 'uuid' | 'created_at' | 'updated_at'>;

export interface PageQuery { sort_key?: string; sort_dir?: SortDir; marker?: string; limit?: number }
export interface PortgroupQuery extends PageQuery { node_uuid?: string; address?: string }

const CHASSIS_JSON = ['extra'] as const;
const PORTGROUP_JSON = ['extra', 'internal_info', 'properties'] as const;
/** Sortable columns and whether they are text (JSON columns are refused, as Ironic does). */
const CHASSIS_SORT: Readonly<Record<string, 'text' | 'int'>> = {
  id: 'int', uuid: 'text', description: 'text', created_at: 'text', updated_at: 'text',
};
const PORTGROUP_SORT: Readonly<Record<string, 'text' | 'int'>> = {
  id: 'int', uuid: 'text', name: 'text', node_uuid: 'text', address: 'text', mode: 'text',
  standalone_ports_supported: 'int', created_at: 'text', updated_at: 'text',
};

function parseJson(v: unknown): Json {
  return typeof v === 'string' && v !== '{}' ? JSON.parse(v) as Json : {};
}

function chassisFromRow(r: Row): ChassisRecord {
  return { id: Number(r.id), uuid: r.uuid as string, description: (r.description as string | null) ?? null,
    extra: parseJson(r.extra), created_at: r.created_at as string, updated_at: (r.updated_at as string | null) ?? null };
}

function portgroupFromRow(r: Row): PortgroupRecord {
  return {
    id: Number(r.id), uuid: r.uuid as string, name: (r.name as string | null) ?? null, node_uuid: r.node_uuid as string,
    address: (r.address as string | null) ?? null, extra: parseJson(r.extra), internal_info: parseJson(r.internal_info),
    standalone_ports_supported: Number(r.standalone_ports_supported) === 1, mode: (r.mode as string | null) ?? null,
    properties: parseJson(r.properties), created_at: r.created_at as string, updated_at: (r.updated_at as string | null) ?? null,
  };
}

function toDb(col: string, v: unknown, jsonCols: readonly string[]): unknown {
  if (jsonCols.includes(col)) return JSON.stringify(v ?? {});
  if (typeof v === 'boolean') return v ? 1 : 0;
  return v ?? null;
}

/** ORDER BY + keyset page after the marker row (ties broken by id), as the node and port lists do. */
async function page(sql: SqlRunner, table: string, sortable: Readonly<Record<string, 'text' | 'int'>>, q: PageQuery,
  where: string[], args: unknown[], missing: (m: string) => Error): Promise<string> {
  const key = q.sort_key ?? 'id';
  const type = Object.hasOwn(sortable, key) ? sortable[key] : undefined;
  if (!type) throw new InvalidParameterValue(`The sort_key value "${key}" is an invalid field for sorting`);
  const expr = sql.dialect.sortExpr(key, type);
  const dir = q.sort_dir === 'desc' ? 'DESC' : 'ASC';
  const cmp = dir === 'DESC' ? '<' : '>';
  if (q.marker !== undefined) {
    const m = (await sql.read(`SELECT id, ${expr} AS k FROM ${table} WHERE uuid = ?`, [q.marker]))[0];
    if (!m) throw missing(q.marker);
    if (key === 'id') {
      where.push(`id ${cmp} ?`);
      args.push(m.id);
    } else {
      where.push(`(${expr} ${cmp} ? OR (${expr} = ? AND id ${cmp} ?))`);
      args.push(m.k, m.k, m.id);
    }
  }
  const limit = q.limit !== undefined ? ` LIMIT ${Math.max(0, Math.floor(q.limit))}` : '';
  return `${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY ${expr} ${dir}${key === 'id' ? '' : `, id ${dir}`}${limit}`;
}

function insert(table: string, values: Row, jsonCols: readonly string[]): { text: string; args: unknown[] } {
  const cols = Object.keys(values);
  return { text: `INSERT INTO ${table} (${cols.join(',')}) VALUES (${cols.map(() => '?').join(',')}) RETURNING *`,
    args: cols.map((c) => toDb(c, values[c], jsonCols)) };
}

function update(table: string, uuid: string, patch: Row, jsonCols: readonly string[]): { text: string; args: unknown[] } {
  const values: Row = { ...patch, updated_at: isoTime() };
  const cols = Object.keys(values).filter((c) => values[c] !== undefined && c !== 'id' && c !== 'uuid' && c !== 'created_at');
  return { text: `UPDATE ${table} SET ${cols.map((c) => `${c} = ?`).join(', ')} WHERE uuid = ? RETURNING *`,
    args: [...cols.map((c) => toDb(c, values[c], jsonCols)), uuid] };
}

// ---- chassis -------------------------------------------------------------------------------------------------

export async function createChassis(sql: SqlRunner, c: Partial<ChassisFields> & { uuid: string }): Promise<ChassisRecord> {
  const q = insert('chassis', { uuid: c.uuid, description: c.description ?? null, extra: c.extra ?? {},
    created_at: isoTime() }, CHASSIS_JSON);
  return chassisFromRow((await sql.write(q.text, q.args))[0] as Row);
}

export async function getChassis(sql: SqlRunner, uuid: string): Promise<ChassisRecord | undefined> {
  const r = (await sql.read('SELECT * FROM chassis WHERE uuid = ?', [uuid]))[0];
  return r ? chassisFromRow(r) : undefined;
}

export async function listChassis(sql: SqlRunner, q: PageQuery, missing: (m: string) => Error): Promise<ChassisRecord[]> {
  const args: unknown[] = [];
  const tail = await page(sql, 'chassis', CHASSIS_SORT, q, [], args, missing);
  return (await sql.read(`SELECT * FROM chassis${tail}`, args)).map(chassisFromRow);
}

export async function updateChassis(sql: SqlRunner, uuid: string, patch: Partial<ChassisFields>): Promise<ChassisRecord | undefined> {
  const q = update('chassis', uuid, patch, CHASSIS_JSON);
  const r = (await sql.write(q.text, q.args))[0];
  return r ? chassisFromRow(r) : undefined;
}

/** 'not-empty' while any node names the chassis (checked in the same statement as the delete). */
export async function deleteChassis(sql: SqlRunner, uuid: string): Promise<'deleted' | 'not-empty' | 'missing'> {
  const gone = await sql.write('DELETE FROM chassis WHERE uuid = ? AND NOT EXISTS (SELECT 1 FROM nodes WHERE chassis_uuid = ?) ' +
    'RETURNING id', [uuid, uuid]);
  if (gone.length) return 'deleted';
  return (await getChassis(sql, uuid)) ? 'not-empty' : 'missing';
}

// ---- portgroups ----------------------------------------------------------------------------------------------

export async function createPortgroup(sql: SqlRunner, pg: Partial<PortgroupFields> & { uuid: string; node_uuid: string }):
  Promise<PortgroupRecord> {
  const q = insert('portgroups', { uuid: pg.uuid, name: pg.name ?? null, node_uuid: pg.node_uuid,
    address: pg.address ?? null, extra: pg.extra ?? {}, internal_info: pg.internal_info ?? {},
    standalone_ports_supported: pg.standalone_ports_supported ?? true, mode: pg.mode ?? null,
    properties: pg.properties ?? {}, created_at: isoTime() }, PORTGROUP_JSON);
  return portgroupFromRow((await sql.write(q.text, q.args))[0] as Row);
}

export async function getPortgroup(sql: SqlRunner, by: 'uuid' | 'name' | 'address', value: string):
  Promise<PortgroupRecord | undefined> {
  const r = (await sql.read(`SELECT * FROM portgroups WHERE ${by} = ?`, [value]))[0];
  return r ? portgroupFromRow(r) : undefined;
}

export async function listPortgroups(sql: SqlRunner, q: PortgroupQuery, missing: (m: string) => Error):
  Promise<PortgroupRecord[]> {
  const where: string[] = [];
  const args: unknown[] = [];
  if (q.node_uuid !== undefined) { where.push('node_uuid = ?'); args.push(q.node_uuid); }
  if (q.address !== undefined) { where.push('address = ?'); args.push(q.address.toLowerCase()); }
  const tail = await page(sql, 'portgroups', PORTGROUP_SORT, q, where, args, missing);
  return (await sql.read(`SELECT * FROM portgroups${tail}`, args)).map(portgroupFromRow);
}

export async function updatePortgroup(sql: SqlRunner, uuid: string, patch: Partial<PortgroupFields>):
  Promise<PortgroupRecord | undefined> {
  const q = update('portgroups', uuid, patch, PORTGROUP_JSON);
  const r = (await sql.write(q.text, q.args))[0];
  return r ? portgroupFromRow(r) : undefined;
}

/** 'not-empty' while any port is a member (checked in the same statement as the delete). */
export async function deletePortgroup(sql: SqlRunner, uuid: string): Promise<'deleted' | 'not-empty' | 'missing'> {
  const gone = await sql.write('DELETE FROM portgroups WHERE uuid = ? AND NOT EXISTS ' +
    '(SELECT 1 FROM ports WHERE portgroup_uuid = ?) RETURNING id', [uuid, uuid]);
  if (gone.length) return 'deleted';
  return (await getPortgroup(sql, 'uuid', uuid)) ? 'not-empty' : 'missing';
}

export async function countPortgroupPorts(sql: SqlRunner, uuid: string): Promise<number> {
  const r = (await sql.read('SELECT COUNT(*) AS c FROM ports WHERE portgroup_uuid = ?', [uuid]))[0];
  return Number(r?.c ?? 0);
}
