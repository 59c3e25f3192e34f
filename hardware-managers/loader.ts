/**
 * Finding hardware managers: the built-ins plus vendor plugins from directories of ES modules (the kernel command
 * line's ipa-hardware-manager-dir, the ramdisk's --add-manager) and from package names. A plugin that cannot be
 * imported or does not look like a manager is logged and skipped: a broken vendor module never stops the agent.
 */
import { readdir, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import vm from 'node:vm';
import { errorMessage } from '../common/errors.js';
import { getLogger } from '../common/logger.js';
import type { HardwareManager } from './types.js';

const log = getLogger('hardware-managers');

const PLUGIN_EXTENSIONS = ['.mjs', '.js', '.cjs'];

/** Where a manager came from, for log lines and error messages. */
export interface ManagerSource {
  manager: HardwareManager;
  origin: string;
}

function isManagerLike(v: unknown): v is HardwareManager {
  if (typeof v !== 'object' || v === null) return false;
  const m = v as Record<string, unknown>;
  return typeof m.name === 'string' && m.name.length > 0 && typeof m.evaluateHardwareSupport === 'function';
}

/**
 * Vendors write a plain object, a class or a factory (`(api) => manager`, the class constructor gets `api` too);
 * all three become a manager object. A missing version key
 * defaults like IPA's get_version(): the manager name and "1.0".
 */
export function toManager(exported: unknown, api?: unknown): HardwareManager | null {
  let candidate: unknown = exported;
  if (typeof candidate === 'function') {
    const fn = candidate as { prototype?: { evaluateHardwareSupport?: unknown } } & ((...a: unknown[]) => unknown);
    const isClass = typeof fn.prototype?.evaluateHardwareSupport === 'function';
    try {
      candidate = isClass ? new (fn as unknown as new (a: unknown) => unknown)(api) : fn(api);
    } catch (e) {
      log.error({ err: errorMessage(e) }, 'hardware manager factory threw');
      return null;
    }
  }
  if (!isManagerLike(candidate)) return null;
  const m = candidate as HardwareManager & { versionName?: unknown; version?: unknown };
  if (typeof m.versionName !== 'string' || typeof m.version !== 'string') {
    // Keep the vendor's object identity (its methods may use `this`) and only fill the gaps.
    const filled = m as unknown as { versionName: string; version: string };
    try {
      if (typeof m.versionName !== 'string') filled.versionName = m.name;
      if (typeof m.version !== 'string') filled.version = '1.0';
    } catch {
      return null;
    }
  }
  return m;
}

/**
 * import() for plugins that also works in the agent's single executable, which carries a V8 code cache
 * (ramdisk-build/sea.ts): Node 20 compiles a code-cached SEA main script without a dynamic-import callback, so an
 * import() inside the bundle fails there. A function compiled by vm with the main context's default loader has one
 * (the same loader, hooks included, that a plain import() would use).
 */
let importer: ((specifier: string) => Promise<unknown>) | null = null;
function dynamicImport(specifier: string): Promise<unknown> {
  importer ??= new vm.Script('(specifier) => import(specifier)', {
    filename: 'baremetal-agent-plugin-import.js',
    importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER,
  }).runInThisContext() as (specifier: string) => Promise<unknown>;
  return importer(specifier);
}

async function importModule(file: string): Promise<Record<string, unknown>> {
  if (file.endsWith('.cjs')) {
    // CommonJS plugins load even where dynamic import() is unavailable (e.g. some single-executable builds).
    const req = createRequire(file);
    const mod = req(file) as unknown;
    return (typeof mod === 'object' && mod !== null ? mod : { default: mod }) as Record<string, unknown>;
  }
  return (await dynamicImport(pathToFileURL(file).href)) as Record<string, unknown>;
}

function pick(mod: Record<string, unknown>): unknown {
  const d = mod.default;
  if (d !== undefined && d !== null) {
    // A CommonJS module imported as ESM nests its exports under default.
    if (typeof d === 'object' && !isManagerLike(d) && 'manager' in (d as object)) {
      return (d as Record<string, unknown>).manager;
    }
    return d;
  }
  return mod.manager;
}

/** Every .mjs/.js/.cjs file directly in each directory, in name order; bad ones logged and skipped. */
export async function loadPluginDirs(dirs: readonly string[], api?: unknown): Promise<ManagerSource[]> {
  const out: ManagerSource[] = [];
  for (const dir of dirs) {
    let names: string[];
    try {
      names = (await readdir(dir)).sort();
    } catch (e) {
      log.error({ dir, err: errorMessage(e) }, 'hardware manager directory unreadable, skipped');
      continue;
    }
    for (const name of names) {
      if (!PLUGIN_EXTENSIONS.some((ext) => name.endsWith(ext))) continue;
      const file = resolve(join(dir, name));
      try {
        if (!(await stat(file)).isFile()) continue;
        const manager = toManager(pick(await importModule(file)), api);
        if (!manager) {
          log.error({ file }, 'module exports no hardware manager (default or `manager` export), skipped');
          continue;
        }
        out.push({ manager, origin: file });
      } catch (e) {
        log.error({ file, err: errorMessage(e) }, 'hardware manager plugin failed to load, skipped');
      }
    }
  }
  return out;
}

/** Plugins published as packages, resolved from the agent's own node_modules. */
export async function loadPluginPackages(names: readonly string[], api?: unknown): Promise<ManagerSource[]> {
  const out: ManagerSource[] = [];
  for (const name of names) {
    try {
      const manager = toManager(pick((await import(name)) as Record<string, unknown>), api);
      if (!manager) {
        log.error({ pkg: name }, 'package exports no hardware manager, skipped');
        continue;
      }
      out.push({ manager, origin: `package:${name}` });
    } catch (e) {
      log.error({ pkg: name, err: errorMessage(e) }, 'hardware manager package failed to load, skipped');
    }
  }
  return out;
}
