/**
 * The generic "nothing here" implementations every hardware type may use: `no-*` ones refuse validation with
 * UnsupportedDriverExtension (so `node validate` shows them False, as Ironic does), `noop` ones accept.
 */
import { UnsupportedDriverExtension } from '../errors.js';
import type { DriverRegistry, NodeInterfaceKind } from './index.js';
import type { DriverInterface } from './types.js';

function unsupported(name: string, kind: string): DriverInterface {
  return {
    name,
    validate(node) {
      throw new UnsupportedDriverExtension(`Driver ${node.driver} does not support ${kind} (disabled or not implemented).`);
    },
  };
}

const accepting = (name: string): DriverInterface => ({ name, validate() {} });

export const NOOP_INTERFACES: readonly [NodeInterfaceKind, DriverInterface][] = [
  ['bios', unsupported('no-bios', 'bios')],
  ['console', unsupported('no-console', 'console')],
  ['inspect', unsupported('no-inspect', 'inspect')],
  ['raid', unsupported('no-raid', 'raid')],
  ['rescue', unsupported('no-rescue', 'rescue')],
  ['vendor', unsupported('no-vendor', 'vendor')],
  ['network', accepting('noop')],
  ['network', accepting('flat')],
  ['storage', accepting('noop')],
];

export function registerNoopInterfaces(reg: DriverRegistry): void {
  for (const [kind, impl] of NOOP_INTERFACES) {
    // The registry types rescue/inspect/raid/bios more strictly; these are never called beyond validate(), which fails.
    reg.registerInterface(kind as 'console', impl);
  }
}
