/**
 * The BIOS settings cache (Ironic's bios_settings table): one row per node and setting name, written by the
 * node's bios interface (cache_bios_settings, apply_configuration, factory_reset) and read by
 * GET /v1/nodes/{node}/bios. One implementation over a tiny SQL runner, so SQLite and PostgreSQL share the
 * statements (placeholders are `?`; the PostgreSQL store renumbers them). Rows go with their node (ON DELETE
 * CASCADE, migration 30).
 */
import { isoTime } from '../time.js';
import type { SqlRunner } from './sql-runner.js';
import type { Row } from './sqlite-rows.js';
import type { Store } from './types.js';

/** Ironic's registry fields of a setting (API 1.74), null when the BMC has no attribute registry. */
export const BIOS_REGISTRY_FIELDS = ['attribute_type', 'allowable_values', 'lower_bound', 'max_length', 'min_length',
  'read_only', 'reset_required', 'unique', 'upper_bound'] as const;

export interface BiosSettingInput {
  name: string;
  /** Ironic keeps values as strings (an int or bool from Redfish is stored as its Python str()). */
  value: string | null;
  attribute_type?: string | null;
  allowable_values?: string[] | null;
  lower_bound?: number | null;
  max_length?: number | null;
  min_length?: number | null;
  read_only?: boolean | null;
  reset_required?: boolean | null;
  unique?: boolean | null;
  upper_bound?: number | null;
}

export interface BiosSettingRecord extends Required<BiosSettingInput> {
  node_uuid: string;
  created_at: string;
  updated_at: string | null;
}

export interface BiosSyncResult { created: string[]; updated: string[]; deleted: string[]; unchanged: string[] }

export interface BiosSettingsStore {
  list(nodeUuid: string): Promise<BiosSettingRecord[]>;
  get(nodeUuid: string, name: string): Promise<BiosSettingRecord | undefined>;
  /**
   * Makes the node's cached settings exactly `settings` (Ironic's sync_node_setting + create/save/delete):
   * new names are created, changed ones updated (updated_at set), names not given deleted.
   */
  sync(nodeUuid: string, settings: readonly BiosSettingInput[]): Promise<BiosSyncResult>;
  /** Updates (or creates) only the given settings, leaving the others. */
  upsert(nodeUuid: string, settings: readonly BiosSettingInput[]): Promise<void>;
  deleteAll(nodeUuid: string): Promise<void>;
}

export const BIOS_SETTINGS_DDL = `
CREATE TABLE bios_settings (
  node_uuid TEXT NOT NULL REFERENCES nodes(uuid) ON DELETE CASCADE,
  name TEXT NOT NULL,
  value TEXT,
  attribute_type TEXT,
  allowable_values TEXT,
  lower_bound INTEGER,
  max_length INTEGER,
  min_length INTEGER,
  read_only INTEGER,
  reset_required INTEGER,
  "unique" INTEGER,
  upper_bound INTEGER,
  created_at TEXT NOT NULL,
  updated_at TEXT,
  PRIMARY KEY (node_uuid, name)
);
`;

const COLS = ['value', 'attribute_type', 'allowable_values', 'lower_bound', 'max_length', 'min_length', 'read_only',
  'reset_required', 'unique', 'upper_bound'] as const;
const BOOL_COLS = new Set(['read_only', 'reset_required', 'unique']);
const q = (c: string): string => (c === 'unique' ? '"unique"' : c);

function dbValue(col: (typeof COLS)[number], s: BiosSettingInput): unknown {
  const v = s[col];
  if (v === undefined || v === null) return null;
  if (col === 'allowable_values') return JSON.stringify(v);
  if (BOOL_COLS.has(col)) return v ? 1 : 0;
  return v;
}

function fromRow(r: Row): BiosSettingRecord {
  const bool = (v: unknown): boolean | null => (v === null || v === undefined ? null : Number(v) === 1);
  const num = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));
  return {
    node_uuid: r.node_uuid as string, name: r.name as string, value: (r.value as string | null) ?? null,
    attribute_type: (r.attribute_type as string | null) ?? null,
    allowable_values: typeof r.allowable_values === 'string' ? JSON.parse(r.allowable_values) as string[] : null,
    lower_bound: num(r.lower_bound), max_length: num(r.max_length), min_length: num(r.min_length),
    read_only: bool(r.read_only), reset_required: bool(r.reset_required), unique: bool(r.unique),
    upper_bound: num(r.upper_bound), created_at: r.created_at as string, updated_at: (r.updated_at as string | null) ?? null,
  };
}

