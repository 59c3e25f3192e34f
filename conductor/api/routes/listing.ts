/**
 * List plumbing shared by the chassis and portgroup routes, as Ironic's collection.py and api utils do it:
 * `fields` / `detail` negotiation, the `next` link (sort_key, sort_dir, detail, fields, then limit and marker), and
 * the schema's additionalProperties error.
 */
import { InvalidParameterValue, NotAcceptable } from '../../errors.js';
import { parseBool } from '../http.js';

/**
 * `fields` (1.8+, else 406) and `detail` (1.43+, else 400 as get_request_return_fields says). `defaults`: the brief
 * list's fields, used when neither is given (undefined for a single resource: everything).
 */
export function wantedFields(q: { fields?: string | undefined; detail?: string | undefined }, minor: number,
  defaults: readonly string[] | undefined): { fields?: string[]; detail?: boolean } {
  if (q.fields !== undefined && minor < 8) throw new NotAcceptable();
  const fields = q.fields?.split(',').map((f) => f.trim()).filter(Boolean);
  const detail = parseBool('detail', q.detail);
  if (detail !== undefined && minor < 43) throw new InvalidParameterValue(`Invalid query parameter ?detail=${q.detail as string} received.`);
  if (fields !== undefined && detail) throw new InvalidParameterValue('Can not specify ?detail=True and fields in the same request.');
  const out: { fields?: string[]; detail?: boolean } = {};
  if (detail !== undefined) out.detail = detail;
  if (fields !== undefined) out.fields = fields;
  else if (!detail && defaults) out.fields = [...defaults];
  return out;
}

export interface PageOptions {
  base: string;
  /** Path under /v1 (`portgroups/detail`, ...). */
  resource: string;
  limit: number;
  sortKey: string;
  sortDir: string;
  detail?: boolean | undefined;
  fields?: readonly string[] | undefined;
}

/** `{<name>: items, next?}`; `next` only when the page is full, built as Ironic's get_next builds it. */
export function listPage(name: string, items: Record<string, unknown>[], o: PageOptions): Record<string, unknown> {
  const body: Record<string, unknown> = { [name]: items };
  const last = items[items.length - 1];
  if (last && items.length === o.limit) {
    let args = `sort_key=${o.sortKey}&sort_dir=${o.sortDir}&`;
    if (o.detail !== undefined) args += `detail=${o.detail ? 'True' : 'False'}&`;
    if (o.fields?.length) args += `fields=${o.fields.join(',')}&`;
    body.next = `${o.base}/v1/${o.resource}?${args}limit=${o.limit}&marker=${String(last.uuid)}`;
  }
  return body;
}

/** jsonschema's additionalProperties error through Ironic's args.schema wording. */
export function schemaKeys(body: Record<string, unknown>, allowed: readonly string[], name: string): void {
  const extra = Object.keys(body).filter((k) => !allowed.includes(k));
  if (extra.length) {
    throw new InvalidParameterValue(`Schema error for ${name}: Additional properties are not allowed ` +
      `(${extra.map((k) => `'${k}'`).join(', ')} ${extra.length > 1 ? 'were' : 'was'} unexpected)`);
  }
}
