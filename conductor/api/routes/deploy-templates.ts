/**
 * /v1/deploy_templates (API 1.55), gated as Ironic's DeployTemplatesController: below 1.55 a GET is 404 and any
 * other method 405. Lists show uuid and name (and links) unless detail=True or fields says otherwise.
 */
import type Router from '@koa/router';
import type { Context, Next } from 'koa';
import { maskSecrets } from '../../../common/secrets.js';
import type { ConductorContext } from '../../context.js';
import { InvalidParameterValue, MethodNotAllowed, NotFound } from '../../errors.js';
import {
  createTemplate, deleteTemplate, findDeployTemplate, patchTemplate,
} from '../../services/deploy-templates.js';
import { parsePatch } from '../../services/jsonpatch.js';
import { DEPLOY_TEMPLATE_SORT_KEYS, listDeployTemplates, type DeployTemplateRecord } from '../../store/deploy-templates.js';
import {
  ident, noContent, parseBool, parseLimit, parseSortDir, queryParams, readJson, readObject, state,
} from '../http.js';
import { links } from '../render.js';

const FIELDS = ['created_at', 'extra', 'links', 'name', 'steps', 'updated_at', 'uuid'];

function parseFields(raw: string | undefined): string[] | undefined {
  if (raw === undefined) return undefined;
  const fields = raw.split(',').map((f) => f.trim()).filter(Boolean);
  const bad = fields.filter((f) => !FIELDS.includes(f));
  if (bad.length) throw new InvalidParameterValue(`Field(s) "${bad.join(', ')}" are not valid`);
  return fields;
}

export function renderTemplate(t: DeployTemplateRecord, base: string, fields?: readonly string[]): Record<string, unknown> {
  const all: Record<string, unknown> = {
    created_at: t.created_at, extra: t.extra, links: links(base, 'deploy_templates', t.uuid), name: t.name,
    // Step args are masked like Ironic's mask_dict_password.
    steps: t.steps.map((s) => ({ interface: s.interface, step: s.step, args: maskSecrets(s.args), priority: s.priority })),
    updated_at: t.updated_at, uuid: t.uuid,
  };
  if (!fields) return all;
  const out: Record<string, unknown> = {};
  for (const f of [...fields, 'links']) if (f in all) out[f] = all[f];
  return out;
}

async function gate(ctx: Context, next: Next): Promise<void> {
  if (state(ctx).minor < 55) {
    if (ctx.method === 'GET' || ctx.method === 'HEAD') throw new NotFound('The API version does not allow deploy templates');
    throw new MethodNotAllowed('The API version does not allow deploy templates');
  }
  await next();
}

async function list(c: ConductorContext, ctx: Context): Promise<void> {
  const { base } = state(ctx);
  const q = queryParams(ctx, ['marker', 'limit', 'sort_key', 'sort_dir', 'fields', 'detail']);
  let fields = parseFields(q.fields);
  const detail = parseBool('detail', q.detail);
  if (fields && detail !== undefined) {
    throw new InvalidParameterValue('Can not specify ?detail=True and fields in the same request.');
  }
  if (!fields && !detail) fields = ['uuid', 'name'];
  const sortKey = q.sort_key ?? 'id';
  if (!DEPLOY_TEMPLATE_SORT_KEYS.has(sortKey)) {
    throw new InvalidParameterValue(`The sort_key value ${sortKey} is an invalid field for sorting`);
  }
  const limit = parseLimit(q.limit, c.config.max_limit);
  const rows = await listDeployTemplates(c.store.sql, { limit, sort_key: sortKey, sort_dir: parseSortDir(q.sort_dir),
    ...(q.marker !== undefined ? { marker: q.marker.toLowerCase() } : {}) });
  const body: Record<string, unknown> = { deploy_templates: rows.map((t) => renderTemplate(t, base, fields)) };
  const last = rows[rows.length - 1];
  if (last && rows.length === limit) {
    const args = ['fields', 'detail', 'sort_key', 'sort_dir'].filter((k) => q[k] !== undefined)
      .map((k) => `${k}=${encodeURIComponent(q[k] as string)}&`).join('');
    body.next = `${base}/v1/deploy_templates?${args}limit=${limit}&marker=${last.uuid}`;
  }
  ctx.body = body;
}

export function deployTemplateRoutes(router: Router, c: ConductorContext): void {
  router.get('/v1/deploy_templates', gate, (ctx) => list(c, ctx));

  router.post('/v1/deploy_templates', gate, async (ctx) => {
    const { base } = state(ctx);
    const t = await createTemplate(c, await readObject(ctx, c.config.max_body_bytes, 'template'));
    ctx.status = 201;
    ctx.set('Location', `${base}/v1/deploy_templates/${t.uuid}`);
    ctx.body = renderTemplate(t, base);
  });

  router.get('/v1/deploy_templates/:ident', gate, async (ctx) => {
    const { base } = state(ctx);
    const fields = parseFields(queryParams(ctx, ['fields']).fields);
    ctx.body = renderTemplate(await findDeployTemplate(c, ident(ctx.params.ident)), base, fields);
  });

  router.patch('/v1/deploy_templates/:ident', gate, async (ctx) => {
    const { base } = state(ctx);
    const ops = parsePatch(await readJson(ctx, c.config.max_body_bytes));
    ctx.body = renderTemplate(await patchTemplate(c, ident(ctx.params.ident), ops), base);
  });

  router.delete('/v1/deploy_templates/:ident', gate, async (ctx) => {
    await deleteTemplate(c, ident(ctx.params.ident));
    noContent(ctx, 204);
  });
}
