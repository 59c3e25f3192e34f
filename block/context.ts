/**
 * What the block layer's write-safety guard needs, set once at start-up by the agent (and by tests) through
 * hardware-managers/context.ts: the device allow-list (tests: exactly their loop devices) and whether we run inside
 * the ramdisk. Kept here, not in hardware-managers/, so block/ imports nothing above it.
 */
import { inRamdisk } from '../common/ramdisk.js';

export interface BlockContext {
  /** When set, the only block devices the managers list or touch. */
  deviceAllowlist: string[] | null;
  inRamdisk: boolean;
}

const ctx: BlockContext = { deviceAllowlist: null, inRamdisk: inRamdisk() };

export function setBlockContext(update: Partial<BlockContext>): void {
  if (update.deviceAllowlist !== undefined) ctx.deviceAllowlist = update.deviceAllowlist;
  if (update.inRamdisk !== undefined) ctx.inRamdisk = update.inRamdisk;
}

export function blockContext(): Readonly<BlockContext> {
  return ctx;
}
