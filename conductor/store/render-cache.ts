/**
 * Rendered node list pages, reused while the page would render the same: a request for the same list (same
 * render spec, filters, order and page) first reads only (id, version) of its rows, and when those equal the
 * cached page's, the cached items are the answer. nodes.version is bumped by every UPDATE (explicitly, and by a
 * trigger for any statement that forgets) and row ids are never reused, so equal (id, version) lists render
 * equal bytes. Clients poll node lists (nova's ironic driver, `baremetal node list --long`) while most nodes do
 * not change; any change in a page renders the whole page again, which costs what it costs without a cache.
 * Bounded by bytes, least recently used out first. A page is kept from its second request on: lists asked for
 * once (paging through everything, one-off filters) would only churn the cache and leave garbage behind.
 */
export interface CachedPage {
  /** id, version, id, version, ... of the page's rows, in order. */
  rows: Float64Array;
  items: Buffer;
}

export class RenderCache {
  private readonly pages = new Map<string, CachedPage>();
  /** Keys rendered once (not kept yet). */
  private readonly seen = new Set<string>();
  private bytes = 0;

  constructor(readonly maxBytes: number) {}

  /** The cached page for `key` if its rows are exactly `rows` ([id, version, ...][]). */
  get(key: string, rows: readonly (readonly [number, number, ...unknown[]])[]): Buffer | undefined {
    const p = this.pages.get(key);
    if (!p || p.rows.length !== rows.length * 2) return undefined;
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i] as readonly [number, number];
      if (p.rows[2 * i] !== r[0] || p.rows[2 * i + 1] !== r[1]) return undefined;
    }
    this.pages.delete(key);
    this.pages.set(key, p);
    return p.items;
  }

  set(key: string, rows: readonly (readonly [number, number, ...unknown[]])[], items: Buffer): void {
    const size = items.length + rows.length * 16 + key.length;
    if (size > this.maxBytes / 2) return;
    if (!this.pages.has(key) && !this.seen.has(key)) {
      if (this.seen.size >= 256) this.seen.delete(this.seen.values().next().value as string);
      this.seen.add(key);
      return;
    }
    this.seen.delete(key);
    this.delete(key);
    const ids = new Float64Array(rows.length * 2);
    rows.forEach((r, i) => { ids[2 * i] = r[0]; ids[2 * i + 1] = r[1]; });
    this.pages.set(key, { rows: ids, items });
    this.bytes += size;
    for (const k of this.pages.keys()) {
      if (this.bytes <= this.maxBytes) break;
      this.delete(k);
    }
  }

  private delete(key: string): void {
    const p = this.pages.get(key);
    if (!p) return;
    this.pages.delete(key);
    this.bytes -= p.items.length + p.rows.length * 8 + key.length;
  }

  get size(): { pages: number; bytes: number } {
    return { pages: this.pages.size, bytes: this.bytes };
  }
}
