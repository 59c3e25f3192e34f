/**
 * Driver registry: interface implementations by kind and name, and hardware types that compose them
 * (Ironic's drivers/generic.py idea: composition, not inheritance).
 *
 * Adding a driver is additive: call `registerInterface(kind, impl)` for each implementation and
 * `registerHardwareType({name, supported})` for the type, from a `register*()` function listed in
 * conductor/drivers/builtin.ts. The config then decides which types/interfaces are enabled; a node picks one
 * implementation per kind (its `*_interface` fields), defaulting to the first supported and enabled one.
 */
import type { ConductorConfig } from '../config.js';
import { DriverNotFound, InvalidParameterValue, UnsupportedDriverExtension } from '../errors.js';
import type { NodeTask } from '../locks.js';
import type {
  BootInterface, DriverInterface, HardwareType, InterfaceKind, ManagementInterface, PowerInterface,
} from './types.js';

export type { HardwareType, InterfaceKind } from './types.js';

/** The interface kinds a node has a `<kind>_interface` field for (Ironic 21.4: twelve). */
export const NODE_INTERFACE_KINDS = [
  'bios', 'boot', 'console', 'deploy', 'inspect', 'management', 'network', 'power', 'raid', 'rescue', 'storage',
  'vendor',
] as const satisfies readonly InterfaceKind[];
export type NodeInterfaceKind = (typeof NODE_INTERFACE_KINDS)[number];

export interface CleanStepRequest {
  interface: string;
  step: string;
  args?: Record<string, unknown>;
}

/**
 * Deploy interface. Methods run under the node's exclusive task, in the background worker after the API has
 * answered 202. Returning 'wait' parks the node in the matching wait state (wait call-back / clean wait); the
 * orchestration then finishes the operation from heartbeats with `finishDeploy`/`finishCleaning` (node-ops).
 */
export interface DeployInterface extends DriverInterface {
  deploy(task: NodeTask): Promise<'wait' | void>;
  tearDown(task: NodeTask): Promise<void>;
  /** Runs automated (manual=false) or manual cleaning; void = cleaning finished. */
  clean(task: NodeTask, opts: { manual: boolean; steps?: CleanStepRequest[]; disableRamdisk?: boolean }):
    Promise<'wait' | void>;
  /** Abort a clean wait (tear down cleaning). */
  abortCleaning?(task: NodeTask): Promise<void>;
  takeOver?(task: NodeTask): Promise<void>;
}

export interface RescueInterface extends DriverInterface {
  rescue(task: NodeTask, password: string): Promise<'wait' | void>;
  unrescue(task: NodeTask): Promise<void>;
}

export interface InspectInterface extends DriverInterface {
  inspectHardware(task: NodeTask): Promise<'wait' | void>;
  abort?(task: NodeTask): Promise<void>;
}

export interface RaidInterface extends DriverInterface {
  validateRaidConfig?(config: Record<string, unknown>): void;
}

/** Implementation type per kind (kinds not listed use the bare DriverInterface). */
export interface InterfaceTypes {
  power: PowerInterface;
  management: ManagementInterface;
  boot: BootInterface;
  deploy: DeployInterface;
  rescue: RescueInterface;
  inspect: InspectInterface;
  raid: RaidInterface;
}
export type ImplOf<K extends InterfaceKind> = K extends keyof InterfaceTypes ? InterfaceTypes[K] : DriverInterface;

const implementations = new Map<InterfaceKind, Map<string, DriverInterface>>();
const hardwareTypes = new Map<string, HardwareType>();

export function registerInterface<K extends InterfaceKind>(kind: K, impl: ImplOf<K>): void {
  let byName = implementations.get(kind);
  if (!byName) implementations.set(kind, (byName = new Map()));
  byName.set(impl.name, impl);
}

export function registerHardwareType(type: HardwareType): void {
  hardwareTypes.set(type.name, type);
}

export function getInterfaceImpl<K extends InterfaceKind>(kind: K, name: string): ImplOf<K> | undefined {
  return implementations.get(kind)?.get(name) as ImplOf<K> | undefined;
}

export function registeredHardwareTypes(): HardwareType[] {
  return [...hardwareTypes.values()];
}

/** Hardware types both registered and enabled in config, in config order. */
export function enabledHardwareTypes(cfg: ConductorConfig): HardwareType[] {
  return cfg.enabled_hardware_types.map((n) => hardwareTypes.get(n)).filter((t): t is HardwareType => !!t);
}

