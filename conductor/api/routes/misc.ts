/** Root documents, drivers, conductors, and the agent-facing lookup/heartbeat. */
import type Router from '@koa/router';
import type { Context } from 'koa';
import type { ConductorContext } from '../../context.js';
import { NODE_INTERFACE_KINDS, type HardwareType } from '../../drivers/index.js';
import { InvalidParameterValue, NotAcceptable, NotFound } from '../../errors.js';
import { HeartbeatBodySchema, type LookupResponse } from '../../../protocol/lookup.js';
import { checkHeartbeatVersion, heartbeat, lookup } from '../../services/agent.js';
import { ident, MAX_VERSION_STRING, MIN_VERSION_STRING, noContent, parseBool, queryParams, readObject, state } from '../http.js';
import { links, renderNode } from '../render.js';
import { onOwner } from '../../cluster/forward.js';
import { raidLogicalDiskProperties } from '../../operator-interfaces.js';

/** Built once: zod compiles a schema on its first parse, and `.strict()` makes a new schema each call. */
const STRICT_HEARTBEAT = HeartbeatBodySchema.strict();

function versionObject(base: string): Record<string, unknown> {
  return { id: 'v1', links: [{ href: `${base}/v1/`, rel: 'self' }], status: 'CURRENT',
    min_version: MIN_VERSION_STRING, version: MAX_VERSION_STRING };
}

export function rootDocument(base: string): Record<string, unknown> {
  const v = versionObject(base);
  return { name: 'OpenStack Ironic API', description: 'Ironic is an OpenStack project which enables the provision ' +
    'and management of baremetal machines. (baremetal-ts)', default_version: v, versions: [v] };
}

function v1Document(base: string, minor: number): Record<string, unknown> {
  const doc: Record<string, unknown> = {
    id: 'v1',
    links: [{ href: `${base}/v1/`, rel: 'self' },
      { href: 'https://docs.openstack.org/ironic/latest/contributor/webapi.html', rel: 'describedby', type: 'text/html' }],
    media_types: [{ base: 'application/json', type: 'application/vnd.openstack.ironic.v1+json' }],
    version: versionObject(base),
  };
  // Only resources this conductor routes are linked, in Ironic's order.
  doc.chassis = links(base, 'chassis');
  doc.nodes = links(base, 'nodes');
  doc.ports = links(base, 'ports');
  doc.drivers = links(base, 'drivers');
  if (minor >= 23) doc.portgroups = links(base, 'portgroups');
  if (minor >= 32) doc.volume = links(base, 'volume');
  if (minor >= 22) { doc.lookup = links(base, 'lookup'); doc.heartbeat = links(base, 'heartbeat'); }
  if (minor >= 49) doc.conductors = links(base, 'conductors');
  if (minor >= 52) doc.allocations = links(base, 'allocations');
  if (minor >= 54) doc.events = links(base, 'events');
  if (minor >= 55) doc.deploy_templates = links(base, 'deploy_templates');
  if (minor >= 82) doc.shards = links(base, 'shards');
  return doc;
}

function renderDriver(c: ConductorContext, t: HardwareType, base: string, minor: number, detail: boolean):
  Record<string, unknown> {
  const out: Record<string, unknown> = { hosts: c.cluster?.hostsFor?.(t.name) ?? [c.host], name: t.name };
  if (minor >= 30) out.type = 'dynamic';
  out.links = links(base, 'drivers', t.name);
  if (minor >= 14) out.properties = links(base, 'drivers', `${t.name}/properties`);
  if (detail && minor >= 30) {
    for (const kind of NODE_INTERFACE_KINDS) {
      if ((kind === 'storage' && minor < 33) || (kind === 'rescue' && minor < 38) || (kind === 'bios' && minor < 40)) continue;
      out[`default_${kind}_interface`] = c.drivers.defaultInterface(t, kind);
      out[`enabled_${kind}_interfaces`] = c.drivers.supportedInterfaces(t, kind);
    }
  }
  return out;
}

