/**
 * Vendor interfaces: named methods reachable through /v1/nodes/{n}/vendor_passthru?method=NAME (node methods, run
 * with the node's task) and /v1/drivers/{d}/vendor_passthru?method=NAME (driver methods, no node). Each method
 * carries Ironic's passthru metadata: the HTTP verbs it answers, async (202 and runs in the background under the
 * node lock) or sync (200 with its return value), attach (the return value is sent as a raw body) and whether it
 * needs the exclusive lock.
 *
 * A vendor plugin adds methods without touching this file: `vendor.addMethods({...})` on a registered instance,
 * or a module listed in the conductor's `vendor_plugins` setting that exports `registerVendorMethods(reg)`
 * (see conductor/drivers/examples/vendor-hello.ts and the README's "Vendor passthru" section).
 */
import { InvalidParameterValue, MissingParameterValue } from '../errors.js';
import type { DriverRegistry, NodeTask } from './index.js';
import type { DriverInterface, DriverNode } from './types.js';

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface VendorMethodMeta {
  http_methods: HttpMethod[];
  /** true: the API answers 202 at once and the method runs in the background, still holding the node's lock. */
  async: boolean;
  /** true: the return value (a string or bytes) is sent as the raw response body. */
  attach: boolean;
  description: string;
  /** Node methods only: false lets the method run under a shared lock (default true, as Ironic). */
  require_exclusive_lock: boolean;
}

export interface VendorCall {
  httpMethod: HttpMethod;
  /** The request's JSON body (GET/DELETE: the query parameters other than `method`). */
  args: Record<string, unknown>;
}

export interface NodeVendorMethod extends Partial<VendorMethodMeta> {
  /** Throws InvalidParameterValue/MissingParameterValue for bad arguments; runs before the 202 of an async call. */
  validate?(node: DriverNode, call: VendorCall): void;
  run(task: NodeTask, call: VendorCall): Promise<unknown>;
}

export interface DriverVendorMethod extends Partial<VendorMethodMeta> {
  validate?(call: VendorCall): void;
  run(call: VendorCall): Promise<unknown>;
}

export function methodMeta(m: Partial<VendorMethodMeta>): VendorMethodMeta {
  return {
    http_methods: m.http_methods ?? ['POST'],
    async: m.async ?? true,
    attach: m.attach ?? false,
    description: m.description ?? '',
    require_exclusive_lock: m.require_exclusive_lock ?? true,
  };
}

const METHOD_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;

/** A vendor interface: its node methods and driver methods, extensible at run time. */
export class VendorInterface implements DriverInterface {
  readonly nodeMethods = new Map<string, NodeVendorMethod>();
  readonly driverMethods = new Map<string, DriverVendorMethod>();

  constructor(readonly name: string, readonly properties: Record<string, string> = {},
    private readonly validateNode: (node: DriverNode) => void = () => undefined) {}

  validate(node: DriverNode): void {
    this.validateNode(node);
  }

  /** Adds (or replaces) methods; a name must be an identifier, as it travels in ?method=. */
  addMethods(methods: { node?: Record<string, NodeVendorMethod>; driver?: Record<string, DriverVendorMethod> }): this {
    for (const [name, m] of Object.entries(methods.node ?? {})) {
      if (!METHOD_NAME.test(name)) throw new Error(`vendor method name ${JSON.stringify(name)} is not an identifier`);
      this.nodeMethods.set(name, m);
    }
    for (const [name, m] of Object.entries(methods.driver ?? {})) {
      if (!METHOD_NAME.test(name)) throw new Error(`vendor method name ${JSON.stringify(name)} is not an identifier`);
      this.driverMethods.set(name, m);
    }
    return this;
  }
}

export function isVendorInterface(i: DriverInterface | undefined): i is VendorInterface {
  return i instanceof VendorInterface;
}

/** The registered vendor implementation `name` as a VendorInterface, if it is one. */
export function vendorImpl(reg: DriverRegistry, name: string): VendorInterface | undefined {
  const impl = reg.getInterfaceImpl('vendor', name);
  return isVendorInterface(impl) ? impl : undefined;
}

/** Reads an argument of a vendor call with a clear error when it is missing or of the wrong type. */
export function vendorArg<T extends 'string' | 'boolean'>(call: VendorCall, key: string, type: T, required: boolean):
  (T extends 'string' ? string : boolean) | undefined {
  const v = call.args[key];
  if (v === undefined || v === null) {
    if (required) throw new MissingParameterValue(`Parameter ${key} was not specified.`);
    return undefined;
  }
  if (type === 'boolean' && typeof v === 'string' && /^(true|false)$/i.test(v)) {
    return (v.toLowerCase() === 'true') as T extends 'string' ? string : boolean;
  }
  if (typeof v !== type) throw new InvalidParameterValue(`Parameter ${key} must be a ${type}, got ${JSON.stringify(v)}.`);
  return v as T extends 'string' ? string : boolean;
}

/** The `fake` vendor interface (Ironic's fake vendor): methods that touch nothing, for API tests. */
export function createFakeVendor(): VendorInterface {
  return new VendorInterface('fake').addMethods({
    node: {
      first_method: {
        description: 'Async: records its argument "bar" in driver_internal_info.fake_vendor_bar.',
        validate(_node, call) { vendorArg(call, 'bar', 'string', true); },
        async run(task, call) { await task.updateInternalInfo({ fake_vendor_bar: call.args.bar }); },
      },
      second_method: {
        http_methods: ['GET', 'PUT'], async: false, require_exclusive_lock: false,
        description: 'Sync: returns the node UUID, the HTTP method and the arguments.',
        async run(task, call) { return { node: task.node.uuid, http_method: call.httpMethod, args: call.args }; },
      },
      third_method_attach: {
        http_methods: ['GET'], async: false, attach: true, require_exclusive_lock: false,
        description: 'Sync, attach: returns a text file as the raw body.',
        async run(task) { return `node ${task.node.uuid}\n`; },
      },
    },
    driver: {
      driver_method: {
        http_methods: ['GET', 'POST'], async: false,
        description: 'Sync driver-level method: echoes the HTTP method and arguments.',
        async run(call) { return { http_method: call.httpMethod, args: call.args }; },
      },
    },
  });
}
