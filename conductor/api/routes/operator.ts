/**
 * The operator's routes of issue 19: vendor passthru (node and driver level, with the legacy agent lookup and
 * heartbeat that once were passthru methods), inject NMI, and the serial console state.
 */
import type Router from '@koa/router';
import type { Context } from 'koa';
import type { ConductorContext } from '../../context.js';
import type { HttpMethod } from '../../drivers/vendor.js';
import { InvalidParameterValue, NotAcceptable } from '../../errors.js';
import { getConsoleState, setConsoleMode } from '../../services/console.js';
import { onOwner } from '../../cluster/forward.js';
import { fromWire } from '../../cluster/rpc-methods.js';
import { heartbeat } from '../../services/agent.js';
import { legacyHeartbeatBody, legacyLookup } from '../../services/legacy-agent.js';
import { injectNmi } from '../../services/power.js';
import {
  driverVendorMethods, driverVendorPassthru, nodeVendorMethods, nodeVendorPassthru, type PassthruResult,
} from '../../services/vendor-passthru.js';
import { ident, noContent, readObject, rejectUnknownKeys, state } from '../http.js';
import { links, renderNode } from '../render.js';

const VERBS: readonly HttpMethod[] = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'];

/** Arguments of a passthru call: the JSON body, and for any verb the query parameters other than `method`. */
async function passthruArgs(ctx: Context, limit: number): Promise<Record<string, unknown>> {
  const body = await readObject(ctx, limit);
  const out: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  for (const [k, v] of Object.entries(ctx.query)) {
    if (k === 'method') continue;
    if (Array.isArray(v)) throw new InvalidParameterValue(`Argument "${k}" was given more than once.`);
    out[k] = v;
  }
  return Object.assign(out, body);
}

function methodFromQuery(ctx: Context): string | undefined {
  const m = ctx.query.method;
  if (Array.isArray(m)) throw new InvalidParameterValue('Argument "method" was given more than once.');
  return m;
}

function sendPassthru(ctx: Context, r: PassthruResult): void {
  if (r.async) return noContent(ctx, 202);
  if (r.value === undefined || r.value === null) return noContent(ctx, 204);
  if (r.attach) {
    ctx.status = 200;
    ctx.type = 'application/octet-stream';
    ctx.body = Buffer.isBuffer(r.value) ? r.value : Buffer.from(typeof r.value === 'string' ? r.value : JSON.stringify(r.value));
    return;
  }
  ctx.status = 200;
  ctx.body = r.value as Record<string, unknown>;
}

/** A node's vendor method runs on its owner (it talks to the node's BMC); an attachment crosses the RPC as base64. */
async function nodePassthruOnOwner(c: ConductorContext, id: string, method: string | undefined, verb: HttpMethod,
  args: Record<string, unknown>): Promise<PassthruResult> {
  const r = await onOwner(c, id, 'vendor_passthru', [id, method ?? null, verb, args],
    () => nodeVendorPassthru(c, id, method, verb, args));
  return fromWire(r);
}

