/**
 * /v1/allocations and /v1/nodes/{n}/allocation (API 1.52; PATCH 1.57, backfill 1.58, owner 1.60), gated as
 * Ironic's AllocationsController: below 1.52 a GET is 404 and any other method 405; the node sub-resource is 404.
 */
import type Router from '@koa/router';
import type { Context, Next } from 'koa';
import type { ConductorContext } from '../../context.js';
import { InvalidParameterValue, MethodNotAllowed, NotAcceptable, NotFound } from '../../errors.js';
import {
  allocationOfNode, createAllocation, deleteAllocation, findAllocation, patchAllocation,
} from '../../services/allocations.js';
import { parsePatch } from '../../services/jsonpatch.js';
import { ALLOCATION_UNSORTABLE, listAllocations, type AllocationQuery, type AllocationRecord } from '../../store/allocations.js';
import { ident, noContent, parseLimit, parseSortDir, queryParams, readJson, readObject, state } from '../http.js';
import { links } from '../render.js';

const FIELDS = ['candidate_nodes', 'created_at', 'extra', 'last_error', 'links', 'name', 'node_uuid', 'owner',
  'resource_class', 'state', 'traits', 'updated_at', 'uuid'];

function parseFields(raw: string | undefined, minor: number): string[] | undefined {
  if (raw === undefined) return undefined;
  const fields = raw.split(',').map((f) => f.trim()).filter(Boolean);
  const bad = fields.filter((f) => !FIELDS.includes(f) || (f === 'owner' && minor < 60));
  // Ironic checks the owner gate (406) before the field names (400).
  if (fields.includes('owner') && minor < 60) throw new NotAcceptable();
  if (bad.length) throw new InvalidParameterValue(`Field(s) "${bad.join(', ')}" are not valid`);
  return fields;
}

export function renderAllocation(a: AllocationRecord, o: { minor: number; base: string; fields?: readonly string[] }):
  Record<string, unknown> {
  const all: Record<string, unknown> = {
    candidate_nodes: a.candidate_nodes, created_at: a.created_at, extra: a.extra, last_error: a.last_error,
    links: links(o.base, 'allocations', a.uuid), name: a.name, node_uuid: a.node_uuid, owner: a.owner,
    resource_class: a.resource_class, state: a.state, traits: a.traits, updated_at: a.updated_at, uuid: a.uuid,
  };
  if (o.minor < 60) delete all.owner;
  if (!o.fields) return all;
  const out: Record<string, unknown> = {};
  for (const f of o.fields) if (f in all) out[f] = all[f];
  return out;
}

/** The 1.52 gate of /v1/allocations: 404 for GET, 405 for the rest. */
async function gate(ctx: Context, next: Next): Promise<void> {
  if (state(ctx).minor < 52) {
    if (ctx.method === 'GET' || ctx.method === 'HEAD') throw new NotFound('The API version does not allow allocations');
    throw new MethodNotAllowed('The API version does not allow allocations');
  }
  await next();
}

async function nodeGate(ctx: Context, next: Next): Promise<void> {
  if (state(ctx).minor < 52) throw new NotFound('The API version does not allow allocations');
  await next();
}

async function list(c: ConductorContext, ctx: Context): Promise<void> {
  const { minor, base } = state(ctx);
  const q = queryParams(ctx, ['node', 'resource_class', 'state', 'owner', 'marker', 'limit', 'sort_key', 'sort_dir', 'fields']);
  const fields = parseFields(q.fields, minor);
  if (q.owner !== undefined && minor < 60) throw new NotAcceptable();
  const limit = parseLimit(q.limit, c.config.max_limit);
  const sortKey = q.sort_key ?? 'id';
  if (ALLOCATION_UNSORTABLE.has(sortKey)) {
    throw new InvalidParameterValue(`The sort_key value ${sortKey} is an invalid field for sorting`);
  }
  const query: AllocationQuery = { limit, sort_key: sortKey, sort_dir: parseSortDir(q.sort_dir) };
  if (q.marker !== undefined) query.marker = q.marker.toLowerCase();
  if (q.node !== undefined) {
    try {
      query.node_uuid = (await c.tasks.findNode(q.node)).uuid;
    } catch (e) {
      // Ironic: an unknown node filter is a 400.
      throw new InvalidParameterValue((e as Error & { details?: string }).details ?? (e as Error).message);
    }
  }
  if (q.resource_class !== undefined) query.resource_class = q.resource_class;
  if (q.state !== undefined) query.state = q.state;
  if (q.owner !== undefined) query.owner = q.owner;
  const rows = await listAllocations(c.store.sql, query);
  const body: Record<string, unknown> = {
    allocations: rows.map((a) => renderAllocation(a, { minor, base, ...(fields ? { fields } : {}) })),
  };
  const last = rows[rows.length - 1];
  if (last && rows.length === limit) {
    const echoed = ['node', 'resource_class', 'state', 'owner', 'fields', 'sort_key', 'sort_dir'];
    const args = echoed.filter((k) => q[k] !== undefined).map((k) => `${k}=${encodeURIComponent(q[k] as string)}&`).join('');
    body.next = `${base}/v1/allocations?${args}limit=${limit}&marker=${last.uuid}`;
  }
  ctx.body = body;
}

export function allocationRoutes(router: Router, c: ConductorContext): void {
  router.get('/v1/allocations', gate, (ctx) => list(c, ctx));

  router.post('/v1/allocations', gate, async (ctx) => {
    const { minor, base } = state(ctx);
    const body = await readObject(ctx, c.config.max_body_bytes, 'allocation');
    const a = await createAllocation(c, body, minor);
    ctx.status = 201;
    ctx.set('Location', `${base}/v1/allocations/${a.uuid}`);
    ctx.body = renderAllocation(a, { minor, base });
  });

  router.get('/v1/allocations/:ident', gate, async (ctx) => {
    const { minor, base } = state(ctx);
    const q = queryParams(ctx, ['fields']);
    const fields = parseFields(q.fields, minor);
    const a = await findAllocation(c, ident(ctx.params.ident));
    ctx.body = renderAllocation(a, { minor, base, ...(fields ? { fields } : {}) });
  });

  router.patch('/v1/allocations/:ident', gate, async (ctx) => {
    const { minor, base } = state(ctx);
    if (minor < 57) throw new MethodNotAllowed('The API version does not allow updating allocations');
    const ops = parsePatch(await readJson(ctx, c.config.max_body_bytes));
    const a = await patchAllocation(c, ident(ctx.params.ident), ops);
    ctx.body = renderAllocation(a, { minor, base });
  });

  router.delete('/v1/allocations/:ident', gate, async (ctx) => {
    await deleteAllocation(c, await findAllocation(c, ident(ctx.params.ident)));
    noContent(ctx, 204);
  });

  router.get('/v1/nodes/:ident/allocation', nodeGate, async (ctx) => {
    const { minor, base } = state(ctx);
    const q = queryParams(ctx, ['fields']);
    const fields = parseFields(q.fields, minor);
    const a = await allocationOfNode(c, ident(ctx.params.ident), 400);
    ctx.body = renderAllocation(a, { minor, base, ...(fields ? { fields } : {}) });
  });

  router.delete('/v1/nodes/:ident/allocation', nodeGate, async (ctx) => {
    await deleteAllocation(c, await allocationOfNode(c, ident(ctx.params.ident), 404));
    noContent(ctx, 204);
  });
}
