/**
 * /v1/portgroups (1.23+; below it the resource does not exist: 404), /v1/nodes/{n}/portgroups and
 * /v1/portgroups/{pg}/ports (1.24+, 404 below), and the node's VIFs (1.28+, 404 below).
 */
import type Router from '@koa/router';
import type { Context, Next } from 'koa';
import type { ConductorContext } from '../../context.js';
import { InvalidParameterValue, IronicError, NotAcceptable } from '../../errors.js';
import { isUuid } from '../../locks.js';
import { parsePatch } from '../../services/jsonpatch.js';
import {
  createPortgroup, deletePortgroup, getPortgroup, PORTGROUP_KEYS, updatePortgroup,
} from '../../services/portgroups.js';
import { attachVif, checkAttachBody, detachVif, listVifs } from '../../services/vifs.js';
import { getPortgroup as readPortgroup, listPortgroups, type PortgroupRecord } from '../../store/portgroups.js';
import {
  ident, noContent, parseLimit, parseSortDir, queryParams, readJson, readObject, sendError, state,
} from '../http.js';
import { links } from '../render.js';
import { listPage, schemaKeys, wantedFields } from './listing.js';
import { listPortgroupPorts } from './ports.js';

const DEFAULT_FIELDS = ['uuid', 'address', 'name'];
const MAC_RE = /^([0-9a-f]{2}[:-]){5}[0-9a-f]{2}$/i;
const UNSORTABLE = ['extra', 'internal_info', 'properties'];

/** Ironic's portgroup convert_with_links (fields given: only those, plus links). */
export function renderPortgroup(pg: PortgroupRecord, base: string, fields?: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {
    uuid: pg.uuid, created_at: pg.created_at, updated_at: pg.updated_at, address: pg.address, extra: pg.extra,
    internal_info: pg.internal_info, mode: pg.mode, name: pg.name, properties: pg.properties,
    standalone_ports_supported: pg.standalone_ports_supported, node_uuid: pg.node_uuid,
    links: links(base, 'portgroups', pg.uuid), ports: links(base, 'portgroups', `${pg.uuid}/ports`),
  };
  if (fields) {
    const bad = fields.filter((f) => !Object.hasOwn(out, f));
    if (bad.length) throw new InvalidParameterValue(`Field(s) "${bad.join(', ')}" are not valid`);
    for (const k of Object.keys(out)) if (!fields.includes(k) && k !== 'links') delete out[k];
  }
  return out;
}

/** mode/properties (in `fields` or as the sort key) need 1.26. */
function checkModeFields(names: readonly (string | undefined)[], minor: number): void {
  if (minor < 26 && names.some((f) => f === 'mode' || f === 'properties')) throw new NotAcceptable();
}

/**
 * A route that does not exist below `minor`: 404. The portgroup controller raises Ironic's NotFound itself
 * ("Resource could not be found."); node sub-resources are refused by pecan's routing (the generic text).
 */
function since(minor: number, message = 'The resource could not be found.') {
  return async (ctx: Context, next: Next): Promise<void> => {
    if (state(ctx).minor < minor) {
      sendError(ctx, 404, message);
      return;
    }
    await next();
  };
}

async function list(c: ConductorContext, ctx: Context, detailRoute: boolean, nodeIdent?: string): Promise<void> {
  const { minor, base } = state(ctx);
  const q = queryParams(ctx, detailRoute ? ['node', 'address', 'marker', 'limit', 'sort_key', 'sort_dir']
    : ['node', 'address', 'fields', 'detail', 'marker', 'limit', 'sort_key', 'sort_dir']);
  const requested = q.fields?.split(',').map((f) => f.trim());
  checkModeFields(requested ?? [], minor);
  checkModeFields([q.sort_key], minor);
  const { fields, detail } = wantedFields(q, minor, DEFAULT_FIELDS);
  if (q.address !== undefined && !MAC_RE.test(q.address)) {
    throw new InvalidParameterValue(`Expected valid MAC address for address: ${q.address}`);
  }
  if (q.marker !== undefined && !isUuid(q.marker)) throw new InvalidParameterValue(`Expected UUID for marker: ${q.marker}`);
  const limit = parseLimit(q.limit, c.config.max_limit);
  const sortKey = q.sort_key ?? 'id';
  const sortDir = parseSortDir(q.sort_dir);
  if (UNSORTABLE.includes(sortKey)) throw new InvalidParameterValue(`The sort_key value ${sortKey} is an invalid field for sorting`);
  const page = { limit, sort_key: sortKey, sort_dir: sortDir, ...(q.marker !== undefined ? { marker: q.marker.toLowerCase() } : {}) };
  const missing = (m: string): Error => new IronicError(`Portgroup ${m} could not be found.`, 404, 'PortgroupNotFound');
  const nodeRef = nodeIdent ?? q.node;
  let rows: PortgroupRecord[];
  if (nodeRef !== undefined) {
    const node = await c.tasks.findNode(nodeRef);
    rows = await listPortgroups(c.store.sql, { ...page, node_uuid: node.uuid }, missing);
  } else if (q.address !== undefined) {
    const pg = await readPortgroup(c.store.sql, 'address', q.address.toLowerCase().replace(/-/g, ':'));
    rows = pg ? [pg] : [];
  } else {
    rows = await listPortgroups(c.store.sql, page, missing);
  }
  ctx.body = listPage('portgroups', rows.map((r) => renderPortgroup(r, base, detailRoute ? undefined : fields)), {
    base, resource: detailRoute ? 'portgroups/detail' : 'portgroups', limit, sortKey, sortDir, detail,
    fields: detailRoute ? undefined : fields,
  });
}