export function getHardwareType(cfg: ConductorConfig, name: string): HardwareType {
  const t = hardwareTypes.get(name);
  if (!t || !cfg.enabled_hardware_types.includes(name)) throw new DriverNotFound(name);
  return t;
}

function enabledImpls(cfg: ConductorConfig, kind: InterfaceKind): string[] {
  const registered = [...(implementations.get(kind)?.keys() ?? [])];
  const wanted = cfg.enabled_interfaces[kind];
  return wanted ? wanted.filter((n) => registered.includes(n)) : registered;
}

/** Implementations of `kind` the type supports and the config enables, the type's preference order. */
export function supportedInterfaces(cfg: ConductorConfig, type: HardwareType, kind: InterfaceKind): string[] {
  const enabled = enabledImpls(cfg, kind);
  return (type.supported[kind] ?? []).filter((n) => enabled.includes(n));
}

export function defaultInterface(cfg: ConductorConfig, type: HardwareType, kind: InterfaceKind): string | null {
  const supported = supportedInterfaces(cfg, type, kind);
  const configured = cfg.default_interfaces[kind];
  if (configured && supported.includes(configured)) return configured;
  return supported[0] ?? null;
}

/** Interface fields for a new node / a driver change: the node's explicit choices validated, defaults for the rest. */
export function resolveInterfaceFields(cfg: ConductorConfig, driver: string,
  requested: Partial<Record<NodeInterfaceKind, string | null | undefined>>): Record<`${NodeInterfaceKind}_interface`, string | null> {
  const type = getHardwareType(cfg, driver);
  const out = {} as Record<`${NodeInterfaceKind}_interface`, string | null>;
  for (const kind of NODE_INTERFACE_KINDS) {
    const want = requested[kind];
    if (want !== undefined && want !== null) {
      if (!supportedInterfaces(cfg, type, kind).includes(want)) {
        throw new InvalidParameterValue(`Could not find the following interface in the 'ironic.hardware.interfaces.` +
          `${kind}' entrypoint: ${want}. Valid interfaces are ${supportedInterfaces(cfg, type, kind).join(', ')}.`);
      }
      out[`${kind}_interface`] = want;
    } else {
      out[`${kind}_interface`] = defaultInterface(cfg, type, kind);
    }
  }
  return out;
}

/** A node's resolved interfaces; `get(kind)` throws a clear error when the node's choice is unavailable. */
export class ResolvedDriver {
  constructor(readonly hardwareType: string, private readonly names: Partial<Record<InterfaceKind, string | null>>) {}

  name(kind: InterfaceKind): string | null {
    return this.names[kind] ?? null;
  }

  find<K extends InterfaceKind>(kind: K): ImplOf<K> | undefined {
    const n = this.names[kind];
    return n ? getInterfaceImpl(kind, n) : undefined;
  }

  get<K extends InterfaceKind>(kind: K): ImplOf<K> {
    const impl = this.find(kind);
    if (!impl) {
      throw new UnsupportedDriverExtension(`Driver ${this.hardwareType} does not support ${kind} ` +
        `(disabled or not implemented).`);
    }
    return impl;
  }

  get power(): PowerInterface { return this.get('power'); }
  get management(): ManagementInterface { return this.get('management'); }
  get boot(): BootInterface { return this.get('boot'); }
  get deploy(): DeployInterface { return this.get('deploy'); }
}

export function resolveDriver(node: { driver: string } & Partial<Record<`${NodeInterfaceKind}_interface`, string | null>>):
  ResolvedDriver {
  const names: Partial<Record<InterfaceKind, string | null>> = {};
  for (const kind of NODE_INTERFACE_KINDS) names[kind] = node[`${kind}_interface`] ?? null;
  return new ResolvedDriver(node.driver, names);
}

/** driver_info keys understood by the type's default interfaces (GET /v1/drivers/{name}/properties). */
export function driverProperties(cfg: ConductorConfig, type: HardwareType): Record<string, string> {
  const props: Record<string, string> = {};
  for (const kind of NODE_INTERFACE_KINDS) {
    const n = defaultInterface(cfg, type, kind);
    const impl = n ? getInterfaceImpl(kind, n) : undefined;
    Object.assign(props, impl?.properties ?? {});
  }
  return props;
}
