/**
 * Inspection routes: the ramdisk callbacks (Ironic's POST /v1/continue_inspection and ironic-inspector's
 * POST /v1/continue, both public like lookup) and GET /v1/nodes/{node}/inventory (API 1.81).
 */
import type Router from '@koa/router';
import type { Context } from 'koa';
import { JsonInputError, parseJsonSafe } from '../../../common/safe-json.js';
import type { ConductorContext } from '../../context.js';
import { InvalidParameterValue, IronicError, NotFound, RequestEntityTooLarge } from '../../errors.js';
import { getInspectionData } from '../../inspection/inventory-store.js';
import { continueInspection } from '../../inspection/process.js';
import { ident, queryParams, state } from '../http.js';

/** Ironic's MINOR_84_CONTINUE_INSPECTION; 1.1 (no header) is accepted as the drop-in for ironic-inspector. */
const CONTINUE_INSPECTION_MINOR = 84;
const INVENTORY_MINOR = 81;

async function readPayload(ctx: Context, limit: number): Promise<unknown> {
  const declared = Number(ctx.get('content-length') || 0);
  if (declared > limit) {
    ctx.req.resume();
    throw new RequestEntityTooLarge(limit);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  await new Promise<void>((resolve, reject) => {
    const req = ctx.req;
    if (req.readableEnded) return resolve();
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        req.removeAllListeners('data');
        req.resume();
        reject(new RequestEntityTooLarge(limit));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve());
    req.on('error', reject);
    req.on('aborted', () => reject(new InvalidParameterValue('request aborted')));
  });
  const text = Buffer.concat(chunks).toString('utf8');
  if (!text.trim()) throw new InvalidParameterValue("Invalid inspection data: 'inventory' is a required property");
  try {
    // Inventories nest a few levels (hardware-detect data, LLDP lists); logs are one long string.
    return parseJsonSafe(text, { maxDepth: 32, maxStringLength: limit });
  } catch (e) {
    if (e instanceof JsonInputError) throw new InvalidParameterValue(`The request body is refused: ${e.message}.`);
    throw new InvalidParameterValue('The request body is not valid JSON.');
  }
}

function agentToken(ctx: Context): string | undefined {
  const t = ctx.get('x-agent-token');
  return t ? t : undefined;
}

export function inspectionRoutes(router: Router, c: ConductorContext): void {
  router.post('/v1/continue_inspection', async (ctx) => {
    const { minor } = state(ctx);
    const q = queryParams(ctx, ['node_uuid']);
    if ((minor !== 1 && minor < CONTINUE_INSPECTION_MINOR) || (q.node_uuid && minor < CONTINUE_INSPECTION_MINOR)) {
      throw new NotFound(`API version 1.${CONTINUE_INSPECTION_MINOR} or newer is required`);
    }
    const body = await readPayload(ctx, c.config.inspector.max_payload_bytes);
    const r = await continueInspection(c, body, { nodeUuid: q.node_uuid, token: agentToken(ctx) });
    ctx.status = 202;
    ctx.body = { uuid: r.uuid };
  });

  // ironic-inspector's callback: same data, answer {"uuid": ...}; its API version header is not Ironic's.
  router.post('/v1/continue', async (ctx) => {
    queryParams(ctx, []);
    const body = await readPayload(ctx, c.config.inspector.max_payload_bytes);
    const r = await continueInspection(c, body, { token: agentToken(ctx) });
    ctx.status = 200;
    ctx.body = { uuid: r.uuid };
  });

  router.get('/v1/nodes/:ident/inventory', async (ctx) => {
    const { minor } = state(ctx);
    if (minor < INVENTORY_MINOR) throw new NotFound('The resource could not be found.');
    const node = await c.tasks.findNode(ident(ctx.params.ident));
    const data = await getInspectionData(c.config, node.uuid);
    if (!data) throw new IronicError(`Node inventory for node ${node.uuid} could not be found.`, 404);
    ctx.body = { inventory: data.inventory, plugin_data: data.plugin_data };
  });
}
