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
}

const ctx: HardwareContext = { deviceAllowlist: null, inRamdisk: inRamdisk(), node: null };

export function setHardwareContext(update: Partial<HardwareContext>): void {
  Object.assign(ctx, update);
}

export function hardwareContext(): Readonly<HardwareContext> {
  return ctx;
}