export function miscRoutes(router: Router, c: ConductorContext): void {
  router.get('/v1', (ctx) => { ctx.body = v1Document(state(ctx).base, state(ctx).minor); });

  router.get('/v1/drivers', async (ctx) => {
    const { minor, base } = state(ctx);
    const q = queryParams(ctx, ['type', 'detail', 'fields']);
    if (q.type !== undefined && q.type !== 'classic' && q.type !== 'dynamic') {
      throw new InvalidParameterValue(`Invalid type ${q.type}; must be "classic" or "dynamic".`);
    }
    const detail = parseBool('detail', q.detail) === true;
    const types = q.type === 'classic' ? [] : c.drivers.enabledHardwareTypes();
    const fields = q.fields?.split(',');
    if (fields && minor < 77) throw new NotAcceptable();
    ctx.body = { drivers: types.map((t) => {
      const d = renderDriver(c, t, base, minor, detail || !!fields);
      return fields ? Object.fromEntries(fields.filter((f) => Object.hasOwn(d, f)).map((f) => [f, d[f]])) : d;
    }) };
  });

  router.get('/v1/drivers/:name', async (ctx) => {
    const { minor, base } = state(ctx);
    ctx.body = renderDriver(c, c.drivers.getHardwareType( ident(ctx.params.name)), base, minor, true);
  });

  router.get('/v1/drivers/:name/properties', async (ctx) => {
    ctx.body = c.drivers.driverProperties(c.drivers.getHardwareType( ident(ctx.params.name)));
  });

  router.get('/v1/drivers/:name/raid/logical_disk_properties', async (ctx) => {
    if (state(ctx).minor < 12) throw new NotAcceptable();
    const type = c.drivers.getHardwareType(ident(ctx.params.name));
    ctx.body = raidLogicalDiskProperties(c.drivers, type);
  });

  router.get('/v1/lookup', async (ctx: Context) => {
    const { minor, base } = state(ctx);
    if (minor < 22) throw new NotFound('The resource could not be found.');
    const q = queryParams(ctx, ['addresses', 'node_uuid']);
    const { node, token } = await lookup(c, q.addresses, q.node_uuid, minor);
    const view = renderNode(node, { minor, base, fields: ['uuid', 'properties', 'instance_info', 'driver_internal_info'],
      conductor: null });
    const body: LookupResponse = {
      node: { ...view, links: links(base, 'nodes', node.uuid) } as LookupResponse['node'],
      config: {
        metrics: { backend: 'noop', prepend_host: false, prepend_uuid: false, prepend_host_reverse: true,
          global_prefix: null },
        metrics_statsd: { statsd_host: 'localhost', statsd_port: 8125 },
        heartbeat_timeout: c.config.heartbeat_timeout,
        agent_token_required: true,
        agent_md5_checksum_enable: c.config.agent.allow_md5_checksum,
        disable_deep_image_inspection: false,
        permitted_image_formats: ['raw', 'qcow2', 'iso'],
        ...(token !== undefined ? { agent_token: token } : {}),
      },
    };
    ctx.body = body;
  });

  router.post('/v1/heartbeat/:ident', async (ctx) => {
    const { minor } = state(ctx);
    if (minor < 22) throw new NotFound('The resource could not be found.');
    const raw = await readObject(ctx, c.config.max_body_bytes);
    const parsed = STRICT_HEARTBEAT.safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new InvalidParameterValue(`Invalid heartbeat: ${issue ? `${issue.path.join('.') || 'body'}: ${issue.message}` : 'bad body'}`);
    }
    checkHeartbeatVersion(parsed.data, minor);
    const id = ident(ctx.params.ident);
    // An agent may heartbeat to any conductor (ipa-api-url lists several): the node's owner drives its steps.
    await onOwner(c, id, 'heartbeat', [id, parsed.data], () => heartbeat(c, id, parsed.data));
    noContent(ctx, 202);
  });
}
