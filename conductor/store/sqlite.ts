/**
 * The embedded store: better-sqlite3 in WAL mode, prepared statements cached per column set, every write in a
 * transaction (group-commit.ts), node lists rendered to JSON by SQLite (sqlite-json.ts). Synchronous
 * underneath; the async Store surface is for the PostgreSQL implementation to come.
 */
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { MIGRATIONS, migrationSql } from './migrations.js';
import { SQLITE } from './dialect.js';
import { markerQuery, nodeListQuery, portListQuery, type MarkerRow } from './queries.js';
import { GroupCommit } from './group-commit.js';
import { sqliteRunner, type SqlRunner } from './sql-runner.js';
import { NodeListRenderer } from './sqlite-json.js';
import {
  NODE_COLS, NODE_JSON_COLS, nodeFromRow, PORT_COLS, portFromRow, toDb,
  uniqueViolation, type Row,
} from './sqlite-rows.js';
import type { ColType } from './sqlite-rows.js';
import {
  DuplicateError,
  type ConductorRecord, type HistoryRecord, type NewHistory, type NewNode, type NewPort, type NodeJsonList,
  type NodeJsonRow, type NodeJsonSpec, type NodeQuery, type NodeRecord, type NodeUpdate, type PortFields,
  type PortQuery, type PortRecord, type ReserveResult, type Store,
} from './types.js';
import { DuplicateNodeOnLookup, InvalidParameterValue, NotFound } from '../errors.js';
import { isoTime } from '../time.js';

export { NODE_SORT_KEYS, PORT_SORT_KEYS } from './sqlite-rows.js';

export interface SqliteOptions {
  /** Path to the database file, or ':memory:'. */
  file: string;
  /** Budget for rendered node list items (default 8 MiB; 0 turns the cache off). */
  renderCacheBytes?: number;
}

export class SqliteStore implements Store {
  readonly kind = 'sqlite';
  readonly db: Database.Database;
  private readonly stmts = new Map<string, Database.Statement>();
  /** Node lists rendered to JSON (see sqlite-json.ts). */
  private readonly lists: NodeListRenderer;
  /** Every write goes through here (one transaction per event-loop turn). */
  private readonly writes: GroupCommit;
  readonly sql: SqlRunner;

  constructor(opts: SqliteOptions) {
    this.db = new Database(opts.file);
    // First, so that switching to WAL and migrating wait for a conductor starting on the same file at the same time.
    this.db.pragma('busy_timeout = 5000');
    // SQLite answers SQLITE_BUSY without waiting in a few cases (a WAL switch or recovery under way in another
    // process), and a loaded host can outlast busy_timeout: conductors starting together retry the set-up.
    retryWhileBusy(() => this.db.pragma('journal_mode = WAL'));
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('foreign_keys = ON');
    retryWhileBusy(() => this.migrate());
    this.writes = new GroupCommit(this.db);
    this.sql = sqliteRunner(this.db, this.writes);
    this.lists = new NodeListRenderer(this.db, (sql) => this.rawStmt(sql), opts.renderCacheBytes ?? 8 * 2 ** 20);
  }

  static open(dataDir: string, fileName = 'conductor.sqlite', opts: Omit<SqliteOptions, 'file'> = {}): SqliteStore {
    if (fileName === ':memory:') return new SqliteStore({ ...opts, file: ':memory:' });
    mkdirSync(dataDir, { recursive: true });
    return new SqliteStore({ ...opts, file: join(dataDir, fileName) });
  }

  /**
   * Reading the version and applying what is missing happen in one IMMEDIATE transaction: it takes the write lock
   * before the read, so conductors starting together on one file migrate one after the other, and the later ones
   * find nothing left to do (SQLite's counterpart of the PostgreSQL store's advisory lock).
   */
  private migrate(): void {
    this.db.transaction(() => {
      this.db.exec('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)');
      const row = this.db.prepare('SELECT MAX(version) AS v FROM schema_version').get() as { v: number | null };
      const current = row.v ?? 0;
      for (const m of MIGRATIONS) {
        if (m.version <= current) continue;
        this.db.exec(migrationSql(m, SQLITE));
        this.db.prepare('INSERT INTO schema_version (version) VALUES (?)').run(m.version);
      }
    }).immediate();
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
    return this.insertRow('nodes', NODE_COLS, values, nodeFromRow);
  }

