/**
 * Prioritised dispatch over the loaded hardware managers (IPA semantics):
 * evaluate support once, drop NONE, stable sort by support descending, initialize in that order, cache for the
 * process lifetime. A manager that lacks a method or raises IncompatibleHardwareMethodError passes to the next;
 * any other error stops dispatch.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { errorMessage } from '../common/errors.js';
import { run } from '../common/exec.js';
import { getLogger } from '../common/logger.js';
import * as protocol from '../protocol/agent-api.js';
import { hardwareContext } from './context.js';
import { assertSafeToWrite, listBlockDevices, type BlockDevice } from '../block/devices.js';
import { listCandidateDisks } from './generic/root-device.js';
import { loadPluginDirs, loadPluginPackages, toManager, type ManagerSource } from './loader.js';
import { HardwareSupport, type HardwareManager, type NodeInfo } from './types.js';
import { genericManager } from './generic/index.js';
import { setDispatcher } from './redispatch.js';

const log = getLogger('hardware-managers');

export interface LoadOptions {
  /** Directories of vendor plugin modules (ipa-hardware-manager-dir). */
  pluginDirs?: string[];
  /** Package names resolvable from the agent (config). */
  pluginPackages?: string[];
  /** Replaces the built-in list (default: the generic manager). Tests pass fakes here. */
  builtins?: HardwareManager[];
}

interface Loaded {
  manager: HardwareManager;
  support: number;
  origin: string;
}

/**
 * What a plugin factory (`export default (api) => manager`) receives, so a vendor module needs no import path into
 * the agent: dispatch, the exec wrapper, the hardware context, the support levels and the IPA error classes.
 */
export interface PluginApi {
  HardwareSupport: typeof HardwareSupport;
  errors: typeof protocol;
  dispatchToManagers: typeof dispatchToManagers;
  run: typeof run;
  hardwareContext: typeof hardwareContext;
  getLogger: typeof getLogger;
  /**
   * The write-safety guard (call it before writing any device), the block-device listing, and the disks a step
   * may touch for a node (the listing minus properties.skip_block_devices).
   */
  disks: {
    assertSafeToWrite: (dev: string) => Promise<void>;
    listBlockDevices: () => Promise<BlockDevice[]>;
    listDisksForNode: (node: NodeInfo | null | undefined) => Promise<BlockDevice[]>;
  };
}

let cache: Loaded[] | null = null;
let loading: Promise<Loaded[]> | null = null;
/** Set while managers are evaluated/initialised: dispatching from there would wait for itself forever. */
const inLoad = new AsyncLocalStorage<boolean>();

export function pluginApi(): PluginApi {
  return {
    HardwareSupport, errors: protocol, dispatchToManagers, run, hardwareContext, getLogger,
    disks: { assertSafeToWrite, listBlockDevices: () => listBlockDevices(), listDisksForNode: listCandidateDisks },
  };
}

async function defaultBuiltins(): Promise<HardwareManager[]> {
  return [genericManager];
}

async function evaluate(src: ManagerSource): Promise<Loaded | null> {
  try {
    const raw = await src.manager.evaluateHardwareSupport();
    const support = Number(raw);
    if (!Number.isFinite(support) || support <= HardwareSupport.NONE) {
      log.info({ manager: src.manager.name, origin: src.origin, support: raw }, 'hardware manager not applicable');
      return null;
    }
    return { manager: src.manager, support, origin: src.origin };
  } catch (e) {
    log.error({ manager: src.manager.name, origin: src.origin, err: errorMessage(e) },
      'evaluateHardwareSupport threw; manager skipped');
    return null;
  }
}

async function doLoad(opts: LoadOptions): Promise<Loaded[]> {
  const api = pluginApi();
  const builtins = opts.builtins ?? (await defaultBuiltins());
  const sources: ManagerSource[] = [];
  for (const b of builtins) {
    const m = toManager(b);
    if (m) sources.push({ manager: m, origin: 'builtin' });
  }
  sources.push(...(await loadPluginDirs(opts.pluginDirs ?? [], api)));
  sources.push(...(await loadPluginPackages(opts.pluginPackages ?? [], api)));

  const evaluated: Loaded[] = [];
  for (const s of sources) {
    const l = await evaluate(s);
    if (l) evaluated.push(l);
  }
  // Array.prototype.sort is stable: ties keep built-in-then-plugin load order, as IPA keeps entry-point order.
  evaluated.sort((a, b) => b.support - a.support);
  if (evaluated.length === 0) throw new protocol.HardwareManagerNotFound('No hardware manager supports this hardware');

  const ready: Loaded[] = [];
  for (const l of evaluated) {
    if (typeof l.manager.initialize === 'function') {
      try {
        await l.manager.initialize();
      } catch (e) {
        log.error({ manager: l.manager.name, err: errorMessage(e) }, 'hardware manager initialize() failed; skipped');
        continue;
      }
    }
    ready.push(l);
  }
  if (ready.length === 0) throw new protocol.HardwareManagerNotFound('Every hardware manager failed to initialize');
  log.info({ managers: ready.map((l) => ({ name: l.manager.name, support: l.support, origin: l.origin })) },
    'hardware managers loaded');
  return ready;
}

