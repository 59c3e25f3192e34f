/**
 * Agent-wide facts the hardware managers need, set once by the agent at start-up (and by tests):
 * the device allow-list (tests: exactly their loop devices), whether we run inside the ramdisk, and the node
 * last sent by the conductor (root device hints, skip lists).
 */
import { inRamdisk } from '../common/ramdisk.js';
import type { NodeInfo } from './types.js';

export interface HardwareContext {
  /** When set, the only block devices the managers list or touch. */
  deviceAllowlist: string[] | null;
  inRamdisk: boolean;
  node: NodeInfo | null;
  /** Without root device hints the smallest disk at least this big is chosen (IPA: 4 GiB; tests with small loop
   * devices lower it). */
  minRootDeviceBytes: number;
  /** ipa-agent_skip_bmc_detect / node skip_bmc_detect: never run ipmitool for the inventory. */
  skipBmcDetect: boolean;
  /** BOOTIF from the kernel command line, reported as boot.pxe_interface. */
  bootif: string | null;
}

export const DEFAULT_MIN_ROOT_DEVICE_BYTES = 4 * 1024 ** 3;

const ctx: HardwareContext = {
  deviceAllowlist: null,
  inRamdisk: inRamdisk(),
  node: null,
  minRootDeviceBytes: DEFAULT_MIN_ROOT_DEVICE_BYTES,
  skipBmcDetect: false,
  bootif: null,
};

export function setHardwareContext(update: Partial<HardwareContext>): void {
  Object.assign(ctx, update);
}

export function hardwareContext(): Readonly<HardwareContext> {
  return ctx;
}