function same(row: BiosSettingRecord, s: BiosSettingInput): boolean {
  return COLS.every((c) => {
    const want = dbValue(c, s);
    const have = dbValue(c, row);
    return want === have;
  });
}

export class SqlBiosSettings implements BiosSettingsStore {
  constructor(private readonly sql: SqlRunner) {}

  async list(nodeUuid: string): Promise<BiosSettingRecord[]> {
    return (await this.sql.read('SELECT * FROM bios_settings WHERE node_uuid = ? ORDER BY name', [nodeUuid])).map(fromRow);
  }

  async get(nodeUuid: string, name: string): Promise<BiosSettingRecord | undefined> {
    const r = (await this.sql.read('SELECT * FROM bios_settings WHERE node_uuid = ? AND name = ?', [nodeUuid, name]))[0];
    return r ? fromRow(r) : undefined;
  }

  private insert(nodeUuid: string, s: BiosSettingInput, now: string): { sql: string; args: unknown[] } {
    return {
      sql: `INSERT INTO bios_settings (node_uuid, name, ${COLS.map(q).join(', ')}, created_at, updated_at)
        VALUES (?, ?, ${COLS.map(() => '?').join(', ')}, ?, NULL)`,
      args: [nodeUuid, s.name, ...COLS.map((c) => dbValue(c, s)), now],
    };
  }

  private update(nodeUuid: string, s: BiosSettingInput, now: string): { sql: string; args: unknown[] } {
    return {
      sql: `UPDATE bios_settings SET ${COLS.map((c) => `${q(c)} = ?`).join(', ')}, updated_at = ? WHERE node_uuid = ? AND name = ?`,
      args: [...COLS.map((c) => dbValue(c, s)), now, nodeUuid, s.name],
    };
  }

  async sync(nodeUuid: string, settings: readonly BiosSettingInput[]): Promise<BiosSyncResult> {
    const current = new Map((await this.list(nodeUuid)).map((r) => [r.name, r]));
    const given = new Map(settings.map((s) => [s.name, s]));
    const out: BiosSyncResult = { created: [], updated: [], deleted: [], unchanged: [] };
    const stmts: { sql: string; args: unknown[] }[] = [];
    const now = isoTime();
    for (const s of given.values()) {
      const row = current.get(s.name);
      if (!row) { out.created.push(s.name); stmts.push(this.insert(nodeUuid, s, now)); }
      else if (!same(row, s)) { out.updated.push(s.name); stmts.push(this.update(nodeUuid, s, now)); }
      else out.unchanged.push(s.name);
    }
    for (const name of current.keys()) {
      if (given.has(name)) continue;
      out.deleted.push(name);
      stmts.push({ sql: 'DELETE FROM bios_settings WHERE node_uuid = ? AND name = ?', args: [nodeUuid, name] });
    }
    if (stmts.length) await this.sql.atomic(stmts);
    return out;
  }

  async upsert(nodeUuid: string, settings: readonly BiosSettingInput[]): Promise<void> {
    const current = new Map((await this.list(nodeUuid)).map((r) => [r.name, r]));
    const now = isoTime();
    const stmts = settings.filter((s) => { const r = current.get(s.name); return !r || !same(r, s); })
      .map((s) => (current.has(s.name) ? this.update(nodeUuid, s, now) : this.insert(nodeUuid, s, now)));
    if (stmts.length) await this.sql.atomic(stmts);
  }

  async deleteAll(nodeUuid: string): Promise<void> {
    await this.sql.write('DELETE FROM bios_settings WHERE node_uuid = ?', [nodeUuid]);
  }
}

const cache = new WeakMap<Store, BiosSettingsStore>();
/** The settings cache of a store (over its SqlRunner; one instance per store). */
export function biosSettings(store: Store): BiosSettingsStore {
  let b = cache.get(store);
  if (!b) {
    b = new SqlBiosSettings(store.sql);
    cache.set(store, b);
  }
  return b;
}