export function operatorRoutes(router: Router, c: ConductorContext): void {
  const limit = c.config.max_body_bytes;

  // --- node vendor passthru -------------------------------------------------------------------------------------
  router.get('/v1/nodes/:ident/vendor_passthru/methods', async (ctx) => {
    ctx.body = await nodeVendorMethods(c, ident(ctx.params.ident));
  });
  for (const verb of VERBS) {
    const lower = verb.toLowerCase() as 'get' | 'post' | 'put' | 'patch' | 'delete';
    router[lower]('/v1/nodes/:ident/vendor_passthru', async (ctx) => {
      const args = await passthruArgs(ctx, limit);
      sendPassthru(ctx, await nodePassthruOnOwner(c, ident(ctx.params.ident), methodFromQuery(ctx), verb, args));
    });
    // The path form (`vendor_passthru/<method>`) is what python-ironicclient sends, and what old agents used.
    router[lower]('/v1/nodes/:ident/vendor_passthru/:method', async (ctx) => {
      const method = ctx.params.method ?? '';
      // POST .../heartbeat is public (api/auth.ts): it is always the agent's heartbeat, never a vendor method.
      const id = ident(ctx.params.ident);
      if (method === 'heartbeat' && verb === 'POST') {
        const hb = legacyHeartbeatBody(await readObject(ctx, limit));
        await onOwner(c, id, 'heartbeat', [id, hb], () => heartbeat(c, id, hb));
        return noContent(ctx, 202);
      }
      const args = await passthruArgs(ctx, limit);
      sendPassthru(ctx, await nodePassthruOnOwner(c, id, method, verb, args));
    });
  }

  // --- driver vendor passthru -----------------------------------------------------------------------------------
  router.get('/v1/drivers/:name/vendor_passthru/methods', (ctx) => {
    ctx.body = driverVendorMethods(c, ident(ctx.params.name));
  });
  router.post('/v1/drivers/:name/vendor_passthru/lookup', async (ctx) => {
    const { base, minor } = state(ctx);
    const body = await readObject(ctx, limit);
    const { node, token } = await legacyLookup(c, ident(ctx.params.name), body);
    const view = renderNode(node, { minor: Math.max(minor, 22), base,
      fields: ['uuid', 'properties', 'instance_info', 'driver_internal_info'], conductor: null });
    ctx.body = {
      heartbeat_timeout: c.config.heartbeat_timeout,
      node: { ...view, links: links(base, 'nodes', node.uuid) },
      config: { heartbeat_timeout: c.config.heartbeat_timeout, agent_token_required: true,
        ...(token !== undefined ? { agent_token: token } : {}) },
    };
  });
  for (const verb of VERBS) {
    const lower = verb.toLowerCase() as 'get' | 'post' | 'put' | 'patch' | 'delete';
    router[lower]('/v1/drivers/:name/vendor_passthru', async (ctx) => {
      const args = await passthruArgs(ctx, limit);
      sendPassthru(ctx, await driverVendorPassthru(c, ident(ctx.params.name), methodFromQuery(ctx), verb, args));
    });
    router[lower]('/v1/drivers/:name/vendor_passthru/:method', async (ctx) => {
      const args = await passthruArgs(ctx, limit);
      sendPassthru(ctx, await driverVendorPassthru(c, ident(ctx.params.name), ctx.params.method, verb, args));
    });
  }

  // --- inject NMI -----------------------------------------------------------------------------------------------
  router.put('/v1/nodes/:ident/management/inject_nmi', async (ctx) => {
    if (state(ctx).minor < 29) throw new NotAcceptable();
    rejectUnknownKeys(await readObject(ctx, limit), []);
    const id = ident(ctx.params.ident);
    await onOwner(c, id, 'inject_nmi', [id], () => injectNmi(c, id));
    noContent(ctx, 204);
  });

  // --- serial console -------------------------------------------------------------------------------------------
  router.put('/v1/nodes/:ident/states/console', async (ctx) => {
    const body = await readObject(ctx, limit);
    rejectUnknownKeys(body, ['enabled']);
    if (typeof body.enabled !== 'boolean') throw new InvalidParameterValue('"enabled" is required and must be a boolean');
    const id = ident(ctx.params.ident);
    const enabled = body.enabled;
    // The console's socat/web port lives in the owner's process, so the owner starts and stops it.
    await onOwner(c, id, 'set_console_mode', [id, enabled], () => setConsoleMode(c, id, enabled));
    noContent(ctx, 202, `${state(ctx).base}/v1/nodes/${id}/states/console`);
  });
  router.get('/v1/nodes/:ident/states/console', async (ctx) => {
    ctx.set('Cache-Control', 'no-store'); // a web console URL carries a one-time token
    const id = ident(ctx.params.ident);
    ctx.body = await onOwner(c, id, 'get_console_information', [id], () => getConsoleState(c, id));
  });
}
