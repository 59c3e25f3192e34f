/**
 * Vendor passthru (Ironic's conductor vendor_passthru / driver_vendor_passthru): find the method on the node's
 * (or the hardware type's default) vendor interface, check the HTTP verb, validate its arguments, then run it —
 * sync: the return value goes back to the caller; async: the caller gets 202 at once and the method runs in the
 * background while the task keeps the node's exclusive reservation.
 */
import { errorMessage } from '../../common/errors.js';
import type { ConductorContext } from '../context.js';
import { methodMeta, vendorImpl, type HttpMethod, type VendorCall, type VendorInterface, type VendorMethodMeta }
  from '../drivers/vendor.js';
import { InvalidParameterValue, UnsupportedDriverExtension } from '../errors.js';

export interface PassthruResult {
  async: boolean;
  attach: boolean;
  value: unknown;
}

function checkVerb(meta: VendorMethodMeta, method: string, http: HttpMethod): void {
  if (!meta.http_methods.includes(http)) {
    throw new InvalidParameterValue(`The method ${method} does not support HTTP ${http}. Supported methods are: ` +
      `${meta.http_methods.join(', ')}.`);
  }
}

function requireMethodName(method: string | undefined): string {
  if (!method) throw new InvalidParameterValue('Method not specified');
  return method;
}

function nodeVendor(ctx: ConductorContext, name: string | null, driver: string): VendorInterface {
  const impl = name ? vendorImpl(ctx.drivers, name) : undefined;
  if (!impl) throw new UnsupportedDriverExtension(`Driver ${driver} does not support vendor (disabled or not implemented).`);
  return impl;
}

/** GET /v1/nodes/{n}/vendor_passthru/methods */
export async function nodeVendorMethods(ctx: ConductorContext, ident: string): Promise<Record<string, VendorMethodMeta>> {
  const node = await ctx.tasks.findNode(ident);
  const v = nodeVendor(ctx, node.vendor_interface, node.driver);
  return Object.fromEntries([...v.nodeMethods].map(([n, m]) => [n, methodMeta(m)]));
}

export async function nodeVendorPassthru(ctx: ConductorContext, ident: string, method: string | undefined,
  http: HttpMethod, args: Record<string, unknown>): Promise<PassthruResult> {
  const name = requireMethodName(method);
  const node = await ctx.tasks.findNode(ident);
  const v = nodeVendor(ctx, node.vendor_interface, node.driver);
  const m = v.nodeMethods.get(name);
  if (!m) throw new InvalidParameterValue(`No handler for method ${name}`);
  const meta = methodMeta(m);
  checkVerb(meta, name, http);
  const call: VendorCall = { httpMethod: http, args };
  const exclusive = meta.async || meta.require_exclusive_lock;
  return ctx.tasks.withNodeTask(node, { exclusive, purpose: `vendor passthru ${name}` }, async (task) => {
    await v.validate(task.driverNode());
    m.validate?.(task.driverNode(), call);
    if (!meta.async) return { async: false, attach: meta.attach, value: await m.run(task, call) };
    task.spawn(async (t) => {
      try {
        await m.run(t, call);
      } catch (e) {
        const msg = `Vendor passthru method ${name} failed on node ${t.node.uuid}: ${errorMessage(e)}`;
        ctx.log.warn({ node: t.node.uuid, method: name, err: msg }, 'async vendor passthru failed');
        await t.save({ last_error: msg }).catch(() => undefined); // the failure is logged above either way
      }
    });
    return { async: true, attach: false, value: undefined };
  });
}

function driverVendor(ctx: ConductorContext, driver: string): VendorInterface {
  const type = ctx.drivers.getHardwareType(driver);
  const name = ctx.drivers.defaultInterface(type, 'vendor');
  return nodeVendor(ctx, name, driver);
}

/** GET /v1/drivers/{d}/vendor_passthru/methods */
export function driverVendorMethods(ctx: ConductorContext, driver: string): Record<string, VendorMethodMeta> {
  const v = driverVendor(ctx, driver);
  return Object.fromEntries([...v.driverMethods].map(([n, m]) => [n, methodMeta(m)]));
}

export async function driverVendorPassthru(ctx: ConductorContext, driver: string, method: string | undefined,
  http: HttpMethod, args: Record<string, unknown>): Promise<PassthruResult> {
  const name = requireMethodName(method);
  const v = driverVendor(ctx, driver);
  const m = v.driverMethods.get(name);
  if (!m) throw new InvalidParameterValue(`No handler for method ${name}`);
  const meta = methodMeta(m);
  checkVerb(meta, name, http);
  const call: VendorCall = { httpMethod: http, args };
  m.validate?.(call);
  if (!meta.async) return { async: false, attach: meta.attach, value: await m.run(call) };
  // Driver methods have no node to lock: the background run is only logged.
  void m.run(call).catch((e: unknown) =>
    ctx.log.warn({ driver, method: name, err: errorMessage(e) }, 'async driver vendor passthru failed'));
  return { async: true, attach: false, value: undefined };
}
