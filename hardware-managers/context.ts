/**
 * Agent-wide facts the hardware managers need, set once by the agent at start-up (and by tests):
 * the device allow-list (tests: exactly their loop devices), whether we run inside the ramdisk, and the node
 * last sent by the conductor (root device hints, skip lists).
 */
import { blockContext, setBlockContext, type BlockContext } from '../block/context.js';
import type { NodeInfo } from './types.js';

/** deviceAllowlist and inRamdisk live in block/context.ts (the write guard reads them there). */
export interface HardwareContext extends BlockContext {
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

const ctx: Omit<HardwareContext, keyof BlockContext> = {
  node: null,
  minRootDeviceBytes: DEFAULT_MIN_ROOT_DEVICE_BYTES,
  skipBmcDetect: false,
  bootif: null,
};

export function setHardwareContext(update: Partial<HardwareContext>): void {
  const { deviceAllowlist, inRamdisk, ...rest } = update;
  setBlockContext({
    ...(deviceAllowlist !== undefined ? { deviceAllowlist } : {}),
    ...(inRamdisk !== undefined ? { inRamdisk } : {}),
  });
  Object.assign(ctx, rest);
}

/** A snapshot: read it again after setHardwareContext(). */
export function hardwareContext(): Readonly<HardwareContext> {
  return { ...blockContext(), ...ctx };
}
