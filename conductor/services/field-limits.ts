/**
 * Size and depth limits of the values stored per field. Request bodies are bounded as a whole
 * (conductor/api/http.ts), but JSON patches build values up over many requests: without a per-field bound a
 * dict could grow past what the recursive walkers that render it (JSON.stringify, structuredClone) survive,
 * and every later read of the node would fail. The numbers follow Ironic's columns: dicts are TEXT (64 KiB)
 * except instance_info (a long text there), strings VARCHAR(255).
 */
import { depthExceeds } from '../../common/safe-json.js';
import { InvalidParameterValue } from '../errors.js';

export const MAX_DICT_DEPTH = 32;
export const MAX_DICT_BYTES = 64 * 1024;
/** instance_info carries image properties and, in Ironic, may carry a config drive. */
export const MAX_INSTANCE_INFO_BYTES = 1024 * 1024;
export const MAX_STRING_CHARS = 255;

/** Refuses a dict field that nests deeper than MAX_DICT_DEPTH or serialises to more than its byte budget. */
export function checkDictField(name: string, value: unknown): void {
  if (value === null || typeof value !== 'object') return;
  if (depthExceeds(value, MAX_DICT_DEPTH)) {
    throw new InvalidParameterValue(`Field "${name}" is nested deeper than ${MAX_DICT_DEPTH} levels.`);
  }
  const max = name === 'instance_info' ? MAX_INSTANCE_INFO_BYTES : MAX_DICT_BYTES;
  if (Buffer.byteLength(JSON.stringify(value)) > max) {
    throw new InvalidParameterValue(`Field "${name}" is larger than ${max} bytes.`);
  }
}

/** Refuses a string field longer than `max` characters. */
export function checkStringField(name: string, value: unknown, max = MAX_STRING_CHARS): void {
  if (typeof value === 'string' && value.length > max) {
    throw new InvalidParameterValue(`Value for "${name}" is too long (more than ${max} characters).`);
  }
}
