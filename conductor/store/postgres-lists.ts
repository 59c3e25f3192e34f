/**
 * Node lists of the PostgreSQL store rendered to JSON (pages: postgres-json.ts, by the database; rows for the
 * conductor filter: node-json.ts) with the cache of rendered pages
 * (render-cache.ts). Several conductors may write the same rows, so a cached page is only ever served after
 * reading its rows' (id, version) from the database in the same request: every UPDATE bumps version (the store's
 * own statements, and the trigger for anyone else's), ids are never reused, so equal (id, version) lists render
 * equal bytes no matter which process changed what. A miss renders from one SELECT and caches the page under
 * the (id, version) of exactly the rows it rendered, so a write landing between the two reads can only cost a
 * miss, never a stale hit.
 */
import { nodeJsonRenderer } from './node-json.js';
import { pgNodeJson } from './postgres-json.js';
import type { BuiltQuery } from './queries.js';
import { RenderCache, rowsText } from './render-cache.js';
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

  /**
   * A page of items joined by commas. `firstTime`: keep the page from its first render on (see RenderCache):
   * the PostgreSQL store's conductors each keep their own cache while clients spread their polling over all of
   * them, so a page polled through N conductors would otherwise be rendered twice on each before any hit.
   */
  async page(list: ListQuery, spec: NodeJsonSpec, firstTime = false): Promise<NodeJsonList> {
    const { maskers: _fns, ...keyed } = spec;
    const ids = list('id, version');
    const key = `${JSON.stringify(keyed)}\n${ids.sql}\n${JSON.stringify(ids.args)}`;
    if (this.cache.maxBytes > 0) {
      // The page's (id, version) list as one text value in one row: the check costs one small row to parse
      // whatever the page size (the ids query's ORDER BY feeds the aggregate; should PostgreSQL ever aggregate in
      // another order, the text differs and the check misses, it never matches wrongly).
      const check = `SELECT count(*) AS n, coalesce(string_agg(id::text || ':' || version::text, ','), '') AS sig ` +
        `FROM (${ids.sql}) AS page`;
      const [row] = await this.query(check, ids.args, true) as unknown as [string | number, string][];
      const hit = row ? this.cache.getText(key, row[1]) : undefined;
      if (hit) return { items: hit.items, count: Number(row?.[0]), ...(hit.lastUuid ? { lastUuid: hit.lastUuid } : {}) };
    }
    const item = pgNodeJson(spec);
    const { sql, args } = list(item.select);
    const full = await this.query(sql, [...item.params, ...args], true) as unknown as unknown[][];
    const items = Buffer.from(full.map(item.render).join(','), 'utf8');
    const last = full[full.length - 1]?.[item.at.uuid] as string | undefined;
    // Kept under the (id, version) of exactly the rows rendered: a write between the check and this read costs
    // a miss next time, never a stale hit.
    if (this.cache.maxBytes > 0) {
      const sig = rowsText(full.map((r) => [r[item.at.id] as number, r[item.at.version] as number]));
      this.cache.setText(key, sig, items, last, firstTime);
    }
    return { items, count: full.length, ...(last ? { lastUuid: last } : {}) };
  }
}
