/**
 * Node lists of the PostgreSQL store rendered to JSON (node-json.ts) with the cache of rendered pages
 * (render-cache.ts). Several conductors may write the same rows, so a cached page is only ever served after
 * reading its rows' (id, version) from the database in the same request: every UPDATE bumps version (the store's
 * own statements, and the trigger for anyone else's), ids are never reused, so equal (id, version) lists render
 * equal bytes no matter which process changed what. A miss renders from one SELECT and caches the page under
 * the (id, version) of exactly the rows it rendered, so a write landing between the two reads can only cost a
 * miss, never a stale hit.
 */
import { nodeJsonRenderer } from './node-json.js';
import type { BuiltQuery } from './queries.js';
import { RenderCache } from './render-cache.js';
import type { Row } from './sqlite-rows.js';
import type { NodeJsonList, NodeJsonRow, NodeJsonSpec } from './types.js';

type Query = (sql: string, args: readonly unknown[], array?: boolean) => Promise<Row[]>;
type ListQuery = (select: string) => BuiltQuery;

export class PgNodeLists {
  private readonly cache: RenderCache;

  constructor(private readonly query: Query, cacheBytes: number) {
    this.cache = new RenderCache(cacheBytes);
  }

  async rows(list: ListQuery, spec: NodeJsonSpec): Promise<NodeJsonRow[]> {
    const render = nodeJsonRenderer(spec);
    const { sql, args } = list('*');
    return (await this.query(sql, args)).map((r) => ({ json: render(r), uuid: r.uuid as string,
      driver: r.driver as string, conductor_group: r.conductor_group as string }));
  }

  async page(list: ListQuery, spec: NodeJsonSpec): Promise<NodeJsonList> {
    const { maskers: _fns, ...keyed } = spec;
    const ids = list('id, version, uuid');
    const key = `${JSON.stringify(keyed)}\n${ids.sql}\n${JSON.stringify(ids.args)}`;
    if (this.cache.maxBytes > 0) {
      const rows = await this.query(ids.sql, ids.args, true) as unknown as [number, number, string][];
      const hit = this.cache.get(key, rows);
      if (hit) {
        const last = rows[rows.length - 1];
        return { items: hit, count: rows.length, ...(last ? { lastUuid: last[2] } : {}) };
      }
    }
    const render = nodeJsonRenderer(spec);
    const { sql, args } = list('*');
    const full = await this.query(sql, args);
    const items = Buffer.from(full.map(render).join(','), 'utf8');
    const last = full[full.length - 1];
    if (this.cache.maxBytes > 0) this.cache.set(key, full.map((r) => [r.id as number, r.version as number]), items);
    return { items, count: full.length, ...(last ? { lastUuid: last.uuid as string } : {}) };
  }
}
