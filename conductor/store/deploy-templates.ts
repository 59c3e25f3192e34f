/**
 * Deploy templates in the store (Ironic's deploy_templates + deploy_template_steps, here one row with the steps as
 * a JSON list: they are always read and written whole), for both databases on store.sql (sql-runner.ts).
 */
import { NotFound } from '../errors.js';
import { isoTime } from '../time.js';
import type { SqlRunner } from './sql-runner.js';
import type { Row } from './sqlite-rows.js';
import type { Json, SortDir } from './types.js';

export interface DeployTemplateStep {
  interface: string;
  step: string;
  args: Json;
  priority: number;
}

export interface DeployTemplateRecord {
  id: number;
  uuid: string;
  name: string;
  description: string | null;
  steps: DeployTemplateStep[];
  extra: Json;
  created_at: string;
  updated_at: string | null;
}

export type DeployTemplateFields = Pick<DeployTemplateRecord, 'name' | 'description' | 'steps' | 'extra'>;

export const DEPLOY_TEMPLATE_SORT_KEYS: ReadonlySet<string> = new Set(['id', 'uuid', 'name', 'description', 'created_at',
  'updated_at']);

function fromRow(r: Row): DeployTemplateRecord {
  return {
    id: Number(r.id), uuid: r.uuid as string, name: r.name as string, description: (r.description as string | null) ?? null,
    steps: JSON.parse(r.steps as string) as DeployTemplateStep[], extra: JSON.parse(r.extra as string) as Json,
    created_at: r.created_at as string, updated_at: (r.updated_at as string | null) ?? null,
  };
}

export async function createDeployTemplate(sql: SqlRunner, t: DeployTemplateFields & { uuid: string }):
  Promise<DeployTemplateRecord> {
  const rows = await sql.write(`INSERT INTO deploy_templates (uuid, name, description, steps, extra, created_at, updated_at)
    VALUES (?, ?, ?, ?, ?, ?, NULL) RETURNING *`, [t.uuid, t.name, t.description, JSON.stringify(t.steps),
    JSON.stringify(t.extra), isoTime()]);
  return fromRow(rows[0] as Row);
}

export async function getDeployTemplate(sql: SqlRunner, by: 'uuid' | 'name', value: string):
  Promise<DeployTemplateRecord | undefined> {
  const r = (await sql.read(`SELECT * FROM deploy_templates WHERE ${by === 'uuid' ? 'uuid' : 'name'} = ?`, [value]))[0];
  return r ? fromRow(r) : undefined;
}

/** Templates with one of these names (the node's instance traits), in id order as Ironic's list_by_names. */
export async function deployTemplatesByNames(sql: SqlRunner, names: readonly string[]): Promise<DeployTemplateRecord[]> {
  if (names.length === 0) return [];
  return (await sql.read(`SELECT * FROM deploy_templates WHERE name IN (${names.map(() => '?').join(',')}) ORDER BY id`,
    [...names])).map(fromRow);
}

export async function listDeployTemplates(sql: SqlRunner, q: { sort_key?: string; sort_dir?: SortDir; marker?: string;
  limit?: number }): Promise<DeployTemplateRecord[]> {
  const key = q.sort_key ?? 'id';
  const dir = q.sort_dir === 'desc' ? 'DESC' : 'ASC';
  const cmp = dir === 'DESC' ? '<' : '>';
  const expr = sql.dialect.sortExpr(key, key === 'id' ? 'int' : 'text');
  const where: string[] = [];
  const args: unknown[] = [];
  if (q.marker !== undefined) {
    const m = (await sql.read(`SELECT id, ${expr} AS k FROM deploy_templates WHERE uuid = ?`, [q.marker]))[0];
    if (!m) throw new NotFound(`Deploy template ${q.marker} could not be found.`);
    if (key === 'id') { where.push(`id ${cmp} ?`); args.push(m.id); } else {
      where.push(`(${expr} ${cmp} ? OR (${expr} = ? AND id ${cmp} ?))`);
      args.push(m.k, m.k, m.id);
    }
  }
  const limit = q.limit !== undefined ? ` LIMIT ${Math.max(0, Math.floor(q.limit))}` : '';
  return (await sql.read(`SELECT * FROM deploy_templates${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ` +
    `ORDER BY ${expr} ${dir}${key === 'id' ? '' : `, id ${dir}`}${limit}`, args)).map(fromRow);
}

export async function updateDeployTemplate(sql: SqlRunner, uuid: string, f: DeployTemplateFields):
  Promise<DeployTemplateRecord> {
  const r = (await sql.write(`UPDATE deploy_templates SET name = ?, description = ?, steps = ?, extra = ?, updated_at = ?
    WHERE uuid = ? RETURNING *`, [f.name, f.description, JSON.stringify(f.steps), JSON.stringify(f.extra), isoTime(), uuid]))[0];
  if (!r) throw new NotFound(`Deploy template ${uuid} could not be found.`);
  return fromRow(r);
}

export async function deleteDeployTemplate(sql: SqlRunner, uuid: string): Promise<boolean> {
  return sql.atomic([{ sql: 'DELETE FROM deploy_templates WHERE uuid = ?', args: [uuid], required: true }]);
}
