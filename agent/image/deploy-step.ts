/**
 * Boundary between the generic hardware manager's `write_image` deploy step and the image writer.
 * (Placeholder until the image-writing issue lands: fails clearly, never reports success.)
 */
import type { StepCall } from '../../hardware-managers/types.js';
import { NotImplementedCommand } from '../protocol.js';

export async function writeImageStep(_call: StepCall): Promise<Record<string, unknown>> {
  throw new NotImplementedCommand('write_image is not implemented yet');
}
