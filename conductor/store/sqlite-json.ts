/**
 * Node list items rendered to JSON by SQLite itself, one format() call per row, and whole pages joined by
 * group_concat into one buffer. Lists of 1,000 nodes are the API's heaviest responses; building them in C from
 * the stored JSON text avoids reading ~60 values per row into JS and concatenating them there (3-4x less CPU).
 * Only secret masking runs in JS, and only for values that may hold a secret. Pages are cached while their rows
 * are unchanged (render-cache.ts).
 */
import type Database from 'better-sqlite3';
import { RenderCache } from './render-cache.js';
import { specFields, type NodeJsonList, type NodeJsonRow, type NodeJsonSpec } from './types.js';

/** SQL function through which masked fields reach the spec's JS masker: bm_mask(field, raw). */
const MASK_FN = 'bm_mask';
/** SQL function rendering the hash ring's owner (spec.conductor.owners) as JSON: bm_owner(uuid, driver, group). */
const OWNER_FN = 'bm_owner';

function sqlString(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

function likeAny(col: string, hints: readonly string[]): string {
  // LIKE is case-insensitive for ASCII, which is what the maskers' own checks are; `_` and `%` are escaped.
  return hints.map((h) => `${col} LIKE ${sqlString(`%${h.replace(/[\\%_]/g, (c) => `\\${c}`)}%`)} ESCAPE '\\'`)
    .join(' OR ');
}

/**
 * One SQL expression rendering a node row as `spec` says, as a single format() call (one allocation per row);
 * stored JSON columns are spliced in as they are (they are JSON.stringify output, validated on the way in).
 * Returns the SQL and the positional parameters it binds, in order.
 */
export function nodeJsonExpr(spec: NodeJsonSpec): { sql: string; params: unknown[] } {
  const params: unknown[] = [];
  const args: string[] = [];
  let fmt = '{';
  for (const f of specFields(spec)) {
    fmt += `${f.key}%s`;
    switch (f.fmt) {
      case 'conductor': {
        if (spec.conductor.owners) {
          args.push(`${OWNER_FN}(uuid, driver, conductor_group)`);
          break;
        }
        const d = spec.conductor.drivers;
        args.push(`CASE WHEN conductor_group = ? AND driver IN (${d.map(() => '?').join(',')}) THEN json_quote(?) ` +
          `ELSE 'null' END`);
        params.push(spec.conductor.group, ...d, spec.conductor.host);
        break;
      }
      case 'bool': args.push(`CASE WHEN ${f.name} IS NULL THEN 'null' WHEN ${f.name} = 1 THEN 'true' ELSE 'false' END`); break;
      case 'json': {
        const m = spec.maskers?.[f.name];
        args.push(m ? `CASE WHEN ${likeAny(f.name, m.hints)} THEN ${MASK_FN}(${sqlString(f.name)}, ${f.name}) ` +
          `ELSE coalesce(${f.name}, 'null') END` : `coalesce(${f.name}, 'null')`);
        break;
      }
      default: args.push(`json_quote(${f.name})`);
    }
  }
  // JSON-escaped once here; uuids are validated UUIDs, safe to splice.
  const esc = (s: string): string => JSON.stringify(s).slice(1, -1);
  for (const [key, suffix] of spec.links) {
    if (!/^[a-z_]+$/.test(key)) throw new Error(`bad link key ${key}`);
    fmt += `,"${key}":[{"href":"%s%s%s","rel":"self"},{"href":"%s%s%s","rel":"bookmark"}]`;
    args.push('?', 'uuid', '?', '?', 'uuid', '?');
    params.push(esc(`${spec.base}/v1/nodes/`), esc(suffix), esc(`${spec.base}/nodes/`), esc(suffix));
  }
  fmt += '}';
  return { sql: `format(${sqlString(fmt)}${args.map((a) => `, ${a}`).join('')})`, params };
}

/** Registers bm_mask and bm_owner on the connection; `current` supplies the spec of the statement being run. */
function registerSpecFunctions(db: Database.Database, current: () => NodeJsonSpec | undefined): void {
  db.function(MASK_FN, { deterministic: false, varargs: false }, (field: unknown, raw: unknown) => {
    const m = current()?.maskers?.[String(field)];
    return m && typeof raw === 'string' ? m.mask(raw) : raw;
  });
  db.function(OWNER_FN, { deterministic: false, varargs: false }, (uuid: unknown, driver: unknown, group: unknown) => {
    const owners = current()?.conductor.owners;
    const owner = owners?.of({ uuid: String(uuid), driver: String(driver), conductor_group: String(group) }) ?? null;
    return owner === null ? 'null' : JSON.stringify(owner);
  });
}

/** Builds a node list query (filters, order, page) selecting `select`. */
export type ListQuery = (select: string) => { sql: string; args: unknown[] };

/** Node lists of one connection rendered to JSON, with the cache of rendered pages. */
export class NodeListRenderer {
  /** Spec of the statement running right now (read by the bm_mask and bm_owner SQL functions). */
  private current: NodeJsonSpec | undefined;
  private readonly cache: RenderCache;

  constructor(db: Database.Database, private readonly stmt: (sql: string) => Database.Statement, cacheBytes: number) {
    registerSpecFunctions(db, () => this.current);
    this.cache = new RenderCache(cacheBytes);
  }

  /** Every item rendered afresh, with the columns the conductor filter needs. */
  rows(query: ListQuery, spec: NodeJsonSpec): NodeJsonRow[] {
    const item = nodeJsonExpr(spec);
    const { sql, args } = query(`${item.sql}, uuid, driver, conductor_group`);
    const rows = this.withSpec(spec, () => this.stmt(sql).all(...item.params, ...args)) as string[][];
    return rows.map((r) => ({ json: r[0] as string, uuid: r[1] as string, driver: r[2] as string,
      conductor_group: r[3] as string }));
  }

  /**
   * A page of items joined by commas: the cached page when its rows are unchanged, else rendered in one
   * statement (the page query is a co-routine whose rows group_concat takes in order; asking for that order again
   * in the aggregate would re-sort the big rows).
   */
  page(query: ListQuery, spec: NodeJsonSpec): NodeJsonList {
    const ids = query('id, version, uuid');
    const rows = this.stmt(ids.sql).all(...ids.args) as [number, number, string][];
    const last = rows[rows.length - 1];
    const tail = { count: rows.length, ...(last ? { lastUuid: last[2] } : {}) };
    const { maskers: _fns, ...keyed } = spec;
    const key = `${JSON.stringify(keyed)}\n${ids.sql}\n${JSON.stringify(ids.args)}`;
    const hit = this.cache.get(key, rows);
    if (hit) return { items: hit, ...tail };
    // Same synchronous turn as the page query above: no write can come in between.
    const item = nodeJsonExpr(spec);
    const page = query(`${item.sql} AS j`);
    const sql = `SELECT CAST(group_concat(j, ',') AS BLOB), count(*) FROM (${page.sql})`;
    const [items, count] = this.withSpec(spec, () => this.stmt(sql).get(...item.params, ...page.args)) as
      [Buffer | null, number];
    if (count !== rows.length) throw new Error(`node list changed while rendering (${rows.length} -> ${count} rows)`);
    const out = items ?? Buffer.alloc(0);
    this.cache.set(key, rows, out);
    return { items: out, ...tail };
  }

  private withSpec<T>(spec: NodeJsonSpec, fn: () => T): T {
    this.current = spec;
    try {
      return fn();
    } finally {
      this.current = undefined;
    }
  }
}
