/**
 * The Store on PostgreSQL (`database.url: postgresql://...`), for several conductors sharing one database.
 * Same schema and migrations as SQLite (dialect.ts holds what differs), same list queries (queries.ts), same row
 * conversion (sqlite-rows.ts).
 *
 * Durability: every write is its own transaction (a statement in autocommit, or BEGIN ... COMMIT for the
 * multi-statement ones) on a pooled connection, and its promise settles only after PostgreSQL acknowledged the
 * COMMIT. Batching: SQLite needs group-commit.ts because one process owns the file and each commit pays its own
 * fsync; PostgreSQL already commits in groups: concurrent writes run on separate pooled connections, and the WAL
 * flush of one backend's COMMIT writes and syncs every commit record inserted before it, so writes issued
 * together share fsyncs without any client-side batching, and across conductor processes too (the
 * fleet benchmark measures it, test/bench/fleet.ts). Keeping SQLite's savepoint-per-write scheme here would
 * add three round trips per write and serialise them on one connection.
 *
 * Reservations are one conditional UPDATE ... WHERE reservation IS NULL: under READ COMMITTED a concurrent
 * UPDATE of the same row waits for the other's commit and re-checks the condition, so exactly one conductor
 * wins.
 *
 * Render cache: pages are validated against (id, version) read from the database on every request (one
 * aggregated row, `id:version,...`), and version is bumped by a trigger on every UPDATE (whoever runs it), so a
 * page another conductor changed is never served stale (postgres-lists.ts); a miss is rendered mostly by
 * PostgreSQL (postgres-json.ts). No cache is ever trusted without a read made after the request arrived:
 * invalidation pushed by LISTEN/NOTIFY would be cheaper but arrives asynchronously, after the writer's client
 * may already have its answer and asked another conductor.
 *
 * Lookups by MAC that arrive together share one statement (read-batch.ts), sent after all of them arrived.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { getLogger } from '../../common/logger.js';
import { DuplicateNodeOnLookup, InvalidParameterValue, NotFound } from '../errors.js';
import { isoTime } from '../time.js';
import { POSTGRES } from './dialect.js';
import { MIGRATIONS, migrationSql } from './migrations.js';
import { PgNodeLists } from './postgres-lists.js';
import { ReadBatch } from './read-batch.js';
import { postgresRunner, type SqlRunner } from './sql-runner.js';
import { isPgForeignKeyViolation, pgUniqueViolation, safeUrl } from './postgres-rows.js';
import { markerQuery, nodeListQuery, portListQuery, type MarkerRow } from './queries.js';
import { NODE_COLS, NODE_JSON_COLS, nodeFromRow, PORT_COLS, portFromRow, toDb, type ColType, type Row } from './sqlite-rows.js';
import {
  DuplicateError,
  type ConductorRecord, type HistoryRecord, type NewHistory, type NewNode, type NewPort, type NodeJsonList,
  type NodeJsonRow, type NodeJsonSpec, type NodeQuery, type NodeRecord, type NodeUpdate, type PortFields,
  type PortQuery, type PortRecord, type ReserveResult, type Store,
} from './types.js';

const log = getLogger('store');

/** pg_advisory_lock key held while migrating: conductors starting together migrate one after the other. */
export const MIGRATION_LOCK_KEY = 7_262_016_115;

/**
 * The fixed statements, sent as named (server-side prepared) statements: each pooled connection parses and plans
 * one once, then only binds and executes it (the PostgreSQL side of a lookup or a node show is mostly planning
 * otherwise). A prepared `SELECT *` / `RETURNING *` fails with "cached plan must not change result type" once
 * another conductor's newer version has added a column (a rolling upgrade): prepared() then prepares the statement
 * afresh under a new name, once per process, and the old one goes with its connection.
 */
const SQL = {
  nodeByUuid: 'SELECT * FROM nodes WHERE uuid = ?',
  nodeByName: 'SELECT * FROM nodes WHERE name = ?',
  nodeByInstance: 'SELECT * FROM nodes WHERE instance_uuid = ?',
  // The lookups of one batch (read-batch.ts), any number of addresses each, in one statement (an array parameter).
  nodesByMacs: 'SELECT p.address AS bm_mac, n.* FROM ports p JOIN nodes n ON n.uuid = p.node_uuid WHERE p.address = ANY(?)',
  countNodes: 'SELECT COUNT(*) AS c FROM nodes',
  reserve: 'UPDATE nodes SET reservation = ?, version = version + 1 WHERE uuid = ? AND reservation IS NULL RETURNING *',
  holder: 'SELECT reservation FROM nodes WHERE uuid = ?',
  release: 'UPDATE nodes SET reservation = NULL, version = version + 1 WHERE uuid = ? AND reservation = ? RETURNING id',
  portByUuid: 'SELECT * FROM ports WHERE uuid = ?',
  portByAddress: 'SELECT * FROM ports WHERE address = ?',
  history: 'SELECT * FROM node_history WHERE node_uuid = ? ORDER BY id',
} as const;