/** Load (once) and cache the managers. A second call returns the cached list; resetManagers() first to reload. */
export async function loadManagers(opts: LoadOptions = {}): Promise<HardwareManager[]> {
  if (cache) return cache.map((l) => l.manager);
  if (!loading) {
    loading = inLoad.run(true, () => doLoad(opts)).then(
      (l) => {
        cache = l;
        return l;
      },
      (e: unknown) => {
        loading = null;
        throw e;
      },
    );
  }
  return (await loading).map((l) => l.manager);
}

async function loaded(): Promise<Loaded[]> {
  if (cache) return cache;
  if (inLoad.getStore()) {
    throw new protocol.HardwareManagerConfigurationError(
      'A hardware manager dispatched from evaluateHardwareSupport() or initialize(); managers are not loaded yet',
    );
  }
  await loadManagers();
  return cache ?? [];
}

/** The managers in dispatch order (loading the built-ins when nobody loaded them yet, as IPA does lazily). */
export async function getManagers(): Promise<HardwareManager[]> {
  return (await loaded()).map((l) => l.manager);
}

/** Support level each loaded manager reported, by manager name (step de-duplication needs it). */
export async function getManagerSupport(): Promise<Map<string, number>> {
  return new Map((await loaded()).map((l) => [l.manager.name, l.support]));
}

/** hardware_manager_version: {versionName: version} of every loaded manager. */
export async function getCurrentVersions(): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const l of await loaded()) out[l.manager.versionName] = l.manager.version;
  return out;
}

/** Tests: forget the cached managers so the next load starts over. */
export function resetManagers(): void {
  cache = null;
  loading = null;
}

/** IncompatibleHardwareMethodError, also from plugins that cannot import our class and set only `code`/`name`. */
export function isIncompatible(e: unknown): boolean {
  if (e instanceof protocol.IncompatibleHardwareMethodError) return true;
  if (typeof e !== 'object' || e === null) return false;
  const o = e as { code?: unknown; name?: unknown };
  return o.code === 'IncompatibleHardwareMethodError' || o.name === 'IncompatibleHardwareMethodError';
}

function methodOf(m: HardwareManager, method: string): ((...args: unknown[]) => unknown) | null {
  const fn = m[method];
  return typeof fn === 'function' ? (fn as (...args: unknown[]) => unknown) : null;
}

/** The first manager (by support) that has `method` and does not call it incompatible answers. */
export async function dispatchToManagers<T = unknown>(method: string, ...args: unknown[]): Promise<T> {
  for (const { manager } of await loaded()) {
    const fn = methodOf(manager, method);
    if (!fn) continue;
    try {
      return (await fn.apply(manager, args)) as T;
    } catch (e) {
      if (isIncompatible(e)) {
        log.debug({ manager: manager.name, method, err: errorMessage(e) }, 'incompatible, trying next manager');
        continue;
      }
      throw e;
    }
  }
  throw new protocol.HardwareManagerMethodNotFound(`Could not find method: ${method}`);
}

/** Every manager that has `method` (and is compatible) answers; result keyed by manager name. */
export async function dispatchToAll<T = unknown>(method: string, ...args: unknown[]): Promise<Record<string, T>> {
  const out: Record<string, T> = {};
  for (const { manager } of await loaded()) {
    const fn = methodOf(manager, method);
    if (!fn) continue;
    try {
      out[manager.name] = (await fn.apply(manager, args)) as T;
    } catch (e) {
      if (isIncompatible(e)) continue;
      throw e;
    }
  }
  if (Object.keys(out).length === 0) {
    throw new protocol.HardwareManagerMethodNotFound(`Could not find method: ${method}`);
  }
  return out;
}

// The generic manager's own code dispatches through redispatch.ts (no import of this module, hence no circle).
setDispatcher(dispatchToManagers);
