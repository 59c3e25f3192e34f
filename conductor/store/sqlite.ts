/**
 * The embedded store: better-sqlite3 in WAL mode, prepared statements cached per column set, every write in a
 * transaction. Synchronous underneath; the async Store surface is for the PostgreSQL implementation to come.
 */
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { MIGRATIONS } from './migrations.js';
import { GroupCommit } from './group-commit.js';
import { nodeJsonExpr, registerMaskFunction } from './sqlite-json.js';
import {
  DuplicateError, INTERFACE_FIELDS, JSON_FIELDS, JsonObjectSchema, TraitsSchema,
  type ConductorRecord, type HistoryRecord, type NewHistory, type NewNode, type NewPort, type NodeQuery,
  type NodeJsonList, type NodeJsonRow, type NodeJsonSpec, type NodeRecord, type NodeUpdate, type PortFields, type PortQuery, type PortRecord, type ReserveResult, type Store,
} from './types.js';
import { InvalidParameterValue, NotFound } from '../errors.js';
import { isoTime } from '../time.js';

type ColType = 'text' | 'bool' | 'json' | 'traits' | 'int';
type Row = Record<string, unknown>;

const NODE_COLS: Record<string, ColType> = {
  id: 'int', uuid: 'text', name: 'text', created_at: 'text', updated_at: 'text', driver: 'text',
  instance_uuid: 'text', chassis_uuid: 'text', power_state: 'text', target_power_state: 'text',
  provision_state: 'text', target_provision_state: 'text', provision_updated_at: 'text', last_error: 'text',
  maintenance: 'bool', maintenance_reason: 'text', fault: 'text', reservation: 'text', console_enabled: 'bool',
  inspection_started_at: 'text', inspection_finished_at: 'text', resource_class: 'text', traits: 'traits',
  conductor_group: 'text', allocation_uuid: 'text', automated_clean: 'bool', protected: 'bool',
  protected_reason: 'text', owner: 'text', lessee: 'text', description: 'text', retired: 'bool',
  retired_reason: 'text', boot_mode: 'text', secure_boot: 'bool', shard: 'text',
  ...Object.fromEntries(INTERFACE_FIELDS.map((f) => [f, 'text' as const])),
  ...Object.fromEntries(JSON_FIELDS.map((f) => [f, 'json' as const])),
};
const PORT_COLS: Record<string, ColType> = {
  id: 'int', uuid: 'text', address: 'text', node_uuid: 'text', extra: 'json', internal_info: 'json',
  local_link_connection: 'json', pxe_enabled: 'bool', physical_network: 'text', portgroup_uuid: 'text',
  is_smartnic: 'bool', created_at: 'text', updated_at: 'text',
};
const NODE_COL_NAMES = Object.keys(NODE_COLS);
const NODE_JSON_COLS = NODE_COL_NAMES.filter((c) => NODE_COLS[c] === 'json' || NODE_COLS[c] === 'traits');
const NODE_BOOL_COLS = NODE_COL_NAMES.filter((c) => NODE_COLS[c] === 'bool');

/** Columns a list may be sorted by (JSON columns are refused, as Ironic does). */
export const NODE_SORT_KEYS: ReadonlySet<string> = new Set(NODE_COL_NAMES.filter((c) => NODE_COLS[c] !== 'json' &&
  NODE_COLS[c] !== 'traits'));
export const PORT_SORT_KEYS: ReadonlySet<string> = new Set(['id', 'uuid', 'address', 'node_uuid', 'pxe_enabled',
  'physical_network', 'created_at', 'updated_at']);

