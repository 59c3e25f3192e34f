/**
 * Rendered node list items, kept per (render spec, node row id) and valid for one row version: nodes.version
 * is bumped by every UPDATE (explicitly, and by a trigger for any statement that forgets), and row ids are
 * never reused, so a hit is exactly what rendering the row again would produce. Clients poll node lists
 * (nova's ironic driver, operators' `node list --long`) while most nodes do not change; a hit costs a map
 * lookup instead of rendering ~60 fields. Least recently used out first.
 *
 * Items are views into the buffer they were rendered in (one per render, not one per item: a thousand small
 * buffers cost more in GC than the rendering); the budget counts those whole buffers while any view of
 * theirs is cached, so the memory held is what is counted.
 */
interface Slab {
  bytes: number;
  live: number;
}

interface Entry {
  version: number;
  buf: Buffer;
  slab: Slab;
}

export class RenderCache {
  private readonly specs = new Map<string, number>();
  private readonly items = new Map<number, Entry>();
  private bytes = 0;

  constructor(readonly maxBytes: number) {}

  /** A small number for a spec's key; specs past 64 distinct ones start the cache afresh. */
  specId(key: string): number {
    let id = this.specs.get(key);
    if (id === undefined) {
      if (this.specs.size >= 64) this.clear();
      id = this.specs.size;
      this.specs.set(key, id);
    }
    return id;
  }

  /** Cache key of row `rowId` rendered by spec `specId`. */
  static key(specId: number, rowId: number): number {
    return specId * 2 ** 40 + rowId;
  }

  get(key: number, version: number): Buffer | undefined {
    const e = this.items.get(key);
    if (!e) return undefined;
    this.items.delete(key);
    if (e.version !== version) {
      this.unref(e.slab);
      return undefined;
    }
    this.items.set(key, e);
    return e.buf;
  }

  /** Caches the views `items` ([key, version, view]) of one rendered `slab`. */
  setAll(slab: Buffer, items: readonly (readonly [number, number, Buffer])[]): void {
    if (this.maxBytes <= 0 || slab.length > this.maxBytes / 2) return;
    const s: Slab = { bytes: slab.length, live: 0 };
    for (const [key, version, buf] of items) {
      const old = this.items.get(key);
      if (old) {
        this.items.delete(key);
        this.unref(old.slab);
      }
      this.items.set(key, { version, buf, slab: s });
      if (s.live++ === 0) this.bytes += s.bytes;
    }
    for (const [k, e] of this.items) {
      if (this.bytes <= this.maxBytes) break;
      this.items.delete(k);
      this.unref(e.slab);
    }
  }

  private unref(s: Slab): void {
    if (--s.live === 0) this.bytes -= s.bytes;
  }

  clear(): void {
    this.specs.clear();
    this.items.clear();
    this.bytes = 0;
  }

  get size(): { entries: number; bytes: number } {
    return { entries: this.items.size, bytes: this.bytes };
  }
}
