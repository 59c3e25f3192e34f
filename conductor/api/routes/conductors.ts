/**
 * GET /v1/conductors and /v1/conductors/{hostname} (API 1.49), as Ironic renders them: hostname,
 * conductor_group, alive (online and heartbeating within conductor.heartbeat_timeout) and links in lists;
 * drivers, created_at and updated_at too with detail=true, `fields`, or on a single conductor.
 */
import type Router from '@koa/router';
import type { ConductorContext } from '../../context.js';
import { InvalidParameterValue, NotFound } from '../../errors.js';
import type { ConductorRecord } from '../../store/types.js';
import { ident, parseBool, parseLimit, parseSortDir, queryParams, state } from '../http.js';
import { links } from '../render.js';

const FIELDS = ['alive', 'conductor_group', 'created_at', 'drivers', 'hostname', 'updated_at'] as const;
const BRIEF = ['hostname', 'conductor_group', 'alive'];
const SORT_KEYS = new Set(['hostname', 'conductor_group', 'created_at', 'updated_at']);

function parseFields(raw: string | undefined): string[] | undefined {
  if (raw === undefined) return undefined;
  const fields = raw.split(',').map((f) => f.trim()).filter(Boolean);
  const bad = fields.filter((f) => !(FIELDS as readonly string[]).includes(f));
  if (bad.length) throw new InvalidParameterValue(`Field(s) "${bad.join(', ')}" are not valid`);
  return fields;
}

function render(c: ConductorContext, r: ConductorRecord, base: string, fields: readonly string[],
  withLinks: boolean): Record<string, unknown> {
  const alive = c.cluster ? c.cluster.isAlive(r) : r.online;
  const all: Record<string, unknown> = { hostname: r.hostname, conductor_group: r.conductor_group, alive,
    drivers: r.drivers, created_at: r.created_at, updated_at: r.updated_at };
  const out: Record<string, unknown> = {};
  for (const f of fields) out[f] = all[f];
  if (withLinks) out.links = links(base, 'conductors', r.hostname);
  return out;
}

export function conductorRoutes(router: Router, c: ConductorContext): void {
  router.get('/v1/conductors', async (ctx) => {
    const { minor, base } = state(ctx);
    if (minor < 49) throw new NotFound('The resource could not be found.');
    const q = queryParams(ctx, ['fields', 'detail', 'marker', 'limit', 'sort_key', 'sort_dir']);
    const fields = parseFields(q.fields);
    const detail = parseBool('detail', q.detail) === true;
    if (fields && detail) throw new InvalidParameterValue('Can not specify ?detail=True and fields in the same request.');
    const limit = parseLimit(q.limit, c.config.max_limit);
    const key = q.sort_key ?? 'hostname';
    if (!SORT_KEYS.has(key)) throw new InvalidParameterValue(`The sort_key value "${key}" is an invalid field for sorting`);
    const dir = parseSortDir(q.sort_dir) === 'desc' ? -1 : 1;
    const val = (r: ConductorRecord): string => String((r as unknown as Record<string, unknown>)[key] ?? '');
    let rows = (await c.store.listConductors()).sort((a, b) =>
      dir * (val(a) < val(b) ? -1 : val(a) > val(b) ? 1 : a.hostname < b.hostname ? -1 : a.hostname > b.hostname ? 1 : 0));
    if (q.marker !== undefined) {
      const at = rows.findIndex((r) => r.hostname === q.marker);
      if (at < 0) throw new InvalidParameterValue(`Marker ${q.marker} could not be found.`);
      rows = rows.slice(at + 1);
    }
    const page = rows.slice(0, limit);
    const shown = fields ?? (detail ? FIELDS : BRIEF);
    const body: Record<string, unknown> = { conductors: page.map((r) => render(c, r, base, shown, fields === undefined)) };
    const last = page[page.length - 1];
    if (last && page.length === limit && rows.length > limit) {
      const echo = (['fields', 'detail', 'sort_key', 'sort_dir'] as const).filter((k) => q[k] !== undefined)
        .map((k) => `${k}=${encodeURIComponent(q[k] as string)}&`).join('');
      body.next = `${base}/v1/conductors?${echo}limit=${limit}&marker=${encodeURIComponent(last.hostname)}`;
    }
    ctx.body = body;
  });

  router.get('/v1/conductors/:hostname', async (ctx) => {
    const { minor, base } = state(ctx);
    if (minor < 49) throw new NotFound('The resource could not be found.');
    const q = queryParams(ctx, ['fields']);
    const fields = parseFields(q.fields);
    const name = ident(ctx.params.hostname);
    const row = (await c.store.listConductors()).find((r) => r.hostname === name);
    if (!row) throw new NotFound(`Conductor ${name} could not be found.`);
    ctx.body = render(c, row, base, fields ?? FIELDS, fields === undefined);
  });
}
