/**
 * /v1/nodes collection and items: list (brief / detail / fields, filters, paging with `next`), create, show,
 * JSON-patch update, delete.
 */
import type Router from '@koa/router';
import type { Context } from 'koa';
import type { ConductorContext } from '../../context.js';
import { InvalidParameterValue, NotAcceptable } from '../../errors.js';
import { createNode, deleteNode, updateNode } from '../../services/nodes.js';
import { parsePatch } from '../../services/jsonpatch.js';
import type { NodeQuery } from '../../store/types.js';
import {
  ident, noContent, parseBool, parseLimit, parseSortDir, queryParams, readJson, readObject, rejectUnknownKeys, state,
} from '../http.js';
import { nodeListSpec, parseNodeFields, renderNode } from '../render.js';

const CREATE_KEYS = new Set(['automated_clean', 'bios_interface', 'boot_interface', 'boot_mode', 'chassis_uuid',
  'conductor_group', 'console_enabled', 'console_interface', 'deploy_interface', 'description', 'driver', 'driver_info',
  'extra', 'inspect_interface', 'instance_info', 'instance_uuid', 'lessee', 'management_interface', 'maintenance',
  'name', 'network_data', 'network_interface', 'owner', 'power_interface', 'properties', 'raid_interface',
  'rescue_interface', 'resource_class', 'retired', 'retired_reason', 'secure_boot', 'shard', 'storage_interface',
  'uuid', 'vendor_interface', 'protected', 'protected_reason']);
/** Minimum microversion for create keys (newer keys below their version -> 406). */
const CREATE_KEY_VERSIONS: Record<string, number> = {
  name: 5, network_interface: 20, resource_class: 21, storage_interface: 33, rescue_interface: 38,
  bios_interface: 40, conductor_group: 46, automated_clean: 47, protected: 48, protected_reason: 48, owner: 50,
  description: 51, retired: 61, retired_reason: 61, lessee: 65, network_data: 66, boot_mode: 75, secure_boot: 75,
  shard: 82, boot_interface: 31, console_interface: 31, deploy_interface: 31, inspect_interface: 31,
  management_interface: 31, power_interface: 31, raid_interface: 31, vendor_interface: 31,
};

const LIST_PARAMS = ['associated', 'maintenance', 'retired', 'fault', 'provision_state', 'driver', 'resource_class',
  'chassis_uuid', 'conductor_group', 'conductor', 'owner', 'lessee', 'project', 'instance_uuid',
  'description_contains', 'shard', 'sharded', 'fields', 'detail', 'marker', 'limit', 'sort_key', 'sort_dir'];
const LIST_HEAD = Buffer.from('{"nodes":[');
/** Filters and options echoed into `next` links. */
const ECHOED = LIST_PARAMS.filter((p) => p !== 'marker' && p !== 'limit');

export function conductorFor(c: ConductorContext, node: { uuid: string; driver: string; conductor_group: string }):
  string | null {
  if (c.cluster) return c.cluster.ownerOf(node);
  if (node.conductor_group !== c.config.conductor_group) return null;
  return c.drivers.enabledHardwareTypes().some((t) => t.name === node.driver) ? c.host : null;
}

/** GET /v1/chassis/{uuid}/nodes[/detail]: the node list of one chassis. */
export function listChassisNodes(c: ConductorContext, ctx: Context, forceDetail: boolean, chassisUuid: string): Promise<void> {
  return listNodes(c, ctx, forceDetail, chassisUuid);
}