/** PostgreSQL's SQLSTATE for "cached plan must not change result type" (feature_not_supported). */
const PG_FEATURE_NOT_SUPPORTED = '0A000';

export interface PostgresOptions {
  url: string;
  /** Connections in the pool (default 10). */
  poolSize?: number;
  /** Budget for rendered node list pages (default 8 MiB; 0 turns the cache off). */
  renderCacheBytes?: number;
}

export class PostgresStore implements Store {
  readonly kind = 'postgresql';
  readonly pool: pg.Pool;
  readonly sql: SqlRunner;
  private readonly lists: PgNodeLists;
  /** An answer is the node, or the UUIDs of the nodes when the addresses belong to more than one. */
  private readonly macLookups = new ReadBatch<readonly string[], NodeRecord | string[]>((b) => this.nodesByMacs(b));
  /** `?` SQL -> `$n` SQL, for the statements built at run time (bounded like SQLite's statement cache). */
  private readonly texts = new Map<string, string>();
  /** Suffix generation of the prepared statements' names (bumped when a table changed under them). */
  private generation = 0;
  private constructor(readonly url: string, opts: PostgresOptions, Pool: typeof pg.Pool) {
    this.pool = new Pool({ connectionString: url, max: opts.poolSize ?? 10, idleTimeoutMillis: 30_000,
      connectionTimeoutMillis: 30_000 });
    // An idle connection dropped by the server must not take the process down; the pool makes a new one.
    this.pool.on('error', (e) => log.warn({ err: e.message, database: safeUrl(url) }, 'idle PostgreSQL connection failed'));
    this.sql = postgresRunner(this.pool);
    this.lists = new PgNodeLists((sql, args, array) => this.query(sql, args, array), opts.renderCacheBytes ?? 8 * 2 ** 20);
  }

  /** Connects, migrates (under the advisory lock) and returns the store. */
  static async open(opts: PostgresOptions): Promise<PostgresStore> {
    // pg is loaded here, by the conductors that use PostgreSQL only (SQLite ones never need its ~3 MiB of heap).
    const store = new PostgresStore(opts.url, opts, (await import('pg')).default.Pool);
    try {
      await store.migrate();
    } catch (e) {
      await store.pool.end().catch(() => undefined);
      throw new Error(`PostgreSQL store ${safeUrl(opts.url)}: ${(e as Error).message}`);
    }
    return store;
  }

