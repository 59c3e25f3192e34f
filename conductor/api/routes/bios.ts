/**
 * GET /v1/nodes/{node}/bios[/{setting}] (API 1.40; the registry fields, `detail` and `fields` from 1.74), served
 * from the node's BIOS settings cache (store/bios-settings.ts), as Ironic's api/controllers/v1/bios.py.
 */
import type Router from '@koa/router';
import type { Context } from 'koa';
import type { ConductorContext } from '../../context.js';
import { InvalidParameterValue, NotFound } from '../../errors.js';
import { BIOS_REGISTRY_FIELDS, biosSettings, type BiosSettingRecord } from '../../store/bios-settings.js';
import { ident, parseBool, queryParams, state } from '../http.js';
import { links } from '../render.js';

const DEFAULT_FIELDS = ['name', 'value'] as const;
const REGISTRY_VIEW = [...DEFAULT_FIELDS, ...BIOS_REGISTRY_FIELDS] as const;
const VALID_NAME = /^[A-Za-z0-9\-._~]{1,255}$/;

/** Before 1.40 the sub-resource does not exist: Ironic's node controller aborts with a plain 404. */
function gate(ctx: Context): void {
  if (state(ctx).minor < 40) throw new NotFound('The resource could not be found.');
}

function render(s: BiosSettingRecord, nodeRef: string, base: string, fields: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = { created_at: s.created_at, updated_at: s.updated_at };
  for (const f of fields) out[f] = s[f as keyof BiosSettingRecord];
  out.links = links(base, 'nodes', `${nodeRef}/bios/${s.name}`);
  return out;
}

/** Ironic's get_request_return_fields with allow_query_bios for both checks. */
function returnFields(minor: number, fieldsRaw: string | undefined, detailRaw: string | undefined): readonly string[] {
  const detail = parseBool('detail', detailRaw);
  if (detailRaw !== undefined && minor < 74) throw new InvalidParameterValue(`Invalid query parameter ?detail=${detailRaw} received.`);
  if (fieldsRaw !== undefined && minor < 74) throw new InvalidParameterValue(`Invalid query parameter ?fields=${fieldsRaw} received.`);
  if (fieldsRaw !== undefined && detail) throw new InvalidParameterValue('Can not specify ?detail=True and fields in the same request.');
  if (detail) return REGISTRY_VIEW;
  if (fieldsRaw === undefined) return DEFAULT_FIELDS;
  const fields = fieldsRaw.split(',').map((f) => f.trim()).filter(Boolean);
  const bad = fields.filter((f) => !(REGISTRY_VIEW as readonly string[]).includes(f));
  if (bad.length) throw new InvalidParameterValue(`Field(s) "${bad.join(', ')}" are not valid`);
  return fields;
}

export function biosRoutes(router: Router, c: ConductorContext): void {
  router.get('/v1/nodes/:ident/bios', async (ctx) => {
    gate(ctx);
    const { minor, base } = state(ctx);
    const q = queryParams(ctx, ['fields', 'detail']);
    const nodeRef = ident(ctx.params.ident);
    const node = await c.tasks.findNode(nodeRef);
    const fields = returnFields(minor, q.fields, q.detail);
    // Ironic links list items with the identifier the request used (name or UUID).
    ctx.body = { bios: (await biosSettings(c.store).list(node.uuid)).map((s) => render(s, nodeRef, base, fields)) };
  });

  router.get('/v1/nodes/:ident/bios/:setting', async (ctx) => {
    gate(ctx);
    const { minor, base } = state(ctx);
    queryParams(ctx, []);
    const name = ident(ctx.params.setting);
    const node = await c.tasks.findNode(ident(ctx.params.ident));
    if (!VALID_NAME.test(name)) throw new InvalidParameterValue(`Expected name for setting_name: ${name}`);
    const s = await biosSettings(c.store).get(node.uuid, name);
    if (!s) throw new NotFound(`Node ${node.uuid} doesn't have a BIOS setting '${name}'`);
    ctx.body = { [name]: render(s, node.uuid, base, minor >= 74 ? REGISTRY_VIEW : DEFAULT_FIELDS) };
  });
}
