/**
 * Node sub-resources: states (provision, power, raid), maintenance, boot device, validate, ports of a node,
 * history, vifs.
 */
import type Router from '@koa/router';
import type { ConductorContext } from '../../context.js';
import { InvalidParameterValue, NotAcceptable, NotFound } from '../../errors.js';
import {
  changePowerState, getBootDevice, getSupportedBootDevices, setBootDevice, setMaintenance, validateNode,
} from '../../services/power.js';
import { doProvisionAction, type ProvisionRequest } from '../../services/provision.js';
import { onOwner } from '../../cluster/forward.js';
import { ident, noContent, queryParams, readObject, rejectUnknownKeys, state } from '../http.js';
import { links, renderStates } from '../render.js';
import { listPortsFor } from './ports.js';

export function nodeActionRoutes(router: Router, c: ConductorContext): void {
  const limit = c.config.max_body_bytes;

  router.get('/v1/nodes/:ident/states', async (ctx) => {
    const node = await c.tasks.findNode(ident(ctx.params.ident));
    ctx.body = renderStates(node, state(ctx).minor);
  });

  router.put('/v1/nodes/:ident/states/provision', async (ctx) => {
    const { minor, base } = state(ctx);
    const body = await readObject(ctx, limit);
    rejectUnknownKeys(body, ['target', 'configdrive', 'clean_steps', 'deploy_steps', 'rescue_password',
      'disable_ramdisk']);
    if (typeof body.target !== 'string') throw new InvalidParameterValue('Mandatory field missing: target');
    if (body.disable_ramdisk !== undefined && typeof body.disable_ramdisk !== 'boolean') {
      throw new InvalidParameterValue('"disable_ramdisk" must be a boolean');
    }
    if (body.disable_ramdisk !== undefined && minor < 70) throw new NotAcceptable();
    const id = ident(ctx.params.ident);
    await onOwner(c, id, 'do_provisioning_action', [id, body, minor],
      () => doProvisionAction(c, id, body as unknown as ProvisionRequest, minor));
    noContent(ctx, 202, `${base}/v1/nodes/${id}/states`);
  });

  router.put('/v1/nodes/:ident/states/power', async (ctx) => {
    const { minor, base } = state(ctx);
    const body = await readObject(ctx, limit);
    rejectUnknownKeys(body, ['target', 'timeout']);
    if (typeof body.target !== 'string') throw new InvalidParameterValue('Mandatory field missing: target');
    if ((body.target === 'soft rebooting' || body.target === 'soft power off' || body.timeout !== undefined) &&
      minor < 27) throw new NotAcceptable();
    let timeout: number | undefined;
    if (body.timeout !== undefined && body.timeout !== null) {
      if (typeof body.timeout !== 'number' || !Number.isInteger(body.timeout) || body.timeout < 1) {
        throw new InvalidParameterValue(`Invalid timeout value ${JSON.stringify(body.timeout)}. The timeout must be a positive integer.`);
      }
      timeout = body.timeout;
    }
    const id = ident(ctx.params.ident);
    const target = body.target;
    await onOwner(c, id, 'change_node_power_state', [id, target, timeout ?? null],
      () => changePowerState(c, id, target, timeout));
    noContent(ctx, 202, `${base}/v1/nodes/${id}/states`);
  });

  router.put('/v1/nodes/:ident/states/raid', async (ctx) => {
    if (state(ctx).minor < 12) throw new NotAcceptable();
    const body = await readObject(ctx, limit);
    const disks = body.logical_disks;
    if (!Array.isArray(disks)) {
      throw new InvalidParameterValue('RAID config validation error: "logical_disks" is a required property');
    }
    await c.tasks.withNodeTask(ident(ctx.params.ident), { exclusive: true, purpose: 'set target raid config' },
      async (task) => {
        const raid = task.driver.get('raid');
        await raid.validate(task.driverNode());
        raid.validateRaidConfig?.(body);
        await task.save({ target_raid_config: disks.length ? body : {} });
      });
    noContent(ctx, 204);
  });

  router.put('/v1/nodes/:ident/maintenance', async (ctx) => {
    const body = await readObject(ctx, limit);
    rejectUnknownKeys(body, ['reason']);
    if (body.reason !== undefined && body.reason !== null && typeof body.reason !== 'string') {
      throw new InvalidParameterValue('"reason" must be a string');
    }
    await setMaintenance(c, ident(ctx.params.ident), true, (body.reason as string | undefined) ?? null);
    noContent(ctx, 202);
  });

  router.delete('/v1/nodes/:ident/maintenance', async (ctx) => {
    await setMaintenance(c, ident(ctx.params.ident), false);
    noContent(ctx, 202);
  });

  router.get('/v1/nodes/:ident/management/boot_device', async (ctx) => {
    const id = ident(ctx.params.ident);
    ctx.body = await onOwner(c, id, 'get_boot_device', [id], () => getBootDevice(c, id));
  });

  router.get('/v1/nodes/:ident/management/boot_device/supported', async (ctx) => {
    const id = ident(ctx.params.ident);
    ctx.body = { supported_boot_devices: await onOwner(c, id, 'get_supported_boot_devices', [id],
      () => getSupportedBootDevices(c, id)) };
  });

  router.put('/v1/nodes/:ident/management/boot_device', async (ctx) => {
    const body = await readObject(ctx, limit);
    rejectUnknownKeys(body, ['boot_device', 'persistent']);
    if (typeof body.boot_device !== 'string') throw new InvalidParameterValue('Mandatory field missing: boot_device');
    if (body.persistent !== undefined && typeof body.persistent !== 'boolean') {
      throw new InvalidParameterValue('"persistent" must be a boolean');
    }
    const id = ident(ctx.params.ident);
    const device = body.boot_device;
    const persistent = body.persistent === true;
    await onOwner(c, id, 'set_boot_device', [id, device, persistent], () => setBootDevice(c, id, device, persistent));
    noContent(ctx, 204);
  });

  router.get('/v1/nodes/:ident/validate', async (ctx) => {
    const id = ident(ctx.params.ident);
    ctx.body = await onOwner(c, id, 'validate_driver_interfaces', [id], () => validateNode(c, id));
  });

  router.get('/v1/nodes/:ident/ports', (ctx) => listPortsFor(c, ctx, ident(ctx.params.ident), false));
  router.get('/v1/nodes/:ident/ports/detail', (ctx) => listPortsFor(c, ctx, ident(ctx.params.ident), true));

  router.get('/v1/nodes/:ident/history', async (ctx) => {
    const { minor, base } = state(ctx);
    if (minor < 78) throw new NotAcceptable();
    queryParams(ctx, ['detail', 'marker', 'limit']);
    const node = await c.tasks.findNode(ident(ctx.params.ident));
    const detail = ctx.query.detail === 'true' || ctx.query.detail === 'True';
    const rows = await c.store.listHistory(node.uuid);
    ctx.body = { history: rows.map((h) => ({
      uuid: h.uuid, created_at: h.created_at, severity: h.severity, event: h.event,
      ...(detail ? { event_type: h.event_type, conductor: h.conductor, user: h.user } : {}),
      links: links(base, 'nodes', `${node.uuid}/history/${h.uuid}`),
    })) };
  });

  router.get('/v1/nodes/:ident/history/:event', async (ctx) => {
    const { minor, base } = state(ctx);
    if (minor < 78) throw new NotAcceptable();
    queryParams(ctx, []);
    const node = await c.tasks.findNode(ident(ctx.params.ident));
    const id = ident(ctx.params.event);
    const h = (await c.store.listHistory(node.uuid)).find((r) => r.uuid === id);
    if (!h) throw new NotFound(`Node history record ${id} could not be found.`);
    ctx.body = { uuid: h.uuid, created_at: h.created_at, severity: h.severity, event: h.event, event_type: h.event_type,
      conductor: h.conductor, user: h.user, links: links(base, 'nodes', `${node.uuid}/history/${h.uuid}`) };
  });

  router.get('/v1/nodes/:ident/traits', async (ctx) => {
    if (state(ctx).minor < 37) throw new NotAcceptable();
    const node = await c.tasks.findNode(ident(ctx.params.ident));
    ctx.body = { traits: node.traits };
  });
}
