/**
 * Reading driver_info for the real drivers: every key is checked in one pass so `validate` can name all missing
 * and malformed keys at once (an operator fixing one key per round-trip is the pain this avoids).
 */
import { InvalidParameterValue, MissingParameterValue } from '../errors.js';
import type { DriverNode } from './types.js';

export class DriverInfoReader {
  private readonly missing: string[] = [];
  private readonly invalid: string[] = [];

  constructor(private readonly info: Record<string, unknown>) {}

  private raw(key: string): unknown {
    const v = this.info[key];
    return v === null || v === '' ? undefined : v;
  }

  /** A string value; numbers are accepted and stringified (the CLI sends everything as strings anyway). */
  str(key: string, required = false): string | undefined {
    const v = this.raw(key);
    if (v === undefined) {
      if (required) this.missing.push(key);
      return undefined;
    }
    if (typeof v === 'string') return v;
    if (typeof v === 'number') return String(v);
    this.invalid.push(`${key} must be a string, got ${JSON.stringify(v)}`);
    return undefined;
  }

  int(key: string, opts: { min?: number; max?: number; required?: boolean } = {}): number | undefined {
    const v = this.raw(key);
    if (v === undefined) {
      if (opts.required) this.missing.push(key);
      return undefined;
    }
    const n = typeof v === 'number' ? v : typeof v === 'string' && /^\s*-?\d+\s*$/.test(v) ? Number(v) : NaN;
    if (!Number.isInteger(n) || (opts.min !== undefined && n < opts.min) || (opts.max !== undefined && n > opts.max)) {
      const range = opts.min !== undefined || opts.max !== undefined ? ` in [${opts.min ?? ''}..${opts.max ?? ''}]` : '';
      this.invalid.push(`${key} must be an integer${range}, got ${JSON.stringify(v)}`);
      return undefined;
    }
    return n;
  }

  oneOf<T extends string>(key: string, allowed: readonly T[], dflt: T, caseInsensitive = false): T {
    const s = this.str(key);
    if (s === undefined) return dflt;
    const hit = allowed.find((a) => (caseInsensitive ? a.toLowerCase() === s.toLowerCase() : a === s));
    if (hit === undefined) {
      this.invalid.push(`${key} must be one of ${allowed.join(', ')}, got ${JSON.stringify(s)}`);
      return dflt;
    }
    return hit;
  }

  bool(key: string, dflt: boolean): boolean {
    const v = this.raw(key);
    if (v === undefined) return dflt;
    const b = parseBool(v);
    if (b === undefined) {
      this.invalid.push(`${key} must be a boolean, got ${JSON.stringify(v)}`);
      return dflt;
    }
    return b;
  }

  /** Record a malformed value found by the caller's own checks. */
  bad(message: string): void {
    this.invalid.push(message);
  }

  /** Throw one error naming every problem: MissingParameterValue when anything is missing, else Invalid. */
  finish(what: string, node: DriverNode): void {
    if (this.missing.length > 0) {
      const extra = this.invalid.length > 0 ? ` Also invalid: ${this.invalid.join('; ')}.` : '';
      throw new MissingParameterValue(
        `Missing the following ${what} properties in node ${node.uuid} driver_info: ${this.missing.join(', ')}.${extra}`,
      );
    }
    if (this.invalid.length > 0) {
      throw new InvalidParameterValue(`Invalid ${what} properties in node ${node.uuid} driver_info: ${this.invalid.join('; ')}.`);
    }
  }
}

export function parseBool(v: unknown): boolean | undefined {
  if (typeof v === 'boolean') return v;
  if (typeof v === 'number') return v !== 0;
  if (typeof v !== 'string') return undefined;
  const s = v.trim().toLowerCase();
  if (['true', 'yes', 'on', '1', 'y', 't'].includes(s)) return true;
  if (['false', 'no', 'off', '0', 'n', 'f'].includes(s)) return false;
  return undefined;
}

export type BootMode = 'bios' | 'uefi';

/**
 * The node's boot mode as Ironic derives it: instance_info.deploy_boot_mode, then the `boot_mode` capability in
 * properties.capabilities ("k:v,k:v" string or object), else the configured default.
 */
export function bootModeOf(node: DriverNode, dflt: BootMode = 'bios'): BootMode {
  const fromInstance = node.instance_info.deploy_boot_mode;
  if (fromInstance === 'uefi' || fromInstance === 'bios') return fromInstance;
  const caps = node.properties.capabilities;
  let mode: unknown;
  if (typeof caps === 'string') {
    for (const kv of caps.split(',')) {
      const [k, v] = kv.split(':');
      if (k?.trim() === 'boot_mode') mode = v?.trim();
    }
  } else if (caps && typeof caps === 'object') {
    mode = (caps as Record<string, unknown>).boot_mode;
  }
  return mode === 'uefi' || mode === 'bios' ? mode : dflt;
}

/** Poll `read` until it returns `want` or the deadline passes; returns the last value read. */
export async function waitForPowerState<T>(
  read: () => Promise<T>,
  want: T,
  timeoutMs: number,
  intervalMs: number,
): Promise<{ reached: boolean; last: T }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const last = await read();
    if (last === want) return { reached: true, last };
    if (Date.now() + intervalMs > deadline) return { reached: false, last };
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
