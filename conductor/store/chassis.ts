/**
 * Chassis rows on either store, through its SqlRunner. Deleting a chassis that still has nodes is one conditional
 * DELETE, so a node added concurrently can never be left naming a deleted chassis unnoticed.
 */
import { isoTime } from '../time.js';
import { insert, page, parseJson, update, type PageQuery, type Row, type SortColumns } from './resource-rows.js';
import type { SqlRunner } from './sql-runner.js';
import type { Json } from './types.js';

export interface ChassisRecord {
  id: number;
  uuid: string;
  description: string | null;
  extra: Json;
  created_at: string;
  updated_at: string | null;
}
export type ChassisFields = Pick<ChassisRecord, 'description' | 'extra'>;

const CHASSIS_JSON = ['extra'] as const;
const CHASSIS_SORT: SortColumns = {
  id: 'int', uuid: 'text', description: 'text', created_at: 'text', updated_at: 'text',
};

function chassisFromRow(r: Row): ChassisRecord {
  return { id: Number(r.id), uuid: r.uuid as string, description: (r.description as string | null) ?? null,
    extra: parseJson(r.extra), created_at: r.created_at as string, updated_at: (r.updated_at as string | null) ?? null };
}

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
