/**
 * Row plumbing shared by the chassis and portgroup stores (chassis.ts, portgroups.ts): JSON columns as text,
 * booleans as 0/1, INSERT/UPDATE ... RETURNING, and keyset pages after a marker row, as queries.ts does for nodes
 * and ports. Statements run through a store's SqlRunner, so the same SQL serves SQLite and PostgreSQL.
 */
import { InvalidParameterValue } from '../errors.js';
import { isoTime } from '../time.js';
import type { SqlRunner } from './sql-runner.js';
import type { Json, Row, SortDir } from './types.js';

export type { Row };


export interface PageQuery { sort_key?: string; sort_dir?: SortDir; marker?: string; limit?: number }

/** Sortable columns and whether they are text (JSON columns are refused, as Ironic does). */
export type SortColumns = Readonly<Record<string, 'text' | 'int'>>;

export function parseJson(v: unknown): Json {
  return typeof v === 'string' && v !== '{}' ? JSON.parse(v) as Json : {};
}

export function toDb(col: string, v: unknown, jsonCols: readonly string[]): unknown {
  if (jsonCols.includes(col)) return JSON.stringify(v ?? {});
  if (typeof v === 'boolean') return v ? 1 : 0;
  return v ?? null;
}

/** ORDER BY + keyset page after the marker row (ties broken by id), as the node and port lists do. */
export async function page(sql: SqlRunner, table: string, sortable: SortColumns, q: PageQuery,
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

export function insert(table: string, values: Row, jsonCols: readonly string[]): { text: string; args: unknown[] } {
  const cols = Object.keys(values);
  return { text: `INSERT INTO ${table} (${cols.join(',')}) VALUES (${cols.map(() => '?').join(',')}) RETURNING *`,
    args: cols.map((c) => toDb(c, values[c], jsonCols)) };
}

export function update(table: string, uuid: string, patch: Row, jsonCols: readonly string[]): { text: string; args: unknown[] } {
  const values: Row = { ...patch, updated_at: isoTime() };
  const cols = Object.keys(values).filter((c) => values[c] !== undefined && c !== 'id' && c !== 'uuid' && c !== 'created_at');
  return { text: `UPDATE ${table} SET ${cols.map((c) => `${c} = ?`).join(', ')} WHERE uuid = ? RETURNING *`,
    args: [...cols.map((c) => toDb(c, values[c], jsonCols)), uuid] };
}
