/**
 * The in-band firmware update framework: the update_firmware step downloads each component's image (node:http/
 * https: undici 7 can truncate downloads on Node 20), verifies its checksum, and hands the file
 * to a flasher found by dispatch: `flash_firmware_<component>` first, then a catch-all `flash_firmware`. The
 * generic manager flashes nothing (its flash_firmware says IncompatibleHardwareMethodError); vendor plugins do.
 */
import { createHash, type Hash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import type { IncomingMessage } from 'node:http';
import { pipeline } from 'node:stream/promises';
import {
  AgentError, HardwareManagerMethodNotFound, ImageChecksumError, ImageDownloadError, IncompatibleHardwareMethodError,
  InvalidCommandParamsError,
} from '../../protocol/agent-api.js';
import { imageSettings } from '../../image/settings.js';
import { nextRedirect, RedirectRefused } from '../../common/http-redirect.js';
import { getLogger } from '../../common/logger.js';
import { dispatchToManagers } from '../redispatch.js';
import type { StepCall } from '../types.js';
import { errorMessage } from '../../common/errors.js';

const log = getLogger('firmware');

export interface FirmwareComponent {
  component: string;
  url: string;
  checksum: string;
  [key: string]: unknown;
}

const HEX_LENGTH_ALGO: Record<number, string> = { 32: 'md5', 40: 'sha1', 64: 'sha256', 128: 'sha512' };

/** "sha256:abc…", "sha512:…", or bare hex (algorithm from its length). */
export function parseChecksum(spec: string): { algo: string; hex: string } {
  const s = spec.trim();
  const m = /^([a-z0-9-]+):([0-9a-f]+)$/i.exec(s);
  if (m?.[1] && m[2]) return { algo: m[1].toLowerCase(), hex: m[2].toLowerCase() };
  const algo = /^[0-9a-f]+$/i.test(s) ? HEX_LENGTH_ALGO[s.length] : undefined;
  if (!algo) throw new InvalidCommandParamsError(`Unrecognised firmware checksum "${spec}" (use algo:hex, e.g. sha256:…)`);
  return { algo, hex: s.toLowerCase() };
}

/** GET over http(s) only; redirects by common/http-redirect.ts (no downgrade, bounded, scheme-checked). */
function get(url: string, signal: AbortSignal | undefined, hop = 0): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      reject(new ImageDownloadError(`Invalid firmware URL ${url}`));
      return;
    }
    const mod = u.protocol === 'https:' ? https : u.protocol === 'http:' ? http : null;
    if (!mod) {
      reject(new ImageDownloadError(`Unsupported firmware URL scheme ${u.protocol} in ${url} (only http and https)`));
      return;
    }
    const req = mod.get(u, { timeout: 60_000, ...(signal ? { signal } : {}) }, (res) => {
      const status = res.statusCode ?? 0;
      if (status >= 300 && status < 400 && res.headers.location) {
        res.resume();
        try {
          const next = nextRedirect(u, res.headers.location, hop, imageSettings().maxRedirects);
          resolve(get(next.url.href, signal, hop + 1));
        } catch (e) {
          reject(new ImageDownloadError(`Download of firmware ${url} failed: ${(e as RedirectRefused).message}`));
        }
        return;
      }
      if (status !== 200) {
        res.resume();
        reject(new ImageDownloadError(`Download of firmware ${url} failed: HTTP ${status}`));
        return;
      }
      resolve(res);
    });
    req.on('timeout', () => req.destroy(new Error('connection timed out')));
    req.on('error', (e) => reject(e instanceof AgentError ? e : new ImageDownloadError(`Download of firmware ${url} failed: ${e.message}`)));
  });
}

