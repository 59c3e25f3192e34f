/**
 * Portgroup rows on either store, through its SqlRunner. Deleting a portgroup that still has ports is one conditional
 * DELETE, so a port joining concurrently can never be left naming a deleted portgroup unnoticed.
 */
import { isoTime } from '../time.js';
import { insert, page, parseJson, update, type PageQuery, type Row, type SortColumns } from './resource-rows.js';
import type { SqlRunner } from './sql-runner.js';
import type { Json } from './types.js';

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

export interface PortgroupQuery extends PageQuery { node_uuid?: string; address?: string }

const PORTGROUP_JSON = ['extra', 'internal_info', 'properties'] as const;
const PORTGROUP_SORT: SortColumns = {
  id: 'int', uuid: 'text', name: 'text', node_uuid: 'text', address: 'text', mode: 'text',
  standalone_ports_supported: 'int', created_at: 'text', updated_at: 'text',
};


function portgroupFromRow(r: Row): PortgroupRecord {
  return {
    id: Number(r.id), uuid: r.uuid as string, name: (r.name as string | null) ?? null, node_uuid: r.node_uuid as string,
    address: (r.address as string | null) ?? null, extra: parseJson(r.extra), internal_info: parseJson(r.internal_info),
    standalone_ports_supported: Number(r.standalone_ports_supported) === 1, mode: (r.mode as string | null) ?? null,
    properties: parseJson(r.properties), created_at: r.created_at as string, updated_at: (r.updated_at as string | null) ?? null,
  };
}

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