function toDb(col: string, type: ColType | undefined, v: unknown): unknown {
  if (type === undefined) throw new InvalidParameterValue(`Unknown attribute: ${col}`);
  if (v === undefined || v === null) {
    if (type === 'json') return '{}';
    if (type === 'traits') return '[]';
    return null;
  }
  switch (type) {
    case 'bool': return v ? 1 : 0;
    case 'json': {
      // A plain object needs no schema pass (the hot path); zod decides the rest, as it always did.
      const proto = typeof v === 'object' ? Object.getPrototypeOf(v) as unknown : undefined;
      if ((proto === Object.prototype || proto === null) && !Object.hasOwn(v as object, '__proto__')) return JSON.stringify(v);
      const r = JsonObjectSchema.safeParse(v);
      if (!r.success) throw new InvalidParameterValue(`Field "${col}" must be a JSON object.`);
      return JSON.stringify(r.data);
    }
    case 'traits': {
      const r = TraitsSchema.safeParse(v);
      if (!r.success) throw new InvalidParameterValue(`Field "${col}" must be a list of strings.`);
      return JSON.stringify(r.data);
    }
    default:
      if (typeof v === 'object') throw new InvalidParameterValue(`Field "${col}" must be a scalar.`);
      return v;
  }
}

/** JSON column text to a value; most columns hold an empty object, which needs no parser. */
function parseJsonCol(text: string): unknown {
  return text === '{}' ? {} : text === '[]' ? [] : JSON.parse(text);
}

function nodeFromRow(row: Row): NodeRecord {
  for (const c of NODE_JSON_COLS) row[c] = parseJsonCol(row[c] as string);
  for (const c of NODE_BOOL_COLS) if (row[c] !== null) row[c] = row[c] === 1;
  return row as unknown as NodeRecord;
}

function portFromRow(row: Row): PortRecord {
  row.extra = parseJsonCol(row.extra as string);
  row.internal_info = parseJsonCol(row.internal_info as string);
  row.local_link_connection = parseJsonCol(row.local_link_connection as string);
  row.pxe_enabled = row.pxe_enabled === 1;
  row.is_smartnic = row.is_smartnic === 1;
  return row as unknown as PortRecord;
}

function uniqueViolation(e: unknown): string | undefined {
  const msg = (e as { code?: string; message?: string });
  if (msg.code !== 'SQLITE_CONSTRAINT_UNIQUE') return undefined;
  const m = /UNIQUE constraint failed: \w+\.(\w+)/.exec(msg.message ?? '');
  return m?.[1] ?? 'unknown';
}

export interface SqliteOptions {
  /** Path to the database file, or ':memory:'. */
  file: string;
}

export class SqliteStore implements Store {
  readonly kind = 'sqlite';
  readonly db: Database.Database;
  private readonly stmts = new Map<string, Database.Statement>();
  /** Maskers of the listNodesJson statement running right now (read by the bm_mask SQL function). */
  private maskers: NodeJsonSpec['maskers'];
  /** Every write goes through here (one transaction per event-loop turn). */
  private readonly writes: GroupCommit;

