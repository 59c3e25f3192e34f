/** /v1/ports and /v1/nodes/{id}/ports. */
import type Router from '@koa/router';
import type { Context } from 'koa';
import type { ConductorContext } from '../../context.js';
import { InvalidParameterValue, NotAcceptable } from '../../errors.js';
import { parsePatch } from '../../services/jsonpatch.js';
import { createPort, deletePort, getPort, updatePort } from '../../services/ports.js';
import { getPortgroup } from '../../services/portgroups.js';
import type { PortQuery } from '../../store/types.js';
import {
  ident, noContent, parseBool, parseLimit, parseSortDir, queryParams, readJson, readObject, rejectUnknownKeys, state,
} from '../http.js';
import { parsePortFields, renderPort } from '../render.js';

const CREATE_KEYS = ['address', 'node_uuid', 'extra', 'local_link_connection', 'pxe_enabled', 'physical_network',
  'portgroup_uuid', 'is_smartnic', 'uuid'];
const CREATE_KEY_VERSIONS: Record<string, number> = {
  local_link_connection: 19, pxe_enabled: 19, portgroup_uuid: 24, physical_network: 34, is_smartnic: 53,
};
const LIST_PARAMS = ['node', 'node_uuid', 'address', 'portgroup', 'shard', 'fields', 'detail', 'marker', 'limit',
  'sort_key', 'sort_dir'];

async function listPorts(c: ConductorContext, ctx: Context, forceDetail: boolean, nodeIdent?: string,
  portgroupIdent?: string): Promise<void> {
  const { minor, base } = state(ctx);
  const q = queryParams(ctx, LIST_PARAMS);
  const detail = forceDetail || parseBool('detail', q.detail) === true;
  const fields = parsePortFields(q.fields, minor);
  if (fields && detail) throw new InvalidParameterValue('Can not specify ?detail=True and fields in the same request.');
  const limit = parseLimit(q.limit, c.config.max_limit);
  const query: PortQuery = { limit, sort_dir: parseSortDir(q.sort_dir) };
  if (q.sort_key !== undefined) query.sort_key = q.sort_key;
  if (q.marker !== undefined) query.marker = q.marker.toLowerCase();
  const nodeRef = nodeIdent ?? q.node ?? q.node_uuid;
  if (nodeRef !== undefined) query.node_uuid = (await c.tasks.findNode(nodeRef)).uuid;
  if (q.address !== undefined) query.address = q.address;
  const pgRef = portgroupIdent ?? q.portgroup;
  if (pgRef !== undefined) {
    // Ironic 1.24: filtering by portgroup (UUID or name).
    if (minor < 24) throw new NotAcceptable();
    query.portgroup_uuid = (await getPortgroup(c, pgRef)).uuid;
  }
  if (q.shard !== undefined) {
    // Ironic 1.82: the ports of nodes in the given shard(s).
    if (minor < 82) throw new NotAcceptable();
    const shards = q.shard.split(',').map((s) => s.trim()).filter((s) => s !== '');
    if (shards.length === 0) throw new InvalidParameterValue('The shard parameter needs at least one shard name.');
    query.node_shards = shards;
  }
  const ports = await c.store.listPorts(query);
  const body: Record<string, unknown> = {
    ports: ports.map((p) => renderPort(p, { minor, base, ...(fields ? { fields } : {}), brief: !fields && !detail })),
  };
  const last = ports[ports.length - 1];
  if (last && ports.length === limit) {
    const echoed = ['node', 'node_uuid', 'address', 'portgroup', 'shard', 'detail', 'fields', 'sort_key', 'sort_dir'];
    const args = echoed.filter((k) => q[k] !== undefined).map((k) => `${k}=${encodeURIComponent(q[k] as string)}&`).join('');
    const path = nodeIdent ? `/v1/nodes/${nodeIdent}/ports` : portgroupIdent ? `/v1/portgroups/${portgroupIdent}/ports` : '/v1/ports';
    body.next = `${base}${path}${forceDetail ? '/detail' : ''}?${args}limit=${limit}&marker=${last.uuid}`;
  }
  ctx.body = body;
}

export function listPortsFor(c: ConductorContext, ctx: Context, nodeIdent: string, detail: boolean): Promise<void> {
  return listPorts(c, ctx, detail, nodeIdent);
}

/** GET /v1/portgroups/{pg}/ports[/detail]. */
export function listPortgroupPorts(c: ConductorContext, ctx: Context, portgroupIdent: string, detail: boolean): Promise<void> {
  return listPorts(c, ctx, detail, undefined, portgroupIdent);
}

export function portRoutes(router: Router, c: ConductorContext): void {
  router.get('/v1/ports', (ctx) => listPorts(c, ctx, false));
  router.get('/v1/ports/detail', (ctx) => listPorts(c, ctx, true));

  router.post('/v1/ports', async (ctx) => {
    const { minor, base } = state(ctx);
    const body = await readObject(ctx, c.config.max_body_bytes);
    rejectUnknownKeys(body, CREATE_KEYS);
    for (const k of Object.keys(body)) if ((CREATE_KEY_VERSIONS[k] ?? 0) > minor) throw new NotAcceptable();
    const port = await createPort(c, body);
    ctx.status = 201;
    ctx.set('Location', `${base}/v1/ports/${port.uuid}`);
    ctx.body = renderPort(port, { minor, base });
  });

  router.get('/v1/ports/:ident', async (ctx) => {
    const { minor, base } = state(ctx);
    const q = queryParams(ctx, ['fields']);
    const fields = parsePortFields(q.fields, minor);
    const port = await getPort(c, ident(ctx.params.ident));
    ctx.body = renderPort(port, { minor, base, ...(fields ? { fields } : {}) });
  });

  router.patch('/v1/ports/:ident', async (ctx) => {
    const { minor, base } = state(ctx);
    const ops = parsePatch(await readJson(ctx, c.config.max_body_bytes));
    // Ironic's _check_allowed_port_fields: a field newer than the request's microversion may not be set or removed.
    for (const op of ops) {
      const root = op.path.split('/')[1] ?? '';
      if ((CREATE_KEY_VERSIONS[root] ?? 0) > minor || (op.path === '/local_link_connection/network_type' && minor < 64)) {
        throw new NotAcceptable();
      }
    }
    const port = await updatePort(c, ident(ctx.params.ident), ops);
    ctx.body = renderPort(port, { minor, base });
  });

  router.delete('/v1/ports/:ident', async (ctx) => {
    await deletePort(c, ident(ctx.params.ident));
    noContent(ctx, 204);
  });
}
