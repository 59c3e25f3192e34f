/**
 * PUT /v1/nodes/{node}/states/boot_mode and /states/secure_boot (1.76, 202) and
 * /v1/nodes/{node}/management/indicators[/{name@component}] (GET, PUT with {"state"}), as Ironic 21.4's
 * node.py. Ironic 21.4 defines MINOR_63_INDICATORS but never checks it: the indicator routes answer at every
 * microversion, and so do these.
 */
import type Router from '@koa/router';
import type { RouterContext } from '@koa/router';
import type { ConductorContext } from '../../context.js';
import type { NodeBootMode } from '../../drivers/types.js';
import { InvalidParameterValue, NotFound } from '../../errors.js';
import { onOwner } from '../../cluster/forward.js';
import {
  BOOT_MODES, changeBootMode, changeSecureBoot, getIndicatorState, setIndicatorState, splitIndicator, supportedIndicators,
} from '../../services/boot-mode.js';
import { ident, noContent, readObject, rejectUnknownKeys, state } from '../http.js';
import { links } from '../render.js';

const TRUE = new Set(['1', 't', 'true', 'on', 'y', 'yes']);
const FALSE = new Set(['0', 'f', 'false', 'off', 'n', 'no']);

/** Ironic's args.boolean: a JSON bool, or a string oslo's strict bool_from_string accepts. */
function targetBool(v: unknown): boolean | null {
  if (v === undefined || v === null) return null;
  if (typeof v === 'boolean') return v;
  const s = String(v).trim().toLowerCase();
  if (TRUE.has(s)) return true;
  if (FALSE.has(s)) return false;
  throw new InvalidParameterValue(`Expected boolean for target: ${typeof v === 'string' ? v : JSON.stringify(v)}`);
}

function gate76(minor: number): void {
  if (minor < 76) throw new NotFound('This endpoint is supported starting with the API version 1.76');
}

export function nodeManagementRoutes(router: Router, c: ConductorContext): void {
  const limit = c.config.max_body_bytes;
  /** The shared front of PUT states/boot_mode and states/secure_boot, in Ironic's order: node, version, body keys. */
  const stateChangeRequest = async (ctx: RouterContext): Promise<{ id: string; base: string; body: Record<string, unknown> }> => {
    const { minor, base } = state(ctx);
    const body = await readObject(ctx, limit);
    const id = ident(ctx.params.ident);
    await c.tasks.findNode(id);
    gate76(minor);
    rejectUnknownKeys(body, ['target']);
    return { id, base, body };
  };

  router.put('/v1/nodes/:ident/states/boot_mode', async (ctx) => {
    const { id, base, body } = await stateChangeRequest(ctx);
    const target = body.target;
    if (target !== undefined && target !== null && typeof target !== 'string') {
      throw new InvalidParameterValue(`Expected string for target: ${JSON.stringify(target)}`);
    }
    if (!(BOOT_MODES as readonly unknown[]).includes(target)) {
      throw new InvalidParameterValue(`Invalid boot mode ${target ?? 'None'} requested for node. Allowed boot modes are: ` +
        BOOT_MODES.join(', '));
    }
    const mode = target as NodeBootMode;
    await onOwner(c, id, 'set_boot_mode', [id, mode], () => changeBootMode(c, id, mode));
    noContent(ctx, 202, `${base}/v1/nodes/${id}/states`);
  });

  router.put('/v1/nodes/:ident/states/secure_boot', async (ctx) => {
    const { id, base, body } = await stateChangeRequest(ctx);
    const target = targetBool(body.target);
    if (target === null) {
      throw new InvalidParameterValue('Invalid secure_boot None requested for node. Allowed secure_boot states are: True, False) ');
    }
    await onOwner(c, id, 'set_secure_boot', [id, target], () => changeSecureBoot(c, id, target));
    noContent(ctx, 202, `${base}/v1/nodes/${id}/states`);
  });

  router.get('/v1/nodes/:ident/management/indicators', async (ctx) => {
    const { base } = state(ctx);
    const nodeRef = ident(ctx.params.ident);
    const all = await onOwner(c, nodeRef, 'get_supported_indicators', [nodeRef], () => supportedIndicators(c, nodeRef));
    const indicators: Record<string, unknown>[] = [];
    for (const [component, names] of Object.entries(all)) {
      for (const [name, f] of Object.entries(names)) {
        const unique = `${name}@${component}`;
        indicators.push({ name: unique, component, readonly: f.readonly ?? true, states: f.states ?? [],
          links: links(base, 'nodes', `${nodeRef}/management/indicators/${unique}`) });
      }
    }
    ctx.body = { indicators };
  });

  router.get('/v1/nodes/:ident/management/indicators/:indicator', async (ctx) => {
    const unique = ctx.params.indicator ?? '';
    splitIndicator(unique);
    const id = ident(ctx.params.ident);
    ctx.body = { state: await onOwner(c, id, 'get_indicator_state', [id, unique], () => getIndicatorState(c, id, unique)) };
  });

  router.put('/v1/nodes/:ident/management/indicators/:indicator', async (ctx) => {
    const body = await readObject(ctx, limit);
    rejectUnknownKeys(body, ['state']);
    if (typeof body.state !== 'string') {
      throw new InvalidParameterValue(body.state === undefined ? 'Mandatory field missing: state'
        : `Expected string for state: ${JSON.stringify(body.state)}`);
    }
    const id = ident(ctx.params.ident);
    const unique = ctx.params.indicator ?? '';
    const target = body.state;
    await onOwner(c, id, 'set_indicator_state', [id, unique, target], () => setIndicatorState(c, id, unique, target));
    noContent(ctx, 204);
  });
}
