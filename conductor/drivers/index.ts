/**
 * Driver registry: interface implementations by kind and name, and hardware types that compose them
 * (Ironic's drivers/generic.py idea: composition, not inheritance).
 *
 * Adding a driver is additive: call `reg.registerInterface(kind, impl)` for each implementation and
 * `reg.registerHardwareType({name, supported})` for the type, from a `register*(reg)` function listed in
 * conductor/drivers/builtin.ts. The config then decides which types/interfaces are enabled; a node picks one
 * implementation per kind (its `*_interface` fields), defaulting to the first supported and enabled one.
 */
import type { ConductorConfig } from '../config.js';
import { DriverNotFound, InvalidParameterValue, UnsupportedDriverExtension } from '../errors.js';
import type { LockedTask } from '../locks.js';
import type {
  BootInterface, DriverInterface, HardwareType, InterfaceKind, ManagementInterface, PowerInterface,
} from './types.js';

export type { HardwareType, InterfaceKind } from './types.js';

/** The interface kinds a node has a `<kind>_interface` field for (Ironic 21.4: twelve). */
/** A locked node as driver interfaces see it: conductor/locks.ts's task, resolving to this registry's drivers. */
export type NodeTask = LockedTask<ResolvedDriver>;

/** One requested BIOS setting as the user gave it (the value keeps its JSON type for the BMC). */
export interface BiosSettingRequest { name: string; value: unknown }

/** Ironic's BIOSInterface; the steps and the fake live in drivers/bios.ts. */
export interface BiosInterface extends DriverInterface {
  applyConfiguration(task: NodeTask, settings: BiosSettingRequest[]): Promise<void>;
  factoryReset(task: NodeTask): Promise<void>;
  cacheBiosSettings(task: NodeTask): Promise<void>;
}

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
  bios: BiosInterface;
}
export type ImplOf<K extends InterfaceKind> = K extends keyof InterfaceTypes ? InterfaceTypes[K] : DriverInterface;

/**
 * One conductor's drivers: the implementations it registered (configured with its own settings) and the
 * hardware types composing them. Each conductor builds its own (conductor/drivers/builtin.ts), so two
 * conductors in one process never share a configured driver instance.
 */
export class DriverRegistry {
  private readonly implementations = new Map<InterfaceKind, Map<string, DriverInterface>>();
  private readonly hardwareTypes = new Map<string, HardwareType>();

  constructor(private readonly cfg: ConductorConfig) {}

  registerInterface<K extends InterfaceKind>(kind: K, impl: ImplOf<K>): void {
    const byName = this.implementations.get(kind) ?? new Map<string, DriverInterface>();
    this.implementations.set(kind, byName);
    byName.set(impl.name, impl);
  }

  registerHardwareType(type: HardwareType): void {
    this.hardwareTypes.set(type.name, type);
  }

  getInterfaceImpl<K extends InterfaceKind>(kind: K, name: string): ImplOf<K> | undefined {
    return this.implementations.get(kind)?.get(name) as ImplOf<K> | undefined;
  }

  registeredHardwareTypes(): HardwareType[] {
    return [...this.hardwareTypes.values()];
  }

  /** Hardware types both registered and enabled in config, in config order. */
  enabledHardwareTypes(): HardwareType[] {
    return this.cfg.enabled_hardware_types.map((n) => this.hardwareTypes.get(n)).filter((t): t is HardwareType => !!t);
  }

  getHardwareType(name: string): HardwareType {
    const t = this.hardwareTypes.get(name);
    if (!t || !this.cfg.enabled_hardware_types.includes(name)) throw new DriverNotFound(name);
    return t;
  }

  private enabledImpls(kind: InterfaceKind): string[] {
    const registered = [...(this.implementations.get(kind)?.keys() ?? [])];
    const wanted = this.cfg.enabled_interfaces[kind];
    return wanted ? wanted.filter((n) => registered.includes(n)) : registered;
  }

  /** Implementations of `kind` the type supports and the config enables, the type's preference order. */
  supportedInterfaces(type: HardwareType, kind: InterfaceKind): string[] {
    const enabled = this.enabledImpls(kind);
    return (type.supported[kind] ?? []).filter((n) => enabled.includes(n));
  }

  defaultInterface(type: HardwareType, kind: InterfaceKind): string | null {
    const supported = this.supportedInterfaces(type, kind);
    const configured = this.cfg.default_interfaces[kind];
    if (configured && supported.includes(configured)) return configured;
    return supported[0] ?? null;
  }

  /** Interface fields for a new node / a driver change: the node's explicit choices validated, defaults for the rest. */
  resolveInterfaceFields(driver: string, requested: Partial<Record<NodeInterfaceKind, string | null | undefined>>):
    Record<`${NodeInterfaceKind}_interface`, string | null> {
    const type = this.getHardwareType(driver);
    const out = {} as Record<`${NodeInterfaceKind}_interface`, string | null>;
    for (const kind of NODE_INTERFACE_KINDS) {
      const want = requested[kind];
      if (want !== undefined && want !== null) {
        const supported = this.supportedInterfaces(type, kind);
        if (!supported.includes(want)) {
          throw new InvalidParameterValue(`Could not find the following interface in the 'ironic.hardware.interfaces.` +
            `${kind}' entrypoint: ${want}. Valid interfaces are ${supported.join(', ')}.`);
        }
        out[`${kind}_interface`] = want;
      } else {
        out[`${kind}_interface`] = this.defaultInterface(type, kind);
      }
    }
    return out;
  }

  resolveDriver(node: { driver: string } & Partial<Record<`${NodeInterfaceKind}_interface`, string | null>>): ResolvedDriver {
    const names: Partial<Record<InterfaceKind, string | null>> = {};
    for (const kind of NODE_INTERFACE_KINDS) names[kind] = node[`${kind}_interface`] ?? null;
    return new ResolvedDriver(this, node.driver, names);
  }

  /** driver_info keys understood by the type's default interfaces (GET /v1/drivers/{name}/properties). */
  driverProperties(type: HardwareType): Record<string, string> {
    const props: Record<string, string> = {};
    for (const kind of NODE_INTERFACE_KINDS) {
      const n = this.defaultInterface(type, kind);
      const impl = n ? this.getInterfaceImpl(kind, n) : undefined;
      Object.assign(props, impl?.properties ?? {});
    }
    return props;
  }
}

/** A node's resolved interfaces; `get(kind)` throws a clear error when the node's choice is unavailable. */
export class ResolvedDriver {
  constructor(private readonly registry: DriverRegistry, readonly hardwareType: string,
    private readonly names: Partial<Record<InterfaceKind, string | null>>) {}

  name(kind: InterfaceKind): string | null {
    return this.names[kind] ?? null;
  }

  find<K extends InterfaceKind>(kind: K): ImplOf<K> | undefined {
    const n = this.names[kind];
    return n ? this.registry.getInterfaceImpl(kind, n) : undefined;
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