/** Fetch `url` into `dest`, hashing on the way; throws ImageChecksumError on a mismatch. */
export async function downloadVerified(
  url: string, checksum: string, dest: string, signal?: AbortSignal,
): Promise<{ bytes: number; algo: string; hex: string }> {
  const want = parseChecksum(checksum);
  let hash: Hash;
  try {
    hash = createHash(want.algo);
  } catch {
    throw new InvalidCommandParamsError(`Unsupported checksum algorithm ${want.algo}`);
  }
  const max = imageSettings().firmwareMaxBytes;
  const source = await get(url, signal);
  const declared = Number(source.headers['content-length'] ?? NaN);
  if (declared > max) {
    source.destroy();
    throw new ImageDownloadError(`Download of firmware ${url} failed: ${declared} bytes is more than the ${max} bytes allowed`);
  }
  let bytes = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      bytes += chunk.length;
      if (bytes > max) {
        cb(new ImageDownloadError(`Download of firmware ${url} failed: more than the ${max} bytes allowed`));
        return;
      }
      hash.update(chunk);
      cb(null, chunk);
    },
  });
  try {
    await pipeline(source, tap, createWriteStream(dest), ...(signal ? [{ signal }] : []));
  } catch (e) {
    if (e instanceof AgentError) throw e;
    throw new ImageDownloadError(`Download of firmware ${url} failed: ${errorMessage(e)}`);
  }
  const got = hash.digest('hex');
  if (got !== want.hex) {
    throw new ImageChecksumError(
      `Firmware image failed to verify against checksum. location: ${url}; checksum: ${want.algo}:${want.hex}; verification checksum: ${got}`,
    );
  }
  return { bytes, algo: want.algo, hex: got };
}

function components(args: Record<string, unknown>): FirmwareComponent[] {
  // `settings` is the name Ironic's firmware interface uses for the same list.
  const list = args.components ?? args.settings;
  if (!Array.isArray(list) || list.length === 0) {
    throw new InvalidCommandParamsError('update_firmware needs args.components: [{component, url, checksum}, ...]');
  }
  return list.map((c, i) => {
    const o = (c ?? {}) as Record<string, unknown>;
    if (typeof o.component !== 'string' || !/^[a-z0-9_]+$/i.test(o.component)) {
      throw new InvalidCommandParamsError(`components[${i}].component must be a word such as bios, bmc or nic`);
    }
    if (typeof o.url !== 'string' || typeof o.checksum !== 'string') {
      throw new InvalidCommandParamsError(`components[${i}] needs url and checksum strings`);
    }
    return o as FirmwareComponent;
  });
}

async function flash(call: StepCall, c: FirmwareComponent, imagePath: string): Promise<unknown> {
  // The flasher sees the step's other args (e.g. vendor options) plus this component and the verified file.
  const { components: _list, settings: _settings, ...stepArgs } = call.args;
  const flashCall: StepCall = { ...call, args: { ...stepArgs, ...c, image_path: imagePath } };
  for (const method of [`flash_firmware_${c.component.toLowerCase()}`, 'flash_firmware']) {
    try {
      return await dispatchToManagers(method, flashCall);
    } catch (e) {
      if (!(e instanceof HardwareManagerMethodNotFound)) throw e;
    }
  }
  throw new HardwareManagerMethodNotFound(
    `Could not find method: flash_firmware_${c.component} (no hardware manager can flash ${c.component} firmware)`,
  );
}

/** The update_firmware step: every component downloaded, verified and flashed, in the order given. */
export async function updateFirmware(call: StepCall): Promise<Record<string, unknown>> {
  const list = components(call.args);
  const dir = await mkdtemp(join(tmpdir(), 'bmts-fw-'));
  const results: Record<string, unknown>[] = [];
  try {
    for (const [i, c] of list.entries()) {
      const file = join(dir, `${i}-${c.component}.bin`);
      call.progress?.({ component: c.component, phase: 'download', index: i + 1, total: list.length });
      const got = await downloadVerified(c.url, c.checksum, file, call.signal);
      log.info({ component: c.component, url: c.url, bytes: got.bytes }, 'firmware image verified');
      call.progress?.({ component: c.component, phase: 'flash', index: i + 1, total: list.length });
      const result = await flash(call, c, file);
      results.push({ component: c.component, url: c.url, checksum: `${got.algo}:${got.hex}`, bytes: got.bytes, result: result ?? null });
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return { components: results };
}

/** The generic manager's flasher: there is no vendor-neutral way to flash firmware. */
export async function genericFlashFirmware(call: StepCall): Promise<never> {
  throw new IncompatibleHardwareMethodError(
    `GenericHardwareManager has no firmware flasher for component ${String(call.args.component)}`,
  );
}
