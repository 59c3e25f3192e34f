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
  /**
   * id, version, id, version, ... of the page's rows, in order; or the same as text, `id:version,id:version,...`
   * (what the PostgreSQL store reads in one aggregated row instead of one row per node: getText/setText).
   */
  rows: Float64Array | string;
  items: Buffer;
  /** The last row's UUID (text-keyed pages, whose check reads no UUIDs). */
  lastUuid?: string;
}

/** The text signature of rows: `id:version` joined by commas, as PostgreSQL's string_agg builds it. */
export function rowsText(rows: readonly (readonly [number | string, number | string, ...unknown[]])[]): string {
  let s = '';
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i] as readonly [number | string, number | string];
    s += `${i ? ',' : ''}${r[0]}:${r[1]}`;
  }
  return s;
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
    if (!p || typeof p.rows === 'string' || p.rows.length !== rows.length * 2) return undefined;
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i] as readonly [number, number];
      if (p.rows[2 * i] !== r[0] || p.rows[2 * i + 1] !== r[1]) return undefined;
    }
    this.pages.delete(key);
    this.pages.set(key, p);
    return p.items;
  }

  set(key: string, rows: readonly (readonly [number, number, ...unknown[]])[], items: Buffer): void {
    if (!this.admit(key, items.length + rows.length * 16 + key.length)) return;
    const ids = new Float64Array(rows.length * 2);
    rows.forEach((r, i) => { ids[2 * i] = r[0]; ids[2 * i + 1] = r[1]; });
    this.put(key, { rows: ids, items });
  }

  /** The cached page for `key` if its rows' text signature (rowsText) is exactly `sig`. */
  getText(key: string, sig: string): CachedPage | undefined {
    const p = this.pages.get(key);
    if (!p || p.rows !== sig) return undefined;
    this.pages.delete(key);
    this.pages.set(key, p);
    return p;
  }

  /**
   * Keeps a page under its rows' text signature. `firstTime`: kept from the first render on, for pages that
   * are expensive to render and likely asked again (see PgNodeLists).
   */
  setText(key: string, sig: string, items: Buffer, lastUuid: string | undefined, firstTime = false): void {
    if (!this.admit(key, items.length + sig.length * 2 + key.length, firstTime)) return;
    this.put(key, { rows: sig, items, ...(lastUuid !== undefined ? { lastUuid } : {}) });
  }

  /** Whether a page of `size` bytes is kept now (else only remembered as seen once). */
  private admit(key: string, size: number, firstTime = false): boolean {
    if (size > this.maxBytes / 2) return false;
    if (!firstTime && !this.pages.has(key) && !this.seen.has(key)) {
      if (this.seen.size >= 256) this.seen.delete(this.seen.values().next().value as string);
      this.seen.add(key);
      return false;
    }
    this.seen.delete(key);
    return true;
  }

  private put(key: string, page: CachedPage): void {
    this.delete(key);
    this.pages.set(key, page);
    this.bytes += pageBytes(key, page);
    for (const k of this.pages.keys()) {
      if (this.bytes <= this.maxBytes) break;
      this.delete(k);
    }
  }

  private delete(key: string): void {
    const p = this.pages.get(key);
    if (!p) return;
    this.pages.delete(key);
    this.bytes -= pageBytes(key, p);
  }

  get size(): { pages: number; bytes: number } {
    return { pages: this.pages.size, bytes: this.bytes };
  }
}

function pageBytes(key: string, p: CachedPage): number {
  return p.items.length + (typeof p.rows === 'string' ? p.rows.length * 2 : p.rows.length * 8) + key.length;
}
