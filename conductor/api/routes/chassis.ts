/** /v1/chassis: list (brief / detail / fields), create, show, JSON-patch update, delete, and the chassis' nodes. */
import type Router from '@koa/router';
import type { Context } from 'koa';
import type { ConductorContext } from '../../context.js';
import { InvalidParameterValue, IronicError } from '../../errors.js';
import { isUuid } from '../../locks.js';
import {
  CHASSIS_KEYS, chassisNotFound, createChassis, deleteChassis, getChassis, updateChassis,
} from '../../services/chassis.js';
import { parsePatch } from '../../services/jsonpatch.js';
import { listChassis, type ChassisRecord } from '../../store/chassis.js';
import { ident, noContent, parseLimit, parseSortDir, queryParams, readJson, readObject, state } from '../http.js';
import { links } from '../render.js';
import { listChassisNodes } from './nodes.js';
import { listPage, schemaKeys, wantedFields } from './listing.js';

const DEFAULT_FIELDS = ['uuid', 'description'];

/** Ironic's chassis convert_with_links. */
export function renderChassis(ch: ChassisRecord, base: string, fields?: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {
    uuid: ch.uuid, created_at: ch.created_at, updated_at: ch.updated_at, description: ch.description, extra: ch.extra,
    links: links(base, 'chassis', ch.uuid),
    // Ironic 21.4 builds this value with a trailing comma (a one-element tuple), so the link pair arrives nested in
    // a second list; clients only check the key, and we answer the same bytes.
    nodes: [links(base, 'chassis', `${ch.uuid}/nodes`)],
  };
  if (fields) {
    const bad = fields.filter((f) => !Object.hasOwn(out, f));
    if (bad.length) throw new InvalidParameterValue(`Field(s) "${bad.join(', ')}" are not valid`);
    for (const k of Object.keys(out)) if (!fields.includes(k) && k !== 'links') delete out[k];
  }
  return out;
}

async function list(c: ConductorContext, ctx: Context, detailRoute: boolean): Promise<void> {
  const { minor, base } = state(ctx);
  const q = queryParams(ctx, detailRoute ? ['marker', 'limit', 'sort_key', 'sort_dir']
    : ['fields', 'detail', 'marker', 'limit', 'sort_key', 'sort_dir']);
  const { fields, detail } = wantedFields(q, minor, DEFAULT_FIELDS);
  if (q.marker !== undefined && !isUuid(q.marker)) throw new InvalidParameterValue(`Expected UUID for marker: ${q.marker}`);
  if (q.sort_key === 'extra') throw new InvalidParameterValue('The sort_key value extra is an invalid field for sorting');
  const limit = parseLimit(q.limit, c.config.max_limit);
  const sortKey = q.sort_key ?? 'id';
  const sortDir = parseSortDir(q.sort_dir);
  const rows = await listChassis(c.store.sql, { limit, sort_key: sortKey, sort_dir: sortDir,
    ...(q.marker !== undefined ? { marker: q.marker.toLowerCase() } : {}) },
  (m) => chassisNotFound(m));
  ctx.body = listPage('chassis', rows.map((r) => renderChassis(r, base, detailRoute ? undefined : fields)), {
    base, resource: detailRoute ? 'chassis/detail' : 'chassis', limit, sortKey, sortDir, detail,
    fields: detailRoute ? undefined : fields,
  });
}

export function chassisRoutes(router: Router, c: ConductorContext): void {
  router.get('/v1/chassis', (ctx) => list(c, ctx, false));
  router.get('/v1/chassis/detail', (ctx) => list(c, ctx, true));

  router.post('/v1/chassis', async (ctx) => {
    const { base } = state(ctx);
    const body = await readObject(ctx, c.config.max_body_bytes);
    schemaKeys(body, CHASSIS_KEYS, 'chassis');
    const ch = await createChassis(c, body);
    ctx.status = 201;
    ctx.set('Location', `${base}/v1/chassis/${ch.uuid}`);
    ctx.body = renderChassis(ch, base);
  });

  router.get('/v1/chassis/:ident', async (ctx) => {
    const { minor, base } = state(ctx);
    const q = queryParams(ctx, ['fields']);
    const { fields } = wantedFields({ fields: q.fields }, minor, undefined);
    const ch = await getChassis(c, ident(ctx.params.ident));
    ctx.body = renderChassis(ch, base, fields);
  });

  router.patch('/v1/chassis/:ident', async (ctx) => {
    const { base } = state(ctx);
    const ops = parsePatch(await readJson(ctx, c.config.max_body_bytes));
    ctx.body = renderChassis(await updateChassis(c, ident(ctx.params.ident), ops), base);
  });

  router.delete('/v1/chassis/:ident', async (ctx) => {
    await deleteChassis(c, ident(ctx.params.ident));
    noContent(ctx, 204);
  });

  const nodes = (detail: boolean) => async (ctx: Context): Promise<void> => {
    const id = ident(ctx.params.ident);
    if (!isUuid(id)) throw new InvalidParameterValue(`Expected UUID for chassis_uuid: ${id}`);
    await listChassisNodes(c, ctx, detail, id.toLowerCase());
  };
  router.get('/v1/chassis/:ident/nodes', nodes(false));
  router.get('/v1/chassis/:ident/nodes/detail', nodes(true));
  // The chassis' node collection is read-only in Ironic (NodesController.from_chassis): writes and items are 403.
  const refused = async (): Promise<void> => {
    throw new IronicError('Operation not permitted.', 403, 'OperationNotPermitted');
  };
  router.post('/v1/chassis/:ident/nodes', refused);
  router.get('/v1/chassis/:ident/nodes/:node', refused);
}
