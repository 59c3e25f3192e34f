/**
 * Node and port list queries (filters, order, keyset pages), built once for both stores. They bind `?`
 * placeholders (the PostgreSQL store renumbers them, dialect.ts) and take the marker row already looked up,
 * since SQLite reads it synchronously and PostgreSQL does not.
 */
import { InvalidParameterValue } from '../errors.js';
import type { Dialect } from './dialect.js';
import { NODE_COLS, NODE_SORT_KEYS, PORT_COLS, PORT_SORT_KEYS } from './sqlite-rows.js';
import type { NodeQuery, PortQuery, SortDir } from './types.js';

export interface PageQuery { sort_key?: string; sort_dir?: SortDir; marker?: string; limit?: number }
/** The marker row's id and sort value. */
export interface MarkerRow { id: number; k: unknown }
export interface BuiltQuery { sql: string; args: unknown[] }

function ownOnly<T extends object>(o: T): T {
  return Object.assign(Object.create(null) as T, o);
}

function sortKey(table: 'nodes' | 'ports', q: PageQuery): string {
  const key = q.sort_key ?? 'id';
  const keys = table === 'nodes' ? NODE_SORT_KEYS : PORT_SORT_KEYS;
  if (!keys.has(key)) throw new InvalidParameterValue(`The sort_key value "${key}" is an invalid field for sorting`);
  return key;
}

function sortExpr(d: Dialect, table: 'nodes' | 'ports', key: string): string {
  const type = (table === 'nodes' ? NODE_COLS : PORT_COLS)[key];
  return d.sortExpr(key, type === 'text' ? 'text' : 'int');
}

/** The statement reading the marker row ({id, k}) for `q`, or undefined when the query has no marker. */
export function markerQuery(d: Dialect, table: 'nodes' | 'ports', query: PageQuery): BuiltQuery | undefined {
  const q = ownOnly(query);
  if (q.marker === undefined) return undefined;
  const expr = sortExpr(d, table, sortKey(table, q));
  return { sql: `SELECT id, ${expr} AS k FROM ${table} WHERE uuid = ?`, args: [q.marker] };
}

export function missingMarker(marker: string | undefined): InvalidParameterValue {
  return new InvalidParameterValue(`Marker ${String(marker)} could not be found.`);
}

/** ORDER BY + keyset pagination after the marker row; ties broken by id so pages never overlap. */
function pageClause(d: Dialect, table: 'nodes' | 'ports', q: PageQuery, marker: MarkerRow | undefined,
  where: string[], args: unknown[]): string {
  const key = sortKey(table, q);
  const dir = q.sort_dir === 'desc' ? 'DESC' : 'ASC';
  const cmp = dir === 'DESC' ? '<' : '>';
  const expr = sortExpr(d, table, key);
  if (q.marker !== undefined) {
    if (!marker) throw missingMarker(q.marker);
    if (key === 'id') {
      where.push(`id ${cmp} ?`);
      args.push(marker.id);
    } else {
      where.push(`(${expr} ${cmp} ? OR (${expr} = ? AND id ${cmp} ?))`);
      args.push(marker.k, marker.k, marker.id);
    }
  }
  const limit = q.limit !== undefined ? ` LIMIT ${Math.max(0, Math.floor(q.limit))}` : '';
  return `ORDER BY ${expr} ${dir}${key === 'id' ? '' : `, id ${dir}`}${limit}`;
}

function inList(col: string, values: readonly unknown[], where: string[], args: unknown[]): void {
  if (values.length === 0) { where.push('1 = 0'); return; }
  where.push(`${col} IN (${values.map(() => '?').join(',')})`);
  args.push(...values);
}

export function nodeListQuery(d: Dialect, query: NodeQuery, select: string, marker: MarkerRow | undefined): BuiltQuery {
  // Own properties only: a filter the caller did not set must not come from Object.prototype (bound values
  // that are not strings or numbers make every list throw).
  const q = ownOnly(query);
  const where: string[] = [];
  const args: unknown[] = [];
  const eq = (col: string, v: unknown): void => { where.push(`${col} = ?`); args.push(v); };
  if (q.associated !== undefined) where.push(`instance_uuid IS ${q.associated ? 'NOT ' : ''}NULL`);
  if (q.maintenance !== undefined) eq('maintenance', q.maintenance ? 1 : 0);
  if (q.retired !== undefined) eq('retired', q.retired ? 1 : 0);
  if (q.reserved !== undefined) where.push(`reservation IS ${q.reserved ? 'NOT ' : ''}NULL`);
  if (q.fault !== undefined) eq('fault', q.fault);
  if (q.provision_state?.length) inList('provision_state', q.provision_state, where, args);
  if (q.driver !== undefined) eq('driver', q.driver);
  if (q.resource_class !== undefined) eq('resource_class', q.resource_class);
  if (q.chassis_uuid !== undefined) eq('chassis_uuid', q.chassis_uuid);
  if (q.conductor_group !== undefined) eq('lower(conductor_group)', q.conductor_group.toLowerCase());
  if (q.owner !== undefined) eq('owner', q.owner);
  if (q.lessee !== undefined) eq('lessee', q.lessee);
  if (q.project !== undefined) { where.push('(owner = ? OR lessee = ?)'); args.push(q.project, q.project); }
  if (q.instance_uuid !== undefined) eq('instance_uuid', q.instance_uuid);
  if (q.description_contains !== undefined) { where.push(d.contains('description')); args.push(q.description_contains); }
  if (q.shard?.length) inList('shard', q.shard, where, args);
  if (q.sharded !== undefined) where.push(`shard IS ${q.sharded ? 'NOT ' : ''}NULL`);
  if (q.provision_updated_before !== undefined) { where.push('provision_updated_at < ?'); args.push(q.provision_updated_before); }
  const order = pageClause(d, 'nodes', q, marker, where, args);
  const sql = `SELECT ${select} FROM nodes${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ${order}`;
  return { sql, args };
}

export function portListQuery(d: Dialect, query: PortQuery, marker: MarkerRow | undefined): BuiltQuery {
  const q = ownOnly(query);
  const where: string[] = [];
  const args: unknown[] = [];
  if (q.node_uuid !== undefined) { where.push('node_uuid = ?'); args.push(q.node_uuid); }
  if (q.address !== undefined) { where.push('address = ?'); args.push(q.address.toLowerCase()); }
  if (q.portgroup_uuid !== undefined) { where.push('portgroup_uuid = ?'); args.push(q.portgroup_uuid); }
  if (q.node_shards !== undefined) {
    if (q.node_shards.length === 0) where.push('1 = 0');
    else {
      where.push(`node_uuid IN (SELECT uuid FROM nodes WHERE shard IN (${q.node_shards.map(() => '?').join(',')}))`);
      args.push(...q.node_shards);
    }
  }
  const order = pageClause(d, 'ports', q, marker, where, args);
  const sql = `SELECT * FROM ports${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ${order}`;
  return { sql, args };
}
