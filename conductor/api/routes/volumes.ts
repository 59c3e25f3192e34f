/**
 * /v1/volume, /v1/volume/connectors, /v1/volume/targets and the node's /v1/nodes/{node}/volume[/connectors|
 * /targets] (API 1.32; older versions get a plain 404, as Ironic's root controller gives). Lists show
 * Ironic's default fields unless `detail` or `fields`; the node-scoped collections are read-only (403 Operation
 * not permitted, as Ironic's parent_node_ident check).
 */
import type Router from '@koa/router';
import type { Context } from 'koa';
import type { ConductorContext } from '../../context.js';
import { InvalidParameterValue, NotFound } from '../../errors.js';
import { parsePatch } from '../../services/jsonpatch.js';
import {
  createVolume, deleteVolume, getVolume, OperationNotPermitted, updateVolume, type VolumeKind,
} from '../../services/volumes.js';
import { isUuid } from '../../locks.js';
import { ident, noContent, parseBool, parseLimit, parseSortDir, queryParams, readJson, readObject, state } from '../http.js';
import { listPage } from './listing.js';
import { links } from '../render.js';
import { volumes } from '../../store/volumes.js';

const DEFAULT_FIELDS: Record<VolumeKind, readonly string[]> = {
  connector: ['uuid', 'node_uuid', 'type', 'connector_id'],
  target: ['uuid', 'node_uuid', 'volume_type', 'boot_index', 'volume_id'],
};
const ALL_FIELDS: Record<VolumeKind, readonly string[]> = {
  connector: ['uuid', 'created_at', 'updated_at', 'connector_id', 'extra', 'type', 'node_uuid'],
  target: ['uuid', 'created_at', 'updated_at', 'boot_index', 'extra', 'properties', 'volume_id', 'volume_type', 'node_uuid'],
};
/** The controllers' invalid_sort_key_list (JSON columns). */
const UNSORTABLE: Record<VolumeKind, readonly string[]> = { connector: ['extra'], target: ['extra', 'properties'] };
const PLURAL: Record<VolumeKind, 'connectors' | 'targets'> = { connector: 'connectors', target: 'targets' };

function gate(ctx: Context): void {
  if (state(ctx).minor < 32) throw new NotFound('The resource could not be found.');
}

function render(kind: VolumeKind, rec: object, base: string, fields: readonly string[]): Record<string, unknown> {
  const r = rec as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const f of fields) out[f] = r[f] ?? null;
  out.links = links(base, `volume/${PLURAL[kind]}`, r.uuid as string);
  return out;
}

function parseFields(kind: VolumeKind, raw: string | undefined): string[] | undefined {
  if (raw === undefined) return undefined;
  const fields = raw.split(',').map((f) => f.trim()).filter(Boolean);
  const bad = fields.filter((f) => !ALL_FIELDS[kind].includes(f));
  if (bad.length) throw new InvalidParameterValue(`Field(s) "${bad.join(', ')}" are not valid`);
  return fields;
}

