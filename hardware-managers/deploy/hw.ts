/**
 * The deploy steps' doors into the managers and the block layer: the root device (dispatch, so a vendor manager
 * can choose it), the write-safety guard and the partition-table refresh (block/devices.ts owns both).
 */
import { dispatchToManagers } from '../redispatch.js';
import { assertSafeToWrite as guard, refreshPartitions as refresh } from '../../block/devices.js';
import type { NodeInfo } from '../types.js';
import { DeviceNotFound } from '../../protocol/agent-api.js';

export async function rootDevice(node: NodeInfo | null | undefined): Promise<string> {
  const dev = await dispatchToManagers<string>('getOsInstallDevice', node ?? null);
  if (typeof dev !== 'string' || dev === '') throw new DeviceNotFound('No root device was found to write the image to');
  return dev;
}

/** Called right before anything is written to `dev` (disk or partition). */
export async function assertSafeToWrite(dev: string): Promise<void> {
  await guard(dev);
}

export async function refreshPartitions(dev: string): Promise<void> {
  await refresh(dev);
}
