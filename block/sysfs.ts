/** Small, never-throwing readers for /sys and /proc, shared by the inventory and the disk code. */
import { existsSync, readFileSync, readdirSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

export function readText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

/** A sysfs attribute, trimmed; null when absent, unreadable or empty. */
export function readSys(path: string): string | null {
  const v = readText(path)?.trim();
  return v ? v : null;
}

export function readSysInt(path: string): number | null {
  const v = readSys(path);
  if (v === null) return null;
  const n = Number(v);
  return Number.isFinite(n) ? n : null;
}

export function listDir(path: string): string[] {
  try {
    return readdirSync(path);
  } catch {
    return [];
  }
}

export function linkTarget(path: string): string | null {
  try {
    return readlinkSync(path);
  } catch {
    return null;
  }
}

export function realPath(path: string): string | null {
  try {
    return realpathSync(path);
  } catch {
    return null;
  }
}

/** "/dev/loop3", "loop3", "/dev/mapper/x" → the kernel name ("loop3", "dm-0"). */
export function kernelName(dev: string): string {
  const p = dev.startsWith('/') ? dev : `/dev/${dev}`;
  return basename(realPath(p) ?? p);
}

export const SYS_BLOCK = '/sys/class/block';

/** The whole-disk kernel name of a partition ("loop3p1" → "loop3"); null for a whole device. */
export function parentDisk(kname: string): string | null {
  if (!existsSync(join(SYS_BLOCK, kname, 'partition'))) return null;
  const real = realPath(join(SYS_BLOCK, kname));
  return real ? basename(dirname(real)) : null;
}

/** Partitions of a whole device, by kernel name. */
export function partitionsOf(kname: string): string[] {
  const real = realPath(join(SYS_BLOCK, kname));
  if (!real) return [];
  return listDir(real)
    .filter((n) => existsSync(join(real, n, 'partition')))
    .sort();
}

export function holdersOf(kname: string): string[] {
  return listDir(join(SYS_BLOCK, kname, 'holders'));
}

export function slavesOf(kname: string): string[] {
  return listDir(join(SYS_BLOCK, kname, 'slaves'));
}

/** "maj:min" of a block device by kernel name. */
export function devNumber(kname: string): string | null {
  return readSys(join(SYS_BLOCK, kname, 'dev'));
}

/** "maj:min" of the block device a path names (glibc's dev_t encoding); null when it is not a block device. */
export function devNumberOfPath(path: string): string | null {
  try {
    const st = statSync(path, { bigint: true });
    if (!st.isBlockDevice()) return null;
    const d = st.rdev;
    const major = ((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn);
    const minor = (d & 0xffn) | ((d >> 12n) & ~0xffn);
    return `${major}:${minor}`;
  } catch {
    return null;
  }
}

/** /proc/mounts-style octal escapes (\040 for a space). */
export function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
}
