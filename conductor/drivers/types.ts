/**
 * Driver interfaces. A hardware type is a composition: for each interface kind the implementations it supports
 * (Ironic's drivers/generic.py idea). Drivers know hardware, not states: they never touch provision_state.
 */

export type PowerState = 'power on' | 'power off' | 'error';
/** Targets accepted by PUT /v1/nodes/{id}/states/power. */
export type PowerTarget = 'power on' | 'power off' | 'rebooting' | 'soft power off' | 'soft rebooting';
export type BootDevice = 'pxe' | 'disk' | 'cdrom' | 'bios' | 'safe';

/** What a driver sees of a node: plain data, no store access. */
export interface DriverNode {
  uuid: string;
  name?: string | null;
  driver: string;
  driver_info: Record<string, unknown>;
  instance_info: Record<string, unknown>;
  driver_internal_info: Record<string, unknown>;
  properties: Record<string, unknown>;
  /** The node's ports (MAC addresses), for boot interfaces keyed by MAC. */
  ports: { address: string; pxe_enabled: boolean }[];
  /** Last power state the conductor recorded (fake power reports it back). */
  power_state?: string | null;
}

/** Each interface: `validate` throws MissingParameterValue/InvalidParameterValue naming every bad driver_info key. */
export interface DriverInterface {
  readonly name: string;
  validate(node: DriverNode): void | Promise<void>;
  /** driver_info keys this interface understands: {key: description}, for GET /v1/drivers/{name}/properties. */
  readonly properties?: Record<string, string>;
}

export interface PowerInterface extends DriverInterface {
  getPowerState(node: DriverNode): Promise<PowerState>;
  setPowerState(node: DriverNode, target: PowerTarget, timeoutS?: number): Promise<void>;
  getSupportedPowerStates(node: DriverNode): PowerTarget[];
}

export interface ManagementInterface extends DriverInterface {
  getSupportedBootDevices(node: DriverNode): BootDevice[];
  getBootDevice(node: DriverNode): Promise<{ boot_device: BootDevice | null; persistent: boolean | null }>;
  setBootDevice(node: DriverNode, device: BootDevice, persistent: boolean): Promise<void>;
  getSensorsData?(node: DriverNode): Promise<Record<string, unknown>>;
  /** PUT /v1/nodes/{id}/management/inject_nmi: a diagnostic interrupt to the node (Ironic's inject_nmi). */
  injectNmi?(node: DriverNode): Promise<void>;
  /** Ironic's get_boot_mode/set_boot_mode (PUT .../states/boot_mode, 1.76); absent = UnsupportedDriverExtension. */
  getBootMode?(node: DriverNode): Promise<NodeBootMode | null>;
  setBootMode?(node: DriverNode, mode: NodeBootMode): Promise<void>;
  /** Ironic's get/set_secure_boot_state (PUT .../states/secure_boot, 1.76). */
  getSecureBootState?(node: DriverNode): Promise<boolean | null>;
  setSecureBootState?(node: DriverNode, on: boolean): Promise<void>;
  /** Ironic's indicator methods (GET/PUT .../management/indicators): {component: {name: {readonly, states}}}. */
  getSupportedIndicators?(node: DriverNode): Promise<SupportedIndicators>;
  getIndicatorState?(node: DriverNode, component: string, indicator: string): Promise<IndicatorState>;
  setIndicatorState?(node: DriverNode, component: string, indicator: string, state: IndicatorState): Promise<void>;
}

export type NodeBootMode = 'bios' | 'uefi';
/** Ironic's indicator_states. */
export type IndicatorState = 'OFF' | 'ON' | 'BLINKING' | 'UNKNOWN';
export type SupportedIndicators = Record<string, Record<string, { readonly: boolean; states: IndicatorState[] }>>;

/** Parameters the conductor hands the boot interface when it boots the deploy ramdisk. */
export interface RamdiskBootParams {
  /** Guest-facing API URL (ipa-api-url), never dialled by the conductor itself. */
  apiUrl: string;
  /** Extra kernel parameters (global config + driver_info.kernel_append_params). */
  kernelParams: string[];
  /** ipa-global-request-id for tracing. */
  requestId?: string;
  /** CA bundle (PEM) the ramdisk verifies an https apiUrl with; the boot interface hands it over (ipa-cafile). */
  apiCaPem?: string;
}

export interface BootInterface extends DriverInterface {
  prepareRamdisk(node: DriverNode, params: RamdiskBootParams): Promise<void>;
  cleanUpRamdisk(node: DriverNode): Promise<void>;
  prepareInstance(node: DriverNode): Promise<void>;
  cleanUpInstance(node: DriverNode): Promise<void>;
}

export type InterfaceKind = 'power' | 'management' | 'boot' | 'deploy' | 'raid' | 'bios' | 'console' | 'inspect' |
  'network' | 'rescue' | 'storage' | 'vendor' | 'firmware';

/** A hardware type: which implementation names it supports per interface kind; the first is the default. */
export interface HardwareType {
  readonly name: string;
  readonly supported: Partial<Record<InterfaceKind, string[]>>;
}