  /** INSERT ... RETURNING in the group commit; a unique violation becomes DuplicateError naming the field. */
  private insertRow<T>(table: string, types: Record<string, ColType>, values: Row, fromRow: (r: Row) => T,
    onError?: (e: unknown) => void): Promise<T> {
    const cols = Object.keys(values).filter((c) => c !== 'id');
    const params = cols.map((c) => toDb(c, types[c], values[c]));
    const sql = `INSERT INTO ${table} (${cols.join(',')}) VALUES (${cols.map(() => '?').join(',')}) RETURNING *`;
    return this.writes.run(() => {
      try {
        return fromRow(this.stmt(sql).get(...params) as Row);
      } catch (e) {
        const field = uniqueViolation(e);
        if (field) throw new DuplicateError(field, String(values[field]));
        onError?.(e);
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
    const sql = `SELECT n.* FROM nodes n WHERE n.uuid IN (SELECT p.node_uuid FROM ports p WHERE p.address IN ` +
      `(${macs.map(() => '?').join(',')})) LIMIT 2`;
    const rows = this.stmt(sql).all(...macs) as Row[];
    if (rows.length > 1) throw new DuplicateNodeOnLookup(macs, rows.map((r) => String(r.uuid)));
    return rows[0] ? nodeFromRow(rows[0]) : undefined;
  }

  async countNodes(): Promise<number> {
    return (this.stmt('SELECT COUNT(*) AS c FROM nodes').get() as { c: number }).c;
  }

  async shardCounts(): Promise<{ shard: string | null; count: number }[]> {
    const rows = this.stmt('SELECT shard, COUNT(id) AS c FROM nodes GROUP BY shard ORDER BY c DESC, shard').all() as { shard: string | null; c: number }[];
    return rows.map((r) => ({ shard: r.shard, count: r.c }));
  }

  async listNodes(q: NodeQuery): Promise<NodeRecord[]> {
    const { sql, args } = this.nodeListQuery(q);
    return (this.stmt(sql).all(...args) as Row[]).map(nodeFromRow);
  }

  async listNodesJson(q: NodeQuery, spec: NodeJsonSpec): Promise<NodeJsonRow[]> {
    return this.lists.rows((select) => this.nodeListQuery(q, select), spec);
  }

  async renderNodeList(q: NodeQuery, spec: NodeJsonSpec): Promise<NodeJsonList> {
    return this.lists.page((select) => this.nodeListQuery(q, select), spec);
  }

  private nodeListQuery(query: NodeQuery, select = '*'): { sql: string; args: unknown[] } {
    return nodeListQuery(SQLITE, query, select, this.marker('nodes', query));
  }

  private marker(table: 'nodes' | 'ports', q: NodeQuery | PortQuery): MarkerRow | undefined {
    const m = markerQuery(SQLITE, table, q);
    return m ? this.stmt(m.sql).get(...m.args) as MarkerRow | undefined : undefined;
  }

  async updateNode(uuid: string, patch: NodeUpdate): Promise<NodeRecord> {
    const values: Row = { ...(patch as Row), updated_at: isoTime() };
    delete values.id; delete values.uuid; delete values.created_at; delete values.version;
    const cols = Object.keys(values).filter((c) => values[c] !== undefined);
    const params = cols.map((c) => toDb(c, NODE_COLS[c], values[c]));
    const sql = `UPDATE nodes SET ${cols.map((c) => `${c} = ?`).join(', ')}, version = version + 1 WHERE uuid = ? RETURNING *`;
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
      const row = this.stmt('UPDATE nodes SET reservation = ?, version = version + 1 WHERE uuid = ? AND reservation IS NULL ' +
        'RETURNING *')
        .get(host, uuid) as Row | undefined;
      if (row) return { ok: true, node: nodeFromRow(row) };
      const held = this.stmt('SELECT reservation FROM nodes WHERE uuid = ?').get(uuid) as
        { reservation: string | null } | undefined;
      if (!held) return { ok: false, holder: null, missing: true };
      return { ok: false, holder: held.reservation };
    });
  }

  async releaseNode(uuid: string, host: string): Promise<boolean> {
    return this.writes.run(() => this.stmt('UPDATE nodes SET reservation = NULL, version = version + 1 WHERE uuid = ? AND ' +
      'reservation = ?')
      .run(uuid, host).changes === 1);
  }

  async clearReservations(host: string): Promise<string[]> {
    // One statement, so it needs no read-then-write transaction (other conductor processes may share the file).
    return (this.stmt('UPDATE nodes SET reservation = NULL, version = version + 1 WHERE reservation = ? RETURNING uuid')
      .all(host) as { uuid: string }[]).map((r) => r.uuid);
  }

  // ---- ports ------------------------------------------------------------------------------------------------

  async createPort(port: NewPort): Promise<PortRecord> {
    const values: Row = { extra: {}, internal_info: {}, local_link_connection: {}, pxe_enabled: true,
      is_smartnic: false, ...port, created_at: isoTime() };
    return this.insertRow('ports', PORT_COLS, values, portFromRow, (e) => {
      if ((e as { code?: string }).code === 'SQLITE_CONSTRAINT_FOREIGNKEY') {
        throw new NotFound(`Node ${port.node_uuid} could not be found.`);
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

  async listPorts(query: PortQuery): Promise<PortRecord[]> {
    const { sql, args } = portListQuery(SQLITE, query, this.marker('ports', query));
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
    this.stmt(`INSERT INTO conductors (hostname, conductor_group, drivers, online, hardware_interfaces, rpc_url,
      created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(hostname) DO UPDATE SET
      conductor_group = excluded.conductor_group, drivers = excluded.drivers, online = excluded.online,
      hardware_interfaces = excluded.hardware_interfaces, rpc_url = excluded.rpc_url, updated_at = excluded.updated_at`)
      .run(rec.hostname, rec.conductor_group, JSON.stringify(rec.drivers), rec.online ? 1 : 0,
        JSON.stringify(rec.hardware_interfaces ?? {}), rec.rpc_url ?? null, now, now);
  }

  async setConductorOnline(hostname: string, online: boolean): Promise<void> {
    this.stmt('UPDATE conductors SET online = ?, updated_at = ? WHERE hostname = ?')
      .run(online ? 1 : 0, isoTime(), hostname);
  }

  async listConductors(): Promise<ConductorRecord[]> {
    return (this.stmt('SELECT * FROM conductors ORDER BY hostname').all() as Row[]).map((r) => ({
      hostname: r.hostname as string, conductor_group: r.conductor_group as string,
      drivers: JSON.parse(r.drivers as string) as string[], online: r.online === 1,
      hardware_interfaces: JSON.parse((r.hardware_interfaces as string | undefined) ?? '{}') as Record<string, string[]>,
      rpc_url: (r.rpc_url as string | null | undefined) ?? null,
      created_at: r.created_at as string, updated_at: r.updated_at as string | null,
    }));
  }
}

/** Runs `fn` again while it fails with SQLITE_BUSY*, for up to a minute (start-up only: it blocks the thread). */
function retryWhileBusy<T>(fn: () => T): T {
  const deadline = Date.now() + 60_000;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    try {
      return fn();
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      if (typeof code !== 'string' || !code.startsWith('SQLITE_BUSY') || Date.now() > deadline) throw e;
      Atomics.wait(pause, 0, 0, 50 + Math.floor(Math.random() * 100));
    }
  }
}
