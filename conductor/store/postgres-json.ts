/**
 * Node list items rendered to JSON mostly by PostgreSQL (as SQLite renders them itself, sqlite-json.ts): each row
 * comes back as a few text segments that PostgreSQL built (scalars through to_json, booleans, stored JSON
 * columns spliced as they are, links), and between them the few values that only JS can render: the hash ring's
 * owner (spec.conductor.owners) and the raw text of JSON columns that may hold a secret, which go through the
 * spec's masker exactly as node-json.ts does. The conductor then parses ~10 values per row instead of ~60, and
 * builds no JSON for the rest (a 1,000-node page costs it a fraction of the JS rendering, and none of it depends
 * on warm JIT code). Same bytes as node-json.ts / renderNode (conductor-render.test.ts checks both stores).
 */
import { specFields, type NodeJsonSpec } from './types.js';

/** The SELECT list of a rendered row, its bound parameters, and the JS that joins a row (array mode) into JSON. */
export interface PgNodeJson {
  select: string;
  params: unknown[];
  /** The item JSON of a row read with `select`. */
  render(row: readonly unknown[]): string;
  /** Index of id, version and uuid in the row (after the rendering columns). */
  at: { id: number; version: number; uuid: number };
}

/** A PostgreSQL string literal of text made of safe characters only (field names, JSON punctuation). */
function lit(s: string): string {
  if (!/^[a-z_{}",:[\]]*$/.test(s)) throw new Error(`unexpected literal ${s}`);
  return `'${s}'`;
}

type Piece = { sql: string } | { js: (row: readonly unknown[]) => string; cols: string[] };

/** JSON text of a scalar (what JSON.stringify gives; null for SQL NULL). */
function quote(v: unknown): string {
  return v === null || v === undefined ? 'null' : JSON.stringify(v);
}

function hinted(raw: string, hints: readonly string[]): boolean {
  const low = raw.toLowerCase();
  return hints.some((h) => low.includes(h.toLowerCase()));
}

export function pgNodeJson(spec: NodeJsonSpec): PgNodeJson {
  const params: unknown[] = [];
  const pieces: Piece[] = [];
  const text = (s: string): void => { pieces.push({ sql: lit(s) }); };
  text('{');
  for (const f of specFields(spec)) {
    text(f.key);
    const name = f.name;
    switch (f.fmt) {
      case 'conductor': {
        const { host, group, drivers, owners } = spec.conductor;
        if (owners) {
          pieces.push({ cols: ['uuid', 'driver', 'conductor_group'], js: (r) => quote(owners.of({ uuid: r[0] as string,
            driver: r[1] as string, conductor_group: r[2] as string })) });
          break;
        }
        pieces.push({ sql: `CASE WHEN conductor_group = CAST(? AS text) AND driver = ANY(CAST(? AS text[])) ` +
          `THEN CAST(? AS text) ELSE 'null' END` });
        params.push(group, [...drivers], quote(host));
        break;
      }
      case 'bool':
        pieces.push({ sql: `CASE WHEN ${name} IS NULL THEN 'null' WHEN ${name} = 1 THEN 'true' ELSE 'false' END` });
        break;
      case 'json': {
        const m = spec.maskers?.[name];
        if (m) {
          // The raw text to JS, which decides (node-json.ts's own check) whether the masker sees it.
          pieces.push({ cols: [name], js: (r) => {
            const raw = r[0];
            if (typeof raw !== 'string') return 'null';
            return m && hinted(raw, m.hints) ? m.mask(raw) : raw;
          } });
        } else {
          pieces.push({ sql: `coalesce(${name}, 'null')` });
        }
        break;
      }
      default:
        pieces.push({ sql: `coalesce(to_json(${name})::text, 'null')` });
    }
  }
  const esc = (s: string): string => JSON.stringify(s).slice(1, -1);
  for (const [key, suffix] of spec.links) {
    if (!/^[a-z_]+$/.test(key)) throw new Error(`bad link key ${key}`);
    text(`,"${key}":[{"href":"`);
    pieces.push({ sql: 'CAST(? AS text)' }, { sql: 'uuid' }, { sql: 'CAST(? AS text)' });
    text('","rel":"self"},{"href":"');
    pieces.push({ sql: 'CAST(? AS text)' }, { sql: 'uuid' }, { sql: 'CAST(? AS text)' });
    text('","rel":"bookmark"}]');
    params.push(esc(`${spec.base}/v1/nodes/`), esc(suffix), esc(`${spec.base}/nodes/`), esc(suffix));
  }
  text('}');

  // Consecutive SQL pieces become one text column; each JS piece reads its own columns.
  const cols: string[] = [];
  const parts: ((row: readonly unknown[]) => string)[] = [];
  let run: string[] = [];
  const flush = (): void => {
    if (run.length === 0) return;
    const i = cols.push(run.join(' || ')) - 1;
    parts.push((r) => r[i] as string);
    run = [];
  };
  for (const p of pieces) {
    if ('sql' in p) { run.push(p.sql); continue; }
    flush();
    const from = cols.length;
    cols.push(...p.cols);
    const js = p.js;
    const n = p.cols.length;
    parts.push((r) => js(r.slice(from, from + n)));
  }
  flush();
  const at = { id: cols.length, version: cols.length + 1, uuid: cols.length + 2 };
  cols.push('id', 'version', 'uuid');
  return {
    select: cols.join(', '),
    params,
    render: (row) => {
      let out = '';
      for (const p of parts) out += p(row);
      return out;
    },
    at,
  };
}
