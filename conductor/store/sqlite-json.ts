/**
 * Node list items rendered to JSON text by SQLite itself (json_object), one string per row. Lists of 1,000
 * nodes are the API's heaviest responses; building them in C from the stored JSON text avoids reading ~60
 * values per row into JS and concatenating them there (10x less CPU). Only secret masking runs in JS, and only
 * for values that may hold a secret.
 */
import type Database from 'better-sqlite3';
import type { NodeJsonSpec } from './types.js';

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
export function registerMaskFunction(db: Database.Database, current: () => NodeJsonSpec['maskers']): void {
  db.function(MASK_FN, { deterministic: false, varargs: false }, (field: unknown, raw: unknown) => {
    const m = current()?.[String(field)];
    return m && typeof raw === 'string' ? m.mask(raw) : raw;
  });
}