  constructor(opts: SqliteOptions) {
    this.db = new Database(opts.file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 5000');
    this.migrate();
    registerMaskFunction(this.db, () => this.maskers);
    this.writes = new GroupCommit(this.db);
  }

  static open(dataDir: string, fileName = 'conductor.sqlite'): SqliteStore {
    if (fileName === ':memory:') return new SqliteStore({ file: ':memory:' });
    mkdirSync(dataDir, { recursive: true });
    return new SqliteStore({ file: join(dataDir, fileName) });
  }

  private migrate(): void {
    this.db.exec('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)');
    const row = this.db.prepare('SELECT MAX(version) AS v FROM schema_version').get() as { v: number | null };
    const current = row.v ?? 0;
    for (const m of MIGRATIONS) {
      if (m.version <= current) continue;
      this.db.transaction(() => {
        this.db.exec(m.sql);
        this.db.prepare('INSERT INTO schema_version (version) VALUES (?)').run(m.version);
      })();
    }
  }

  /** Prepared once per SQL text; the cache is bounded because list filters make the text vary. */
  private stmt(sql: string, raw = false): Database.Statement {
    const key = raw ? `raw:${sql}` : sql;
    let s = this.stmts.get(key);
    if (!s) {
      s = this.db.prepare(sql);
      if (raw) s.raw(true);
      if (this.stmts.size >= 500) this.stmts.delete(this.stmts.keys().next().value as string);
      this.stmts.set(key, s);
    }
    return s;
  }

  private rawStmt(sql: string): Database.Statement {
    return this.stmt(sql, true);
  }

  async close(): Promise<void> {
    this.writes.flush();
    this.db.close();
  }

  // ---- nodes ------------------------------------------------------------------------------------------------

  async createNode(node: NewNode): Promise<NodeRecord> {
    const now = isoTime();
    const values: Row = { ...node, created_at: now, updated_at: null };
    for (const c of NODE_JSON_COLS) if (!(c in values)) values[c] = undefined;
    const cols = Object.keys(values).filter((c) => c !== 'id');
    const params = cols.map((c) => toDb(c, NODE_COLS[c], values[c]));
    const sql = `INSERT INTO nodes (${cols.join(',')}) VALUES (${cols.map(() => '?').join(',')}) RETURNING *`;
    return this.writes.run(() => {
      try {
        return nodeFromRow(this.stmt(sql).get(...params) as Row);
      } catch (e) {
        const field = uniqueViolation(e);
        if (field) throw new DuplicateError(field, String(values[field]));
        throw e;
      }
    });
  }

  async getNodeByUuid(uuid: string): Promise<NodeRecord | undefined> {
    const row = this.stmt('SELECT * FROM nodes WHERE uuid = ?').get(uuid) as Row | undefined;
    return row ? nodeFromRow(row) : undefined;
  }

  async getNodeByName(name: string): Promise<NodeRecord | undefined> {
    const row = this.stmt('SELECT * FROM nodes WHERE name = ?').get(name) as Row | undefined;
    return row ? nodeFromRow(row) : undefined;
  }

  async getNodeByInstanceUuid(uuid: string): Promise<NodeRecord | undefined> {
    const row = this.stmt('SELECT * FROM nodes WHERE instance_uuid = ?').get(uuid) as Row | undefined;
    return row ? nodeFromRow(row) : undefined;
  }

  async getNodeByMacs(macs: readonly string[]): Promise<NodeRecord | undefined> {
    if (macs.length === 0) return undefined;
    const sql = `SELECT n.* FROM nodes n JOIN ports p ON p.node_uuid = n.uuid WHERE p.address IN ` +
      `(${macs.map(() => '?').join(',')}) LIMIT 1`;
    const row = this.stmt(sql).get(...macs) as Row | undefined;
    return row ? nodeFromRow(row) : undefined;
  }

  async countNodes(): Promise<number> {
    return (this.stmt('SELECT COUNT(*) AS c FROM nodes').get() as { c: number }).c;
  }

  async listNodes(q: NodeQuery): Promise<NodeRecord[]> {
    const { sql, args } = this.nodeListQuery(q);
    return (this.stmt(sql).all(...args) as Row[]).map(nodeFromRow);
  }

  async listNodesJson(q: NodeQuery, spec: NodeJsonSpec): Promise<NodeJsonRow[]> {
    const item = nodeJsonExpr(spec);
    const { sql, args } = this.nodeListQuery(q, `${item.sql}, uuid, driver, conductor_group`);
    const rows = this.withMaskers(spec, () => this.rawStmt(sql).all(...item.params, ...args)) as string[][];
    return rows.map((r) => ({ json: r[0] as string, uuid: r[1] as string, driver: r[2] as string,
      conductor_group: r[3] as string }));
  }

  async renderNodeList(q: NodeQuery, spec: NodeJsonSpec): Promise<NodeJsonList> {
    const item = nodeJsonExpr(spec);
    const inner = this.nodeListQuery(q, `${item.sql} AS j, uuid AS u`);
    // The subquery (ORDER BY + LIMIT) is not flattened into the aggregate: it runs as a co-routine whose rows
    // group_concat takes in order (asking for that order again in the aggregate would re-sort the big rows).
    const sql = `SELECT CAST(group_concat(j, ',') AS BLOB), count(*), group_concat(u, ',') FROM (${inner.sql})`;
    const row = this.withMaskers(spec, () => this.rawStmt(sql).get(...item.params, ...inner.args)) as
      [Buffer | null, number, string | null];
    const uuids = row[2];
    return { items: row[0] ?? Buffer.alloc(0), count: row[1],
      ...(uuids ? { lastUuid: uuids.slice(uuids.lastIndexOf(',') + 1) } : {}) };
  }

  private withMaskers<T>(spec: NodeJsonSpec, fn: () => T): T {
    this.maskers = spec.maskers;
    try {
      return fn();
    } finally {
      this.maskers = undefined;
    }
  }

  private nodeListQuery(q: NodeQuery, select = '*'): { sql: string; args: unknown[] } {
    const where: string[] = [];
    const args: unknown[] = [];
    const eq = (col: string, v: unknown): void => { where.push(`${col} = ?`); args.push(v); };
    if (q.associated !== undefined) where.push(`instance_uuid IS ${q.associated ? 'NOT ' : ''}NULL`);
    if (q.maintenance !== undefined) eq('maintenance', q.maintenance ? 1 : 0);
    if (q.retired !== undefined) eq('retired', q.retired ? 1 : 0);
    if (q.reserved !== undefined) where.push(`reservation IS ${q.reserved ? 'NOT ' : ''}NULL`);
    if (q.fault !== undefined) eq('fault', q.fault);
    if (q.provision_state?.length) {
      where.push(`provision_state IN (${q.provision_state.map(() => '?').join(',')})`);
      args.push(...q.provision_state);
    }
    if (q.driver !== undefined) eq('driver', q.driver);
    if (q.resource_class !== undefined) eq('resource_class', q.resource_class);
    if (q.chassis_uuid !== undefined) eq('chassis_uuid', q.chassis_uuid);
    if (q.conductor_group !== undefined) eq('lower(conductor_group)', q.conductor_group.toLowerCase());
    if (q.owner !== undefined) eq('owner', q.owner);
    if (q.lessee !== undefined) eq('lessee', q.lessee);
    if (q.project !== undefined) { where.push('(owner = ? OR lessee = ?)'); args.push(q.project, q.project); }
    if (q.instance_uuid !== undefined) eq('instance_uuid', q.instance_uuid);
    if (q.description_contains !== undefined) { where.push('instr(description, ?) > 0'); args.push(q.description_contains); }
    if (q.shard?.length) { where.push(`shard IN (${q.shard.map(() => '?').join(',')})`); args.push(...q.shard); }
    if (q.sharded !== undefined) where.push(`shard IS ${q.sharded ? 'NOT ' : ''}NULL`);
    if (q.provision_updated_before !== undefined) { where.push('provision_updated_at < ?'); args.push(q.provision_updated_before); }
    const order = this.pageClause('nodes', NODE_SORT_KEYS, q, where, args);
    const sql = `SELECT ${select} FROM nodes${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ${order}`;
    return { sql, args };
  }

  /** ORDER BY + keyset pagination after the marker row; ties broken by id so pages never overlap. */
  private pageClause(table: string, keys: ReadonlySet<string>, q: { sort_key?: string; sort_dir?: 'asc' | 'desc';
    marker?: string; limit?: number }, where: string[], args: unknown[]): string {
    const key = q.sort_key ?? 'id';
    if (!keys.has(key)) throw new InvalidParameterValue(`The sort_key value "${key}" is an invalid field for sorting`);
    const dir = q.sort_dir === 'desc' ? 'DESC' : 'ASC';
    const cmp = dir === 'DESC' ? '<' : '>';
    const expr = key === 'id' ? 'id' : `IFNULL(${key}, '')`;
    if (q.marker !== undefined) {
      const m = this.stmt(`SELECT id, ${expr} AS k FROM ${table} WHERE uuid = ?`).get(q.marker) as
        { id: number; k: unknown } | undefined;
      if (!m) throw new InvalidParameterValue(`Marker ${q.marker} could not be found.`);
      if (key === 'id') {
        where.push(`id ${cmp} ?`);
        args.push(m.id);
      } else {
        where.push(`(${expr} ${cmp} ? OR (${expr} = ? AND id ${cmp} ?))`);
        args.push(m.k, m.k, m.id);
      }
    }
    const limit = q.limit !== undefined ? ` LIMIT ${Math.max(0, Math.floor(q.limit))}` : '';
    return `ORDER BY ${expr} ${dir}${key === 'id' ? '' : `, id ${dir}`}${limit}`;
  }

  async updateNode(uuid: string, patch: NodeUpdate): Promise<NodeRecord> {
    const values: Row = { ...(patch as Row), updated_at: isoTime() };
    delete values.id; delete values.uuid; delete values.created_at;
    const cols = Object.keys(values).filter((c) => values[c] !== undefined);
    const params = cols.map((c) => toDb(c, NODE_COLS[c], values[c]));
    const sql = `UPDATE nodes SET ${cols.map((c) => `${c} = ?`).join(', ')} WHERE uuid = ? RETURNING *`;
    return this.writes.run(() => {
      let row: Row | undefined;
      try {
        row = this.stmt(sql).get(...params, uuid) as Row | undefined;
      } catch (e) {
        const field = uniqueViolation(e);
        if (field) throw new DuplicateError(field, String(values[field]));
        throw e;
      }
      if (!row) throw new NotFound(`Node ${uuid} could not be found.`);
      return nodeFromRow(row);
    });
  }

  async deleteNode(uuid: string): Promise<void> {
    return this.writes.run(() => {
      this.stmt('DELETE FROM ports WHERE node_uuid = ?').run(uuid);
      this.stmt('DELETE FROM node_history WHERE node_uuid = ?').run(uuid);
      this.stmt('DELETE FROM nodes WHERE uuid = ?').run(uuid);
    });
  }

  async reserveNode(uuid: string, host: string): Promise<ReserveResult> {
    return this.writes.run((): ReserveResult => {
      const row = this.stmt('UPDATE nodes SET reservation = ? WHERE uuid = ? AND reservation IS NULL RETURNING *')
        .get(host, uuid) as Row | undefined;
      if (row) return { ok: true, node: nodeFromRow(row) };
      const held = this.stmt('SELECT reservation FROM nodes WHERE uuid = ?').get(uuid) as
        { reservation: string | null } | undefined;
      if (!held) return { ok: false, holder: null, missing: true };
      return { ok: false, holder: held.reservation };
    });
  }

  async releaseNode(uuid: string, host: string): Promise<boolean> {
    return this.writes.run(() => this.stmt('UPDATE nodes SET reservation = NULL WHERE uuid = ? AND reservation = ?')
      .run(uuid, host).changes === 1);
  }

  async clearReservations(host: string): Promise<string[]> {
    return this.db.transaction(() => {
      const rows = this.stmt('SELECT uuid FROM nodes WHERE reservation = ?').all(host) as { uuid: string }[];
      this.stmt('UPDATE nodes SET reservation = NULL WHERE reservation = ?').run(host);
      return rows.map((r) => r.uuid);
    })();
  }

  // ---- ports ------------------------------------------------------------------------------------------------

  async createPort(port: NewPort): Promise<PortRecord> {
    const values: Row = { extra: {}, internal_info: {}, local_link_connection: {}, pxe_enabled: true,
      is_smartnic: false, ...port, created_at: isoTime() };
    const cols = Object.keys(values).filter((c) => c !== 'id');
    const params = cols.map((c) => toDb(c, PORT_COLS[c], values[c]));
    const sql = `INSERT INTO ports (${cols.join(',')}) VALUES (${cols.map(() => '?').join(',')}) RETURNING *`;
    return this.writes.run(() => {
      try {
        return portFromRow(this.stmt(sql).get(...params) as Row);
      } catch (e) {
        const field = uniqueViolation(e);
        if (field) throw new DuplicateError(field, String(values[field]));
        if ((e as { code?: string }).code === 'SQLITE_CONSTRAINT_FOREIGNKEY') {
          throw new NotFound(`Node ${port.node_uuid} could not be found.`);
        }
        throw e;
      }
    });
  }

  async getPortByUuid(uuid: string): Promise<PortRecord | undefined> {
    const row = this.stmt('SELECT * FROM ports WHERE uuid = ?').get(uuid) as Row | undefined;
    return row ? portFromRow(row) : undefined;
  }

  async getPortByAddress(address: string): Promise<PortRecord | undefined> {
    const row = this.stmt('SELECT * FROM ports WHERE address = ?').get(address.toLowerCase()) as Row | undefined;
    return row ? portFromRow(row) : undefined;
  }

  async listPorts(q: PortQuery): Promise<PortRecord[]> {
    const where: string[] = [];
    const args: unknown[] = [];
    if (q.node_uuid !== undefined) { where.push('node_uuid = ?'); args.push(q.node_uuid); }
    if (q.address !== undefined) { where.push('address = ?'); args.push(q.address.toLowerCase()); }
    if (q.portgroup_uuid !== undefined) { where.push('portgroup_uuid = ?'); args.push(q.portgroup_uuid); }
    const order = this.pageClause('ports', PORT_SORT_KEYS, q, where, args);
    const sql = `SELECT * FROM ports${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ${order}`;
    return (this.stmt(sql).all(...args) as Row[]).map(portFromRow);
  }

  async updatePort(uuid: string, patch: Partial<PortFields>): Promise<PortRecord> {
    const values: Row = { ...(patch as Row), updated_at: isoTime() };
    const cols = Object.keys(values).filter((c) => values[c] !== undefined && c !== 'id' && c !== 'uuid');
    const params = cols.map((c) => toDb(c, PORT_COLS[c], values[c]));
    const sql = `UPDATE ports SET ${cols.map((c) => `${c} = ?`).join(', ')} WHERE uuid = ? RETURNING *`;
    return this.writes.run(() => {
      let row: Row | undefined;
      try {
        row = this.stmt(sql).get(...params, uuid) as Row | undefined;
      } catch (e) {
        const field = uniqueViolation(e);
        if (field) throw new DuplicateError(field, String(values[field]));
        if ((e as { code?: string }).code === 'SQLITE_CONSTRAINT_FOREIGNKEY') {
          throw new InvalidParameterValue(`Node ${String(values.node_uuid)} could not be found.`);
        }
        throw e;
      }
      if (!row) throw new NotFound(`Port ${uuid} could not be found.`);
      return portFromRow(row);
    });
  }

  async deletePort(uuid: string): Promise<void> {
    return this.writes.run(() => { this.stmt('DELETE FROM ports WHERE uuid = ?').run(uuid); });
  }

  // ---- history, conductors ----------------------------------------------------------------------------------

  async addHistory(rec: NewHistory, maxEntries?: number): Promise<void> {
    return this.writes.run(() => {
      this.stmt(`INSERT INTO node_history (uuid, node_uuid, created_at, severity, event_type, event, conductor, user)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?)`).run(rec.uuid || randomUUID(), rec.node_uuid, isoTime(),
        rec.severity, rec.event_type, rec.event.slice(0, 255), rec.conductor, rec.user);
      if (maxEntries !== undefined) {
        this.stmt(`DELETE FROM node_history WHERE node_uuid = ? AND id NOT IN
          (SELECT id FROM node_history WHERE node_uuid = ? ORDER BY id DESC LIMIT ?)`)
          .run(rec.node_uuid, rec.node_uuid, maxEntries);
      }
    });
  }

  async listHistory(nodeUuid: string): Promise<HistoryRecord[]> {
    return this.stmt('SELECT * FROM node_history WHERE node_uuid = ? ORDER BY id').all(nodeUuid) as HistoryRecord[];
  }

  async upsertConductor(rec: Omit<ConductorRecord, 'created_at' | 'updated_at'>): Promise<void> {
    const now = isoTime();
    this.stmt(`INSERT INTO conductors (hostname, conductor_group, drivers, online, created_at, updated_at)
      VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(hostname) DO UPDATE SET conductor_group = excluded.conductor_group,
      drivers = excluded.drivers, online = excluded.online, updated_at = excluded.updated_at`)
      .run(rec.hostname, rec.conductor_group, JSON.stringify(rec.drivers), rec.online ? 1 : 0, now, now);
  }

  async setConductorOnline(hostname: string, online: boolean): Promise<void> {
    this.stmt('UPDATE conductors SET online = ?, updated_at = ? WHERE hostname = ?')
      .run(online ? 1 : 0, isoTime(), hostname);
  }

  async listConductors(): Promise<ConductorRecord[]> {
    return (this.stmt('SELECT * FROM conductors ORDER BY hostname').all() as Row[]).map((r) => ({
      hostname: r.hostname as string, conductor_group: r.conductor_group as string,
      drivers: JSON.parse(r.drivers as string) as string[], online: r.online === 1,
      created_at: r.created_at as string, updated_at: r.updated_at as string | null,
    }));
  }
}
