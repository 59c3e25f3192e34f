/**
 * The hardware-manager plugin interface (IPA semantics). A vendor plugin is a plain
 * ES module whose default export (or `manager` export) is a HardwareManager object.
 */
import type { AgentStep } from '../protocol/agent-api.js';

export const HardwareSupport = {
  NONE: 0,
  GENERIC: 1,
  MAINLINE: 2,
  SERVICE_PROVIDER: 3,
} as const;
export type HardwareSupportLevel = number;

/** The Ironic node as the conductor sends it with step commands (secrets masked). */
export interface NodeInfo {
  uuid?: string;
  properties?: Record<string, unknown>;
  instance_info?: Record<string, unknown>;
  driver_info?: Record<string, unknown>;
  driver_internal_info?: Record<string, unknown>;
  target_raid_config?: Record<string, unknown>;
  raid_config?: Record<string, unknown>;
  [key: string]: unknown;
}

export interface PortInfo {
  address: string;
  uuid?: string;
  pxe_enabled?: boolean;
  [key: string]: unknown;
}

/** What a step method receives: the node, its ports and the step's args (IPA passes these as node, ports, **args). */
export interface StepCall {
  node: NodeInfo;
  ports: PortInfo[];
  args: Record<string, unknown>;
  /** Report progress of a long step (bytes done, phase, ...); shown in the running command's result. */
  progress?: (update: Record<string, unknown>) => void;
  /** Aborted when the conductor aborts the step or the agent shuts down. */
  signal?: AbortSignal;
}

export type StepMethod = (call: StepCall) => Promise<unknown>;

export interface HardwareManager {
  /** Key under which its steps are reported (IPA uses the class name, e.g. GenericHardwareManager). */
  readonly name: string;
  /** hardware_manager_version key/value (IPA: generic_hardware_manager / 1.2). */
  readonly versionName: string;
  readonly version: string;
  evaluateHardwareSupport(): HardwareSupportLevel | Promise<HardwareSupportLevel>;
  initialize?(): Promise<void>;
  getCleanSteps?(node: NodeInfo, ports: PortInfo[]): AgentStep[] | Promise<AgentStep[]>;
  getDeploySteps?(node: NodeInfo, ports: PortInfo[]): AgentStep[] | Promise<AgentStep[]>;
  getServiceSteps?(node: NodeInfo, ports: PortInfo[]): AgentStep[] | Promise<AgentStep[]>;
  /** Inventory pieces and helpers (listHardwareInfo, getOsInstallDevice, listBlockDevices, ...) and step methods
   * named exactly as IPA's steps (erase_devices, write_image, ...) are looked up by name at dispatch time. */
  [method: string]: unknown;
}
