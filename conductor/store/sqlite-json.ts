/**
 * Node list items rendered to JSON text by SQLite itself (json_object), one string per row. Lists of 1,000
 * nodes are the API's heaviest responses; building them in C from the stored JSON text avoids reading ~60
 * values per row into JS and concatenating them there (10x less CPU). Only secret masking runs in JS, and only
 * for values that may hold a secret.
 */
import type Database from 'better-sqlite3';
import { RenderCache } from './render-cache.js';
import type { NodeJsonList, NodeJsonRow, NodeJsonSpec } from './types.js';

/** SQL function through which masked fields reach the spec's JS masker: bm_mask(field, raw). */
const MASK_FN = 'bm_mask';

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
  const seen = new Set<string>();
  for (const f of spec.fields) {
    if (seen.has(f.name)) continue;
    if (!/^[a-z_]+$/.test(f.name)) throw new Error(`bad node field ${f.name}`);
    fmt += `${seen.size ? ',' : ''}"${f.name}":%s`;
    seen.add(f.name);
    switch (f.fmt) {
      case 'conductor': {
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

/** Registers bm_mask on the connection; `current` supplies the maskers of the statement being run. */
function registerMaskFunction(db: Database.Database, current: () => NodeJsonSpec['maskers']): void {
  db.function(MASK_FN, { deterministic: false, varargs: false }, (field: unknown, raw: unknown) => {
    const m = current()?.[String(field)];
    return m && typeof raw === 'string' ? m.mask(raw) : raw;
  });
}

/** Builds a node list query (filters, order, page) selecting `select`. */
export type ListQuery = (select: string) => { sql: string; args: unknown[] };

/** Node lists of one connection rendered to JSON, with the cache of rendered items. */
export class NodeListRenderer {
  /** Maskers of the statement running right now (read by the bm_mask SQL function). */
  private maskers: NodeJsonSpec['maskers'];
  private readonly cache: RenderCache;

  constructor(db: Database.Database, private readonly stmt: (sql: string) => Database.Statement, cacheBytes: number) {
    registerMaskFunction(db, () => this.maskers);
    this.cache = new RenderCache(cacheBytes);
  }

  /** Every item rendered afresh, with the columns the conductor filter needs. */
  rows(query: ListQuery, spec: NodeJsonSpec): NodeJsonRow[] {
    const item = nodeJsonExpr(spec);
    const { sql, args } = query(`${item.sql}, uuid, driver, conductor_group`);
    const rows = this.withMaskers(spec, () => this.stmt(sql).all(...item.params, ...args)) as string[][];
    return rows.map((r) => ({ json: r[0] as string, uuid: r[1] as string, driver: r[2] as string,
      conductor_group: r[3] as string }));
  }

  /** A page of items: cached renderings of unchanged rows, the others rendered in one statement. */
  page(query: ListQuery, spec: NodeJsonSpec): NodeJsonList {
    const page = query('id, version, uuid');
    const rows = this.stmt(page.sql).all(...page.args) as [number, number, string][];
    const { maskers: _fns, ...keyed } = spec;
    const specId = this.cache.specId(JSON.stringify(keyed));
    const items = new Array<Buffer>(rows.length);
    const missing = new Map<number, number>();
    rows.forEach(([id, version], i) => {
      const hit = this.cache.get(RenderCache.key(specId, id), version);
      if (hit) items[i] = hit;
      else missing.set(id, i);
    });
    // Rendered in the same synchronous turn as the page query: no write can come in between.
    if (missing.size > 0) this.renderMissing(spec, specId, missing, items);
    const last = rows[rows.length - 1];
    return { items, count: rows.length, ...(last ? { lastUuid: last[2] } : {}) };
  }

  /**
   * Renders the rows `missing` (row id -> index in `items`) in one statement: the items come back as one buffer,
   * separated by newlines (which rendered JSON never holds raw: strings are escaped, stored JSON is
   * JSON.stringify output), and are cached as views into it.
   */
  private renderMissing(spec: NodeJsonSpec, specId: number, missing: Map<number, number>, items: Buffer[]): void {
    const item = nodeJsonExpr(spec);
    const sql = `SELECT CAST(group_concat(j, char(10)) AS BLOB), group_concat(id || '.' || version, ',') FROM ` +
      `(SELECT ${item.sql} AS j, id, version FROM nodes WHERE id IN (SELECT value FROM json_each(?)))`;
    const [slab, keys] = this.withMaskers(spec, () => this.stmt(sql).get(...item.params,
      JSON.stringify([...missing.keys()]))) as [Buffer | null, string | null];
    const rows = keys ? keys.split(',') : [];
    const fresh: [number, number, Buffer][] = [];
    let at = 0;
    rows.forEach((r, i) => {
      const dot = r.indexOf('.');
      if (!slab) return;
      const next = slab.indexOf(10, at);
      const end = i < rows.length - 1 ? next : next < 0 ? slab.length : -1;
      if (end < 0) return;
      fresh.push([Number(r.slice(0, dot)), Number(r.slice(dot + 1)), slab.subarray(at, end)]);
      at = end + 1;
    });
    if (!slab || fresh.length !== missing.size) {
      // Only a raw newline inside stored JSON (written around the store) gets here: render row by row.
      const one = `SELECT id, ${item.sql} FROM nodes WHERE id IN (SELECT value FROM json_each(?))`;
      const texts = this.withMaskers(spec, () => this.stmt(one).all(...item.params,
        JSON.stringify([...missing.keys()]))) as [number, string][];
      for (const [id, json] of texts) items[missing.get(id) as number] = Buffer.from(json);
      return;
    }
    for (const [id, , view] of fresh) items[missing.get(id) as number] = view;
    this.cache.setAll(slab, fresh.map(([id, version, view]) => [RenderCache.key(specId, id), version, view]));
  }

  private withMaskers<T>(spec: NodeJsonSpec, fn: () => T): T {
    this.maskers = spec.maskers;
    try {
      return fn();
    } finally {
      this.maskers = undefined;
    }
  }
}