  private async migrate(): Promise<void> {
    const c = await this.pool.connect();
    try {
      await c.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
      try {
        await c.query('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)');
        const cur = (await c.query<{ v: number | null }>('SELECT MAX(version) AS v FROM schema_version')).rows[0]?.v ?? 0;
        for (const m of MIGRATIONS) {
          if (m.version <= cur) continue;
          await c.query('BEGIN');
          try {
            await c.query(migrationSql(m, POSTGRES));
            await c.query('INSERT INTO schema_version (version) VALUES ($1)', [m.version]);
            await c.query('COMMIT');
          } catch (e) {
            await c.query('ROLLBACK').catch(() => undefined);
            throw new Error(`migration ${m.version} (${m.description}) failed: ${(e as Error).message}`);
          }
          log.info({ version: m.version, description: m.description }, 'migrated');
        }
      } finally {
        await c.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]);
      }
    } finally {
      c.release();
    }
  }

  private text(sql: string): string {
    let t = this.texts.get(sql);
    if (t === undefined) {
      t = POSTGRES.placeholders(sql);
      if (this.texts.size >= 500) this.texts.delete(this.texts.keys().next().value as string);
      this.texts.set(sql, t);
    }
    return t;
  }

  /** One statement with `?` placeholders, in its own transaction (autocommit). */
  private async query(sql: string, args: readonly unknown[] = [], array = false): Promise<Row[]> {
    const r = await this.pool.query({ text: this.text(sql), values: args as unknown[], ...(array ? { rowMode: 'array' } : {}) });
    return r.rows as Row[];
  }

  private async one(sql: string, args: readonly unknown[] = []): Promise<Row | undefined> {
    return (await this.query(sql, args))[0];
  }

  /** A fixed statement (SQL) as a named prepared statement; see SQL for the rename on a changed result type. */
  private async prepared(key: keyof typeof SQL, args: readonly unknown[]): Promise<Row[]> {
    const generation = this.generation;
    const run = async (g: number): Promise<Row[]> =>
      (await this.pool.query({ name: `bm${g}_${key}`, text: this.text(SQL[key]), values: args as unknown[] })).rows as Row[];
    try {
      return await run(generation);
    } catch (e) {
      if ((e as { code?: string }).code !== PG_FEATURE_NOT_SUPPORTED || !/cached plan/.test((e as Error).message)) throw e;
      if (this.generation === generation) this.generation++;
      return run(this.generation);
    }
  }

  private async preparedOne(key: keyof typeof SQL, args: readonly unknown[]): Promise<Row | undefined> {
    return (await this.prepared(key, args))[0];
  }

  /** Several statements in one transaction on one connection, committed before the promise resolves. */
  private async tx<T>(fn: (q: (sql: string, args?: readonly unknown[]) => Promise<Row[]>) => Promise<T>): Promise<T> {
    const c = await this.pool.connect();
    try {
      await c.query('BEGIN');
      const out = await fn(async (sql, args = []) => (await c.query(this.text(sql), args as unknown[])).rows as Row[]);
      await c.query('COMMIT');
      return out;
    } catch (e) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw e;
    } finally {
      c.release();
    }
  }

  async close(): Promise<void> {
    await this.pool.end();
  }

  // ---- nodes ------------------------------------------------------------------------------------------------

  async createNode(node: NewNode): Promise<NodeRecord> {
    const values: Row = { ...node, created_at: isoTime(), updated_at: null };
    for (const c of NODE_JSON_COLS) if (!(c in values)) values[c] = undefined;
    return this.insertRow('nodes', NODE_COLS, values, nodeFromRow);
  }

  private async insertRow<T>(table: string, types: Record<string, ColType>, values: Row, fromRow: (r: Row) => T,
    onError?: (e: unknown) => void): Promise<T> {
    const cols = Object.keys(values).filter((c) => c !== 'id');
    const params = cols.map((c) => toDb(c, types[c], values[c]));
    const sql = `INSERT INTO ${table} (${cols.join(',')}) VALUES (${cols.map(() => '?').join(',')}) RETURNING *`;
    try {
      return fromRow((await this.one(sql, params)) as Row);
    } catch (e) {
      const field = pgUniqueViolation(e);
      if (field) throw new DuplicateError(field, String(values[field]));
      onError?.(e);
      throw e;
    }
  }

  async getNodeByUuid(uuid: string): Promise<NodeRecord | undefined> {
    const row = await this.preparedOne('nodeByUuid', [uuid]);
    return row ? nodeFromRow(row) : undefined;
  }

  async getNodeByName(name: string): Promise<NodeRecord | undefined> {
    const row = await this.preparedOne('nodeByName', [name]);
    return row ? nodeFromRow(row) : undefined;
  }

  async getNodeByInstanceUuid(uuid: string): Promise<NodeRecord | undefined> {
    const row = await this.preparedOne('nodeByInstance', [uuid]);
    return row ? nodeFromRow(row) : undefined;
  }

  async getNodeByMacs(macs: readonly string[]): Promise<NodeRecord | undefined> {
    if (macs.length === 0) return undefined;
    const found = await this.macLookups.get(macs);
    if (Array.isArray(found)) throw new DuplicateNodeOnLookup(macs, found);
    return found;
  }

  /** One statement for the lookups of a batch; each answer is the node its addresses belong to. */
  private async nodesByMacs(batch: readonly (readonly string[])[]): Promise<(NodeRecord | string[] | undefined)[]> {
    const rows = await this.prepared('nodesByMacs', [[...new Set(batch.flat())]]);
    const byMac = new Map<string, Row>();
    for (const r of rows) byMac.set(r.bm_mac as string, r);
    return batch.map((macs) => {
      const owners = macs.map((m) => byMac.get(m)).filter((r) => r !== undefined);
      const uuids = [...new Set(owners.map((r) => String(r.uuid)))];
      if (uuids.length > 1) return uuids;
      const raw = owners[0];
      if (!raw) return undefined;
      // A copy for each answer: nodeFromRow parses in place and callers own their record.
      const { bm_mac: _mac, ...row } = raw;
      return nodeFromRow(row);
    });
  }

  async countNodes(): Promise<number> {
    return Number((await this.preparedOne('countNodes', []))?.c ?? 0);
  }

  async shardCounts(): Promise<{ shard: string | null; count: number }[]> {
    const rows = await this.query('SELECT shard, COUNT(id) AS c FROM nodes GROUP BY shard ORDER BY c DESC, shard');
    return rows.map((r) => ({ shard: (r.shard as string | null) ?? null, count: Number(r.c) }));
  }

  private async marker(table: 'nodes' | 'ports', q: NodeQuery | PortQuery): Promise<MarkerRow | undefined> {
    const m = markerQuery(POSTGRES, table, q);
    return m ? await this.one(m.sql, m.args) as MarkerRow | undefined : undefined;
  }

  async listNodes(q: NodeQuery): Promise<NodeRecord[]> {
    const { sql, args } = nodeListQuery(POSTGRES, q, '*', await this.marker('nodes', q));
    return (await this.query(sql, args)).map(nodeFromRow);
  }

  async listNodesJson(q: NodeQuery, spec: NodeJsonSpec): Promise<NodeJsonRow[]> {
    const marker = await this.marker('nodes', q);
    return this.lists.rows((select) => nodeListQuery(POSTGRES, q, select, marker), spec);
  }

  async renderNodeList(q: NodeQuery, spec: NodeJsonSpec): Promise<NodeJsonList> {
    const marker = await this.marker('nodes', q);
    // First pages (no marker) are what clients poll; later pages of a walk through everything are kept only
    // once asked for twice, so a walk does not push the polled pages out.
    return this.lists.page((select) => nodeListQuery(POSTGRES, q, select, marker), spec, q.marker === undefined);
  }

  async updateNode(uuid: string, patch: NodeUpdate): Promise<NodeRecord> {
    const values: Row = { ...(patch as Row), updated_at: isoTime() };
    delete values.id; delete values.uuid; delete values.created_at; delete values.version;
    const cols = Object.keys(values).filter((c) => values[c] !== undefined);
    const params = cols.map((c) => toDb(c, NODE_COLS[c], values[c]));
    const sql = `UPDATE nodes SET ${cols.map((c) => `${c} = ?`).join(', ')}, version = version + 1 WHERE uuid = ? RETURNING *`;
    let row: Row | undefined;
    try {
      row = await this.one(sql, [...params, uuid]);
    } catch (e) {
      const field = pgUniqueViolation(e);
      if (field) throw new DuplicateError(field, String(values[field]));
      throw e;
    }
    if (!row) throw new NotFound(`Node ${uuid} could not be found.`);
    return nodeFromRow(row);
  }

  async deleteNode(uuid: string): Promise<void> {
    await this.tx(async (q) => {
      await q('DELETE FROM ports WHERE node_uuid = ?', [uuid]);
      await q('DELETE FROM node_history WHERE node_uuid = ?', [uuid]);
      await q('DELETE FROM nodes WHERE uuid = ?', [uuid]);
    });
  }

  async reserveNode(uuid: string, host: string): Promise<ReserveResult> {
    const row = await this.preparedOne('reserve', [host, uuid]);
    if (row) return { ok: true, node: nodeFromRow(row) };
    const held = await this.preparedOne('holder', [uuid]);
    if (!held) return { ok: false, holder: null, missing: true };
    return { ok: false, holder: held.reservation as string | null };
  }

  async releaseNode(uuid: string, host: string): Promise<boolean> {
    const rows = await this.prepared('release', [uuid, host]);
    return rows.length === 1;
  }

  async clearReservations(host: string): Promise<string[]> {
    const rows = await this.query('UPDATE nodes SET reservation = NULL, version = version + 1 WHERE reservation = ? ' +
      'RETURNING uuid', [host]);
    return rows.map((r) => r.uuid as string);
  }

  // ---- ports ------------------------------------------------------------------------------------------------

  async createPort(port: NewPort): Promise<PortRecord> {
    const values: Row = { extra: {}, internal_info: {}, local_link_connection: {}, pxe_enabled: true,
      is_smartnic: false, ...port, created_at: isoTime() };
    return this.insertRow('ports', PORT_COLS, values, portFromRow, (e) => {
      if (isPgForeignKeyViolation(e)) throw new NotFound(`Node ${port.node_uuid} could not be found.`);
    });
  }

  async getPortByUuid(uuid: string): Promise<PortRecord | undefined> {
    const row = await this.preparedOne('portByUuid', [uuid]);
    return row ? portFromRow(row) : undefined;
  }

  async getPortByAddress(address: string): Promise<PortRecord | undefined> {
    const row = await this.preparedOne('portByAddress', [address.toLowerCase()]);
    return row ? portFromRow(row) : undefined;
  }

  async listPorts(query: PortQuery): Promise<PortRecord[]> {
    const { sql, args } = portListQuery(POSTGRES, query, await this.marker('ports', query));
    return (await this.query(sql, args)).map(portFromRow);
  }

  async updatePort(uuid: string, patch: Partial<PortFields>): Promise<PortRecord> {
    const values: Row = { ...(patch as Row), updated_at: isoTime() };
    const cols = Object.keys(values).filter((c) => values[c] !== undefined && c !== 'id' && c !== 'uuid');
    const params = cols.map((c) => toDb(c, PORT_COLS[c], values[c]));
    const sql = `UPDATE ports SET ${cols.map((c) => `${c} = ?`).join(', ')} WHERE uuid = ? RETURNING *`;
    let row: Row | undefined;
    try {
      row = await this.one(sql, [...params, uuid]);
    } catch (e) {
      const field = pgUniqueViolation(e);
      if (field) throw new DuplicateError(field, String(values[field]));
      if (isPgForeignKeyViolation(e)) throw new InvalidParameterValue(`Node ${String(values.node_uuid)} could not be found.`);
      throw e;
    }
    if (!row) throw new NotFound(`Port ${uuid} could not be found.`);
    return portFromRow(row);
  }

  async deletePort(uuid: string): Promise<void> {
    await this.query('DELETE FROM ports WHERE uuid = ?', [uuid]);
  }

  // ---- history, conductors ----------------------------------------------------------------------------------

  async addHistory(rec: NewHistory, maxEntries?: number): Promise<void> {
    const insert = `INSERT INTO node_history (uuid, node_uuid, created_at, severity, event_type, event, conductor, "user")
      VALUES (?, ?, ?, ?, ?, ?, ?, ?)`;
    const args = [rec.uuid || randomUUID(), rec.node_uuid, isoTime(), rec.severity, rec.event_type,
      rec.event.slice(0, 255), rec.conductor, rec.user];
    if (maxEntries === undefined) {
      await this.query(insert, args);
      return;
    }
    await this.tx(async (q) => {
      await q(insert, args);
      await q(`DELETE FROM node_history WHERE node_uuid = ? AND id NOT IN
        (SELECT id FROM node_history WHERE node_uuid = ? ORDER BY id DESC LIMIT ?)`, [rec.node_uuid, rec.node_uuid, maxEntries]);
    });
  }

  async listHistory(nodeUuid: string): Promise<HistoryRecord[]> {
    return await this.prepared('history', [nodeUuid]) as unknown as
      HistoryRecord[];
  }

  async upsertConductor(rec: Omit<ConductorRecord, 'created_at' | 'updated_at'>): Promise<void> {
    const now = isoTime();
    await this.query(`INSERT INTO conductors (hostname, conductor_group, drivers, online, hardware_interfaces, rpc_url,
      created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(hostname) DO UPDATE SET
      conductor_group = excluded.conductor_group, drivers = excluded.drivers, online = excluded.online,
      hardware_interfaces = excluded.hardware_interfaces, rpc_url = excluded.rpc_url, updated_at = excluded.updated_at`,
    [rec.hostname, rec.conductor_group, JSON.stringify(rec.drivers), rec.online ? 1 : 0,
      JSON.stringify(rec.hardware_interfaces ?? {}), rec.rpc_url ?? null, now, now]);
  }

  async setConductorOnline(hostname: string, online: boolean): Promise<void> {
    await this.query('UPDATE conductors SET online = ?, updated_at = ? WHERE hostname = ?', [online ? 1 : 0, isoTime(), hostname]);
  }

  async listConductors(): Promise<ConductorRecord[]> {
    return (await this.query('SELECT * FROM conductors ORDER BY hostname')).map((r) => ({
      hostname: r.hostname as string, conductor_group: r.conductor_group as string,
      drivers: JSON.parse(r.drivers as string) as string[], online: r.online === 1,
      hardware_interfaces: JSON.parse((r.hardware_interfaces as string | undefined) ?? '{}') as Record<string, string[]>,
      rpc_url: (r.rpc_url as string | null | undefined) ?? null,
      created_at: r.created_at as string, updated_at: r.updated_at as string | null,
    }));
  }
}