export function volumeRoutes(router: Router, c: ConductorContext): void {
  const limit = c.config.max_body_bytes;

  router.get('/v1/volume', (ctx) => {
    gate(ctx);
    const { base } = state(ctx);
    ctx.body = { connectors: links(base, 'volume/connectors'), targets: links(base, 'volume/targets'), links: links(base, 'volume') };
  });
  router.get('/v1/nodes/:ident/volume', async (ctx) => {
    gate(ctx);
    const { base } = state(ctx);
    const id = ident(ctx.params.ident);
    await c.tasks.findNode(id);
    ctx.body = { connectors: links(base, 'nodes', `${id}/volume/connectors`), targets: links(base, 'nodes', `${id}/volume/targets`),
      links: links(base, 'nodes', `${id}/volume`) };
  });

  for (const kind of ['connector', 'target'] as const) {
    const plural = PLURAL[kind];
    const list = async (ctx: Context, parent: string | undefined): Promise<void> => {
      gate(ctx);
      const { base } = state(ctx);
      const q = queryParams(ctx, ['node', 'marker', 'limit', 'sort_key', 'sort_dir', 'fields', 'detail']);
      const detail = parseBool('detail', q.detail);
      let fields = parseFields(kind, q.fields);
      if (fields && detail) throw new InvalidParameterValue("Can't fetch a subset of fields with 'detail' set");
      fields ??= detail ? [...ALL_FIELDS[kind]] : [...DEFAULT_FIELDS[kind]];
      // Ironic's order: args (marker is a UUID), limit, sort_dir, the marker row (404 as get_by_uuid), the
      // controller's invalid_sort_key_list, the node, then the DB's own sort-key check.
      if (q.marker !== undefined && !isUuid(q.marker)) throw new InvalidParameterValue(`Expected UUID for marker: ${q.marker}`);
      const limit = parseLimit(q.limit, c.config.max_limit);
      const sortDir = parseSortDir(q.sort_dir);
      const sortKey = q.sort_key ?? 'id';
      const marker = q.marker !== undefined ? (await getVolume(c, kind as 'connector', q.marker)).uuid : undefined;
      if (UNSORTABLE[kind].includes(sortKey)) {
        throw new InvalidParameterValue(`The sort_key value ${sortKey} is an invalid field for sorting`);
      }
      const nodeRef = parent ?? q.node;
      const nodeUuid = nodeRef !== undefined ? (await c.tasks.findNode(nodeRef)).uuid : undefined;
      const pq = { limit, sort_key: sortKey, sort_dir: sortDir, ...(marker !== undefined ? { marker } : {}),
        missing: (m: string) => new NotFound(`Volume ${kind} ${m} could not be found.`),
        project: (ctx.state as { volumeProject?: string }).volumeProject };
      const rows = kind === 'connector' ? await volumes(c.store).listConnectors(nodeUuid, pq)
        : await volumes(c.store).listTargets(nodeUuid, pq);
      // The next link always names the top-level collection and carries detail only when true (Ironic's kwargs).
      ctx.body = listPage(plural, rows.map((r) => render(kind, r, base, fields)), {
        base, resource: `volume/${plural}`, limit, sortKey, sortDir, detail: detail ? true : undefined, fields: detail ? undefined : fields,
      });
    };
    router.get(`/v1/volume/${plural}`, (ctx) => list(ctx, undefined));
    router.get(`/v1/nodes/:ident/volume/${plural}`, (ctx) => list(ctx, ident(ctx.params.ident)));
    router.post(`/v1/nodes/:ident/volume/${plural}`, (ctx) => { gate(ctx); throw new OperationNotPermitted(); });

    router.get(`/v1/volume/${plural}/:uuid`, async (ctx) => {
      gate(ctx);
      const q = queryParams(ctx, ['fields']);
      const rec = kind === 'connector' ? await getVolume(c, 'connector', ident(ctx.params.uuid))
        : await getVolume(c, 'target', ident(ctx.params.uuid));
      ctx.body = render(kind, rec, state(ctx).base, parseFields(kind, q.fields) ?? ALL_FIELDS[kind]);
    });
    router.post(`/v1/volume/${plural}`, async (ctx) => {
      gate(ctx);
      const { base } = state(ctx);
      const rec = await createVolume(c, kind, await readObject(ctx, limit, kind));
      ctx.status = 201;
      ctx.set('Location', `${base}/v1/volume/${plural}/${rec.uuid}`);
      ctx.body = render(kind, rec, base, ALL_FIELDS[kind]);
    });
    router.patch(`/v1/volume/${plural}/:uuid`, async (ctx) => {
      gate(ctx);
      const ops = parsePatch(await readJson(ctx, limit));
      const rec = await updateVolume(c, kind, ident(ctx.params.uuid), ops);
      ctx.body = render(kind, rec, state(ctx).base, ALL_FIELDS[kind]);
    });
    router.delete(`/v1/volume/${plural}/:uuid`, async (ctx) => {
      gate(ctx);
      await deleteVolume(c, kind, ident(ctx.params.uuid));
      noContent(ctx, 204);
    });
  }
}
