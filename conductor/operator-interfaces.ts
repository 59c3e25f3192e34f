/**
 * The operator's interfaces of issue 19, registered into one conductor's driver registry after the built-in
 * drivers: vendor (`fake`, `ipmitool`, plus vendor plugins), console (`ipmitool-socat`, `ipmitool-web`), RAID and
 * rescue through the agent (`agent`). Hardware types are extended, never replaced, so the other interface lists
 * stay whatever their own modules made them.
 *
 * `startOperatorServices(ctx)` runs once the conductor's context exists (main.ts): it restores the consoles of
 * nodes that had one enabled, and its `close()` stops every console (conductor stop).
 */
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { errorMessage } from '../common/errors.js';
import type { ConductorConfig } from './config.js';
import type { ConductorContext } from './context.js';
import type { DriverRegistry, HardwareType } from './drivers/index.js';
import { UnsupportedDriverExtension } from './errors.js';
import { agentRaid } from './drivers/agent-raid.js';
import { createAgentRescue } from './drivers/agent-rescue.js';
import { createIpmitoolVendor } from './drivers/ipmitool-vendor.js';
import type { InterfaceKind } from './drivers/types.js';
import { createFakeVendor } from './drivers/vendor.js';
import { ConsoleSessions, IpmitoolSocatConsole, IpmitoolWebConsole, syncConsoles, type ConsoleSync } from './console/interfaces.js';

/** Adds implementation names to a registered hardware type's list for `kind` (first: becomes its default). */
export function extendHardwareType(reg: DriverRegistry, type: string, kind: InterfaceKind, names: string[],
  where: 'first' | 'last'): void {
  const t = reg.registeredHardwareTypes().find((x) => x.name === type);
  if (!t) return;
  const have = (t.supported[kind] ?? []).filter((n) => !names.includes(n));
  reg.registerHardwareType({ ...t, supported: { ...t.supported, [kind]: where === 'first' ? [...names, ...have] : [...have, ...names] } });
}

/** What the registration made that lives as long as the conductor (handed to startOperatorServices). */
export interface OperatorKit {
  consoles: ConsoleSessions;
}

export function registerOperatorInterfaces(reg: DriverRegistry, cfg: ConductorConfig, ctx?: ConductorContext): OperatorKit {
  const p = cfg.power;
  const consoles = new ConsoleSessions(cfg.console);
  reg.registerInterface('console', new IpmitoolSocatConsole(consoles));
  reg.registerInterface('console', new IpmitoolWebConsole(consoles));
  extendHardwareType(reg, 'ipmi', 'console', ['ipmitool-socat', 'ipmitool-web'], 'last');
  reg.registerInterface('vendor', createFakeVendor());
  reg.registerInterface('vendor', createIpmitoolVendor({
    commandRetryTimeoutS: p.ipmi_command_retry_timeout, minCommandIntervalS: p.ipmi_min_command_interval,
  }));
  extendHardwareType(reg, 'ipmi', 'vendor', ['ipmitool'], 'first');
  reg.registerInterface('raid', agentRaid);
  for (const t of ['ipmi', 'redfish', 'fake-hardware']) extendHardwareType(reg, t, 'raid', ['agent'], 'last');
  // The agent rescue boots the ramdisk and talks to the agent: it needs the conductor's context.
  if (ctx) {
    reg.registerInterface('rescue', createAgentRescue(ctx));
    for (const t of ['ipmi', 'redfish', 'fake-hardware']) extendHardwareType(reg, t, 'rescue', ['agent'], 'last');
  }
  return { consoles };
}

/** A vendor plugin module: `export function registerVendorMethods(reg: DriverRegistry): void`. */
export interface VendorPluginModule {
  registerVendorMethods(reg: DriverRegistry): void | Promise<void>;
}

export async function loadVendorPlugins(reg: DriverRegistry, paths: readonly string[], dataDir: string): Promise<void> {
  for (const p of paths) {
    const file = isAbsolute(p) ? p : resolve(dataDir, p);
    const mod = (await import(pathToFileURL(file).href)) as Partial<VendorPluginModule>;
    if (typeof mod.registerVendorMethods !== 'function') {
      throw new Error(`vendor plugin ${file} exports no registerVendorMethods(reg) function`);
    }
    await mod.registerVendorMethods(reg);
  }
}

export interface OperatorServices {
  /** Called when the ring moves (conductor/main.ts): consoles follow their nodes' owners. */
  syncConsoles(): Promise<ConsoleSync>;
  close(): Promise<void>;
}

export async function startOperatorServices(ctx: ConductorContext, kit: OperatorKit): Promise<OperatorServices> {
  try {
    await loadVendorPlugins(ctx.drivers, ctx.config.vendor_plugins ?? [], ctx.config.data_dir);
  } catch (e) {
    ctx.log.error({ err: errorMessage(e) }, 'loading a vendor plugin failed');
    throw e;
  }
  await syncConsoles(ctx, kit.consoles);
  // Conductor stop closes every console but leaves console_enabled set: the next start (or the node's new owner)
  // restores them.
  return { syncConsoles: () => syncConsoles(ctx, kit.consoles), close: () => kit.consoles.closeAll() };
}

/** GET /v1/drivers/{d}/raid/logical_disk_properties: from the type's default RAID interface (Ironic's rule). */
export function raidLogicalDiskProperties(reg: DriverRegistry, type: HardwareType): Record<string, string> {
  const name = reg.defaultInterface(type, 'raid');
  const impl = name ? reg.getInterfaceImpl('raid', name) : undefined;
  const props = (impl as { logicalDiskProperties?: () => Record<string, string> } | undefined)?.logicalDiskProperties;
  if (!props) throw new UnsupportedDriverExtension(`Driver ${type.name} does not support raid (disabled or not implemented).`);
  return props();
}
