/**
 * Node list items rendered to JSON in JS from raw rows, for the PostgreSQL store (SQLite renders them in SQL,
 * sqlite-json.ts). Same contract: the bytes the API's renderNode would produce. Stored JSON columns are spliced
 * in as they are (JSON.stringify output, validated on the way in); only values that may hold a secret go through
 * the spec's masker.
 */
import { specFields, type NodeJsonSpec } from './types.js';

type Part = (row: Record<string, unknown>) => string;

/** JSON text of a scalar column (what SQLite's json_quote gives). */
function quote(v: unknown): string {
  return v === null || v === undefined ? 'null' : JSON.stringify(v);
}

/** LIKE '%hint%' is case-insensitive for ASCII: a value with a hint in any case goes to the masker. */
function hinted(raw: string, hints: readonly string[]): boolean {
  const low = raw.toLowerCase();
  return hints.some((h) => low.includes(h.toLowerCase()));
}

/** A function rendering one raw row (columns as stored) as `spec` says. */
export function nodeJsonRenderer(spec: NodeJsonSpec): (row: Record<string, unknown>) => string {
  const parts: Part[] = [];
  for (const f of specFields(spec)) {
    const prefix = f.key;
    const name = f.name;
    switch (f.fmt) {
      case 'conductor': {
        const { host, group, drivers, owners } = spec.conductor;
        if (owners) {
          parts.push((r) => prefix + quote(owners.of(r as { uuid: string; driver: string; conductor_group: string })));
          break;
        }
        const hostJson = quote(host);
        const set = new Set(drivers);
        parts.push((r) => prefix + (r.conductor_group === group && set.has(r.driver as string) ? hostJson : 'null'));
        break;
      }
      case 'bool':
        parts.push((r) => prefix + (r[name] === null || r[name] === undefined ? 'null' : r[name] === 1 ? 'true' : 'false'));
        break;
      case 'json': {
        const m = spec.maskers?.[name];
        parts.push((r) => {
          const raw = r[name];
          if (typeof raw !== 'string') return `${prefix}null`;
          return prefix + (m && hinted(raw, m.hints) ? m.mask(raw) : raw);
        });
        break;
      }
      default:
        parts.push((r) => prefix + quote(r[name]));
    }
  }
  const esc = (s: string): string => JSON.stringify(s).slice(1, -1);
  const self = esc(`${spec.base}/v1/nodes/`);
  const book = esc(`${spec.base}/nodes/`);
  for (const [key, suffix] of spec.links) {
    if (!/^[a-z_]+$/.test(key)) throw new Error(`bad link key ${key}`);
    const s = esc(suffix);
    parts.push((r) => `,"${key}":[{"href":"${self}${String(r.uuid)}${s}","rel":"self"},` +
      `{"href":"${book}${String(r.uuid)}${s}","rel":"bookmark"}]`);
  }
  return (row) => {
    let out = '{';
    for (const p of parts) out += p(row);
    return `${out}}`;
  };
}
