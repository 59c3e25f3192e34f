/**
 * Which local files the conductor may read on an operator's say-so (Ironic's [conductor]file_url_allowed_paths).
 * A driver_info/instance_info value naming a local file (an absolute path or a file:// URL) is accepted only when
 * its realpath lies under one of the configured directories and is a regular file: otherwise any API user could
 * have the boot server publish the conductor's own database, keys or /etc/shadow.
 */
import { realpathSync, statSync } from 'node:fs';
import { join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidParameterValue } from './errors.js';

/** The keys the conductor (not the agent) reads local files from. */
export const DRIVER_INFO_FILE_KEYS = ['deploy_kernel', 'deploy_ramdisk', 'rescue_kernel', 'rescue_ramdisk'] as const;
export const INSTANCE_INFO_FILE_KEYS = ['image_source', 'kernel', 'ramdisk', 'deploy_kernel', 'deploy_ramdisk'] as const;

/** Configured allow-list, default <data_dir>/images. */
export function allowedFileDirs(cfg: { data_dir: string; file_url_allowed_paths?: readonly string[] | undefined }): string[] {
  return [...(cfg.file_url_allowed_paths ?? [join(cfg.data_dir, 'images')])];
}

/** True for values that name a local file: `file:` URLs and absolute paths. */
export function isLocalFileRef(value: string): boolean {
  return /^file:/i.test(value) || value.startsWith('/');
}

function toPath(value: string): string {
  if (!/^file:/i.test(value)) return value;
  let u: URL;
  try { u = new URL(value); } catch { throw new InvalidParameterValue(`${JSON.stringify(value)} is not a valid file URL`); }
  if (u.host !== '' && u.host !== 'localhost') throw new InvalidParameterValue(`file URL ${value} names a remote host`);
  return fileURLToPath(u);
}

function realDirs(dirs: readonly string[]): string[] {
  const out: string[] = [];
  for (const d of dirs) {
    try { out.push(realpathSync(d)); } catch { /* a configured dir that does not exist allows nothing */ }
  }
  return out;
}

/**
 * The real path of an allowed regular file named by `value` (path or file:// URL), else InvalidParameterValue
 * naming `what`. Symlinks are resolved first, so one pointing out of the allowed directories is refused.
 */
export function checkAllowedFile(value: string, dirs: readonly string[], what: string): string {
  const path = toPath(value);
  if (path.includes('\0')) throw new InvalidParameterValue(`${what}: invalid file path`);
  let real: string;
  try { real = realpathSync(path); } catch { throw new InvalidParameterValue(`${what} file ${path} does not exist`); }
  const allowed = realDirs(dirs);
  if (!allowed.some((d) => real === d || real.startsWith(d.endsWith(sep) ? d : d + sep))) {
    throw new InvalidParameterValue(`${what} file ${path} is not in an allowed location ` +
      `(file_url_allowed_paths: ${dirs.join(', ') || 'none'})`);
  }
  if (!statSync(real).isFile()) throw new InvalidParameterValue(`${what} file ${path} is not a regular file`);
  return real;
}

/** API-time check of every local file a node's driver_info / instance_info names (400 on the first bad one). */
export function checkNodeFileRefs(dirs: readonly string[], fields: { driver_info?: unknown; instance_info?: unknown }): void {
  const check = (dict: unknown, keys: readonly string[], field: string): void => {
    if (!dict || typeof dict !== 'object' || Array.isArray(dict)) return;
    for (const k of keys) {
      if (!Object.hasOwn(dict, k)) continue;
      const v = (dict as Record<string, unknown>)[k];
      if (typeof v === 'string' && isLocalFileRef(v)) checkAllowedFile(v, dirs, `${field}.${k}`);
    }
  };
  check(fields.driver_info, DRIVER_INFO_FILE_KEYS, 'driver_info');
  check(fields.instance_info, INSTANCE_INFO_FILE_KEYS, 'instance_info');
}

/** A resolved address the conductor must not fetch from unless told to (loopback, link-local, unspecified). */
export function isInternalAddress(address: string): boolean {
  const a = address.replace(/^\[|\]$/g, '').toLowerCase();
  const v4 = /^(?:::ffff:)?(\d+)\.(\d+)\.\d+\.\d+$/.exec(a);
  if (v4) {
    const [o1, o2] = [Number(v4[1]), Number(v4[2])];
    return o1 === 127 || o1 === 0 || (o1 === 169 && o2 === 254);
  }
  return a === '::1' || a === '::' || a === 'localhost' || /^fe[89ab][0-9a-f]:/.test(a);
}