export function portgroupRoutes(router: Router, c: ConductorContext): void {
  const v23 = since(23, 'Resource could not be found.');
  const v24 = since(24);
  const v28 = since(28);
  router.get('/v1/portgroups', v23, (ctx) => list(c, ctx, false));
  router.get('/v1/portgroups/detail', v23, (ctx) => list(c, ctx, true));

  router.post('/v1/portgroups', v23, async (ctx) => {
    const { minor, base } = state(ctx);
    const body = await readObject(ctx, c.config.max_body_bytes);
    schemaKeys(body, PORTGROUP_KEYS, 'portgroup');
    const pg = await createPortgroup(c, body, minor);
    ctx.status = 201;
    ctx.set('Location', `${base}/v1/portgroups/${pg.uuid}`);
    ctx.body = renderPortgroup(pg, base);
  });

  router.get('/v1/portgroups/:ident', v23, async (ctx) => {
    const { minor, base } = state(ctx);
    const q = queryParams(ctx, ['fields']);
    checkModeFields(q.fields?.split(',').map((f) => f.trim()) ?? [], minor);
    const { fields } = wantedFields({ fields: q.fields }, minor, undefined);
    ctx.body = renderPortgroup(await getPortgroup(c, ident(ctx.params.ident)), base, fields);
  });

  router.patch('/v1/portgroups/:ident', v23, async (ctx) => {
    const { minor, base } = state(ctx);
    const ops = parsePatch(await readJson(ctx, c.config.max_body_bytes));
    ctx.body = renderPortgroup(await updatePortgroup(c, ident(ctx.params.ident), ops, minor), base);
  });

  router.delete('/v1/portgroups/:ident', v23, async (ctx) => {
    await deletePortgroup(c, ident(ctx.params.ident));
    noContent(ctx, 204);
  });

  router.get('/v1/portgroups/:ident/ports', v24, (ctx) => listPortgroupPorts(c, ctx, ident(ctx.params.ident), false));
  router.get('/v1/portgroups/:ident/ports/detail', v24, (ctx) => listPortgroupPorts(c, ctx, ident(ctx.params.ident), true));
  router.get('/v1/nodes/:ident/portgroups', v24, (ctx) => list(c, ctx, false, ident(ctx.params.ident)));
  router.get('/v1/nodes/:ident/portgroups/detail', v24, (ctx) => list(c, ctx, true, ident(ctx.params.ident)));
  // Ironic serves the node's portgroup collection read-only: one item through it is refused once it is found.
  const refused = async (ctx: Context): Promise<void> => {
    if (ctx.params.pg !== undefined) await getPortgroup(c, ident(ctx.params.pg));
    throw new IronicError('Operation not permitted.', 403, 'OperationNotPermitted');
  };
  router.get('/v1/nodes/:ident/portgroups/:pg', v24, refused);
  router.patch('/v1/nodes/:ident/portgroups/:pg', v24, refused);
  router.delete('/v1/nodes/:ident/portgroups/:pg', v24, refused);
  router.post('/v1/nodes/:ident/portgroups', v24, refused);

  router.get('/v1/nodes/:ident/vifs', v28, async (ctx) => {
    queryParams(ctx, []);
    ctx.body = { vifs: await listVifs(c, ident(ctx.params.ident)) };
  });
  router.post('/v1/nodes/:ident/vifs', v28, async (ctx) => {
    const body = await readObject(ctx, c.config.max_body_bytes, 'vif');
    if (!('id' in body)) throw new InvalidParameterValue("Schema error for vif: 'id' is a required property");
    if (typeof body.id !== 'string') {
      throw new InvalidParameterValue(`Schema error for vif: ${JSON.stringify(body.id)} is not of type 'string'`);
    }
    checkAttachBody(body, state(ctx).minor);
    await attachVif(c, ident(ctx.params.ident), body);
    noContent(ctx, 204);
  });
  router.delete('/v1/nodes/:ident/vifs/:vif', v28, async (ctx) => {
    await detachVif(c, ident(ctx.params.ident), ctx.params.vif ?? '');
    noContent(ctx, 204);
  });
}
