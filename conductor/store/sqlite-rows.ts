/**
 * Node and port rows of the SQLite store: column types, values to and from the database (JSON columns are
 * stored as JSON text, booleans as 0/1), and the sortable columns.
 */
import { InvalidParameterValue } from '../errors.js';
import { INTERFACE_FIELDS, JSON_FIELDS, JsonObjectSchema, TraitsSchema, type NodeRecord, type PortRecord, type Row } from './types.js';

export type { Row };

export type ColType = 'text' | 'bool' | 'json' | 'traits' | 'int';

export const NODE_COLS: Record<string, ColType> = {
  id: 'int', uuid: 'text', name: 'text', created_at: 'text', updated_at: 'text', driver: 'text',
  instance_uuid: 'text', chassis_uuid: 'text', power_state: 'text', target_power_state: 'text',
  provision_state: 'text', target_provision_state: 'text', provision_updated_at: 'text', last_error: 'text',
  maintenance: 'bool', maintenance_reason: 'text', fault: 'text', reservation: 'text', console_enabled: 'bool',
  inspection_started_at: 'text', inspection_finished_at: 'text', resource_class: 'text', traits: 'traits',
  conductor_group: 'text', allocation_uuid: 'text', automated_clean: 'bool', protected: 'bool',
  protected_reason: 'text', owner: 'text', lessee: 'text', description: 'text', retired: 'bool',
  retired_reason: 'text', boot_mode: 'text', secure_boot: 'bool', shard: 'text',
  ...Object.fromEntries(INTERFACE_FIELDS.map((f) => [f, 'text' as const])),
  ...Object.fromEntries(JSON_FIELDS.map((f) => [f, 'json' as const])),
};
export const PORT_COLS: Record<string, ColType> = {
  id: 'int', uuid: 'text', address: 'text', node_uuid: 'text', extra: 'json', internal_info: 'json',
  local_link_connection: 'json', pxe_enabled: 'bool', physical_network: 'text', portgroup_uuid: 'text',
  is_smartnic: 'bool', created_at: 'text', updated_at: 'text',
};
const NODE_COL_NAMES = Object.keys(NODE_COLS);
export const NODE_JSON_COLS = NODE_COL_NAMES.filter((c) => NODE_COLS[c] === 'json' || NODE_COLS[c] === 'traits');
const NODE_BOOL_COLS = NODE_COL_NAMES.filter((c) => NODE_COLS[c] === 'bool');

/** Columns a list may be sorted by (JSON columns are refused, as Ironic does). */
export const NODE_SORT_KEYS: ReadonlySet<string> = new Set(NODE_COL_NAMES.filter((c) => NODE_COLS[c] !== 'json' &&
  NODE_COLS[c] !== 'traits'));
export const PORT_SORT_KEYS: ReadonlySet<string> = new Set(['id', 'uuid', 'address', 'node_uuid', 'pxe_enabled',
  'physical_network', 'created_at', 'updated_at']);

export function toDb(col: string, type: ColType | undefined, v: unknown): unknown {
  if (type === undefined) throw new InvalidParameterValue(`Unknown attribute: ${col}`);
  if (v === undefined || v === null) {
    if (type === 'json') return '{}';
    if (type === 'traits') return '[]';
    return null;
  }
  switch (type) {
    case 'bool': return v ? 1 : 0;
    case 'json': {
      // A plain object needs no schema pass (the hot path); zod decides the rest, as it always did.
      const proto = typeof v === 'object' ? Object.getPrototypeOf(v) as unknown : undefined;
      if ((proto === Object.prototype || proto === null) && !Object.hasOwn(v as object, '__proto__')) return JSON.stringify(v);
      const r = JsonObjectSchema.safeParse(v);
      if (!r.success) throw new InvalidParameterValue(`Field "${col}" must be a JSON object.`);
      return JSON.stringify(r.data);
    }
    case 'traits': {
      const r = TraitsSchema.safeParse(v);
      if (!r.success) throw new InvalidParameterValue(`Field "${col}" must be a list of strings.`);
      return JSON.stringify(r.data);
    }
    default:
      if (typeof v === 'object') throw new InvalidParameterValue(`Field "${col}" must be a scalar.`);
      return v;
  }
}

/** JSON column text to a value; most columns hold an empty object, which needs no parser. */
function parseJsonCol(text: string): unknown {
  return text === '{}' ? {} : text === '[]' ? [] : JSON.parse(text);
}

export function nodeFromRow(row: Row): NodeRecord {
  for (const c of NODE_JSON_COLS) row[c] = parseJsonCol(row[c] as string);
  for (const c of NODE_BOOL_COLS) if (row[c] !== null) row[c] = row[c] === 1;
  return row as unknown as NodeRecord;
}

export function portFromRow(row: Row): PortRecord {
  row.extra = parseJsonCol(row.extra as string);
  row.internal_info = parseJsonCol(row.internal_info as string);
  row.local_link_connection = parseJsonCol(row.local_link_connection as string);
  row.pxe_enabled = row.pxe_enabled === 1;
  row.is_smartnic = row.is_smartnic === 1;
  return row as unknown as PortRecord;
}

export function uniqueViolation(e: unknown): string | undefined {
  const msg = (e as { code?: string; message?: string });
  if (msg.code !== 'SQLITE_CONSTRAINT_UNIQUE') return undefined;
  const m = /UNIQUE constraint failed: \w+\.(\w+)/.exec(msg.message ?? '');
  return m?.[1] ?? 'unknown';
}