async function listNodes(c: ConductorContext, ctx: Context, forceDetail: boolean, chassisUuid?: string): Promise<void> {
  const { minor, base } = state(ctx);
  const q = queryParams(ctx, LIST_PARAMS);
  if (chassisUuid !== undefined) q.chassis_uuid = chassisUuid;
  const detail = forceDetail || (q.detail !== undefined && (minor < 43 ? (() => { throw new NotAcceptable(); })()
    : parseBool('detail', q.detail) === true));
  if (forceDetail && q.detail !== undefined) throw new InvalidParameterValue('Can not specify ?detail=True on /detail.');
  const fields = parseNodeFields(q.fields, minor);
  if (fields && detail) throw new InvalidParameterValue('Can not specify ?detail=True and fields in the same request.');
  if (q.marker !== undefined && !/^[0-9a-f-]{36}$/i.test(q.marker)) {
    throw new InvalidParameterValue(`Expected a UUID for marker but received ${q.marker}.`);
  }
  const limit = parseLimit(q.limit, c.config.max_limit);
  const query: NodeQuery = { limit, sort_dir: parseSortDir(q.sort_dir) };
  if (q.sort_key !== undefined) query.sort_key = q.sort_key;
  if (q.marker !== undefined) query.marker = q.marker.toLowerCase();
  const b = (k: string): boolean | undefined => parseBool(k, q[k]);
  const assoc = b('associated'); if (assoc !== undefined) query.associated = assoc;
  const maint = b('maintenance'); if (maint !== undefined) query.maintenance = maint;
  const ret = b('retired'); if (ret !== undefined) query.retired = ret;
  const sharded = b('sharded'); if (sharded !== undefined) query.sharded = sharded;
  for (const k of ['fault', 'driver', 'resource_class', 'chassis_uuid', 'conductor_group', 'owner', 'lessee', 'project',
    'instance_uuid', 'description_contains'] as const) {
    const v = q[k];
    if (v !== undefined) query[k] = v;
  }
  if (q.provision_state !== undefined) query.provision_state = q.provision_state.split(',');
  if (q.shard !== undefined) query.shard = q.shard.split(',');
  const shared = c.cluster?.shared === true;
  const wrongConductor = q.conductor !== undefined && !shared && q.conductor !== c.host;
  const conductorOf = (n: { uuid: string; driver: string; conductor_group: string }): string | null => conductorFor(c, n);
  let next: string | undefined;
  const pageNext = (count: number, lastUuid: string | undefined): void => {
    if (lastUuid && count === limit && q.instance_uuid === undefined) {
      const args = ECHOED.filter((k) => q[k] !== undefined).map((k) => `${k}=${encodeURIComponent(q[k] as string)}&`).join('');
      next = `${base}/v1/nodes${forceDetail ? '/detail' : ''}?${args}limit=${limit}&marker=${lastUuid}`;
    }
  };
  const spec = nodeListSpec({ minor, base, ...(fields ? { fields } : {}), brief: !fields && !detail,
    conductor: { host: c.host, group: c.config.conductor_group, drivers: c.drivers.enabledHardwareTypes().map((t) => t.name) } });
  // With other conductors alive, owners come from the hash ring (JS): the store renders them through owners.of,
  // and a cached page stays valid until one of its rows changes or the ring is rebuilt (owners.epoch).
  const owned = shared && c.cluster && spec.fields.some((f) => f.fmt === 'conductor')
    ? { ...spec, conductor: { ...spec.conductor, owners: { of: conductorOf, epoch: c.cluster.version } } } : spec;
  let items: Buffer;
  if (q.conductor === undefined) {
    const list = await c.store.renderNodeList(query, owned);
    pageNext(list.count, list.lastUuid);
    items = list.items;
  } else {
    // Like Ironic, the conductor filter applies to the page after paging.
    const rows = wrongConductor ? [] : await c.store.listNodesJson(query, owned);
    pageNext(rows.length, rows[rows.length - 1]?.uuid);
    items = Buffer.from(rows.filter((r) => conductorOf(r) === q.conductor).map((r) => r.json).join(','));
  }
  ctx.type = 'application/json';
  ctx.body = Buffer.concat([LIST_HEAD, items, Buffer.from(`]${next ? `,"next":${JSON.stringify(next)}` : ''}}`)]);
}

export function nodeRoutes(router: Router, c: ConductorContext): void {
  router.get('/v1/nodes', (ctx) => listNodes(c, ctx, false));
  router.get('/v1/nodes/detail', (ctx) => listNodes(c, ctx, true));

  router.post('/v1/nodes', async (ctx) => {
    const { minor, base } = state(ctx);
    const body = await readObject(ctx, c.config.max_body_bytes);
    rejectUnknownKeys(body, CREATE_KEYS);
    for (const k of Object.keys(body)) if ((CREATE_KEY_VERSIONS[k] ?? 0) > minor) throw new NotAcceptable();
    const node = await createNode(c, body, minor);
    ctx.status = 201;
    ctx.set('Location', `${base}/v1/nodes/${node.uuid}`);
    ctx.body = renderNode(node, { minor, base, conductor: conductorFor(c, node) });
  });

  router.get('/v1/nodes/:ident', async (ctx) => {
    const { minor, base } = state(ctx);
    const q = queryParams(ctx, ['fields']);
    const fields = parseNodeFields(q.fields, minor);
    const node = await c.tasks.findNode(ident(ctx.params.ident));
    ctx.body = renderNode(node, { minor, base, ...(fields ? { fields } : {}), conductor: conductorFor(c, node) });
  });

  router.patch('/v1/nodes/:ident', async (ctx) => {
    const { minor, base } = state(ctx);
    const q = queryParams(ctx, ['reset_interfaces']);
    const reset = parseBool('reset_interfaces', q.reset_interfaces);
    if (reset !== undefined && minor < 45) throw new NotAcceptable();
    const ops = parsePatch(await readJson(ctx, c.config.max_body_bytes));
    const node = await updateNode(c, ident(ctx.params.ident), ops, { apiMinor: minor, ...(reset ? { resetInterfaces: true } : {}) });
    ctx.body = renderNode(node, { minor, base, conductor: conductorFor(c, node) });
  });

  router.delete('/v1/nodes/:ident', async (ctx) => {
    await deleteNode(c, ident(ctx.params.ident));
    noContent(ctx, 204);
  });
}
