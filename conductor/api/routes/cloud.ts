/**
 * Parts of the API a cloud (Nova's ironic driver, Metal3, openstacksdk) calls that sit outside nodes and ports
 * proper: writable node traits (1.37), external events (1.54) and shards (1.82), with Ironic 21.4's version gates,
 * validation and error texts.
 */
import type Router from '@koa/router';
import type { ConductorContext } from '../../context.js';
import { InvalidParameterValue, NotAcceptable, NotFound } from '../../errors.js';
import { addTraits, removeTraits, setTraits, validateTraits } from '../../services/traits.js';
import { ident, noContent, readJson, readObject, rejectUnknownKeys, state } from '../http.js';

const UUID_RE = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i;
const MAC_RE = /^([0-9a-f]{2}[:-]){5}[0-9a-f]{2}$/i;
const NETWORK_EVENTS = new Set(['network.bind_port', 'network.unbind_port', 'network.delete_port']);

/** Ironic's events validation: the schema of EVENTS_SCHEMA, then the network event's own fields. */
export function validateEvents(body: Record<string, unknown>): void {
  rejectUnknownKeys(body, ['events']);
  const events = body.events;
  if (!Array.isArray(events) || events.length === 0) throw new InvalidParameterValue('"events" must be a non-empty list');
  for (const [i, e] of events.entries()) {
    if (!e || typeof e !== 'object' || Array.isArray(e)) throw new InvalidParameterValue(`events[${i}] must be an object`);
    const ev = e as Record<string, unknown>;
    if (typeof ev.event !== 'string' || !NETWORK_EVENTS.has(ev.event)) {
      throw new InvalidParameterValue(`events[${i}].event must be one of ${[...NETWORK_EVENTS].join(', ')}, got ${JSON.stringify(ev.event)}`);
    }
    rejectUnknownKeys(ev, ['event', 'port_id', 'mac_address', 'status', 'device_id', 'binding:host_id', 'binding:vnic_type']);
    for (const k of ['port_id', 'mac_address', 'status']) {
      if (typeof ev[k] !== 'string') throw new InvalidParameterValue(`events[${i}]: '${k}' is a required string`);
    }
    for (const k of ['device_id', 'binding:host_id', 'binding:vnic_type']) {
      if (ev[k] !== undefined && ev[k] !== null && typeof ev[k] !== 'string') throw new InvalidParameterValue(`events[${i}]: '${k}' must be a string or null`);
    }
    for (const k of ['port_id', 'device_id', 'binding:host_id']) {
      if (typeof ev[k] === 'string' && !UUID_RE.test(ev[k] as string)) throw new InvalidParameterValue(`Expected a UUID for ${k}: ${String(ev[k])}`);
    }
    if (!MAC_RE.test(ev.mac_address as string)) throw new InvalidParameterValue(`Expected a MAC address for mac_address: ${String(ev.mac_address)}`);
  }
}

export function cloudRoutes(router: Router, c: ConductorContext): void {
  const limit = c.config.max_body_bytes;

  router.put('/v1/nodes/:ident/traits', async (ctx) => {
    if (state(ctx).minor < 37) throw new NotAcceptable();
    const body = await readObject(ctx, limit);
    rejectUnknownKeys(body, ['traits']);
    if (!Array.isArray(body.traits)) {
      throw new InvalidParameterValue('A single node trait may be added via PUT /v1/nodes/<node identifier>/traits/<trait> with no ' +
        'body, or all node traits may be replaced via PUT /v1/nodes/<node identifier>/traits with the list of traits specified in ' +
        'the request body.');
    }
    validateTraits(body.traits);
    await setTraits(c, ident(ctx.params.ident), body.traits as string[]);
    noContent(ctx, 204);
  });

  router.put('/v1/nodes/:ident/traits/:trait', async (ctx) => {
    const { minor, base } = state(ctx);
    if (minor < 37) throw new NotAcceptable();
    const body = await readJson(ctx, limit);
    if (body !== undefined && body !== null && !(typeof body === 'object' && Object.keys(body).length === 0)) {
      throw new InvalidParameterValue('No body should be provided when adding a trait');
    }
    const trait = ctx.params.trait ?? '';
    validateTraits([trait]);
    const id = ident(ctx.params.ident);
    await addTraits(c, id, [trait]);
    noContent(ctx, 204, `${base}/v1/nodes/${id}/traits/${encodeURIComponent(trait)}`);
  });

  router.delete('/v1/nodes/:ident/traits', async (ctx) => {
    if (state(ctx).minor < 37) throw new NotAcceptable();
    await removeTraits(c, ident(ctx.params.ident), null);
    noContent(ctx, 204);
  });

  router.delete('/v1/nodes/:ident/traits/:trait', async (ctx) => {
    if (state(ctx).minor < 37) throw new NotAcceptable();
    await removeTraits(c, ident(ctx.params.ident), ctx.params.trait ?? '');
    noContent(ctx, 204);
  });

  router.post('/v1/events', async (ctx) => {
    // Before 1.54 the resource does not exist (Ironic: 404, not 406).
    if (state(ctx).minor < 54) throw new NotFound('The resource could not be found.');
    const body = await readObject(ctx, limit);
    validateEvents(body);
    for (const e of body.events as Record<string, unknown>[]) c.log.info({ event: e.event, port: e.port_id, status: e.status }, 'external event');
    noContent(ctx, 204);
  });

  router.get('/v1/shards', async (ctx) => {
    if (state(ctx).minor < 82) throw new NotFound('The API version does not allow shards');
    // Ironic names the unsharded group "None" (str() of the NULL column).
    ctx.body = { shards: (await c.store.shardCounts()).map((s) => ({ name: String(s.shard ?? 'None'), count: s.count })) };
  });
}
