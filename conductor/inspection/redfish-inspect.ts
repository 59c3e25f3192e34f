/**
 * The `redfish` inspect interface: out-of-band facts from the BMC, as Ironic's drivers/modules/redfish/inspect.py:
 * ProcessorSummary.Count and the first processor's InstructionSet (cpus, cpu_arch), MemorySummary (memory_mb),
 * the first SimpleStorage device / Storage drive of at least 4 GiB minus 1 GiB (local_gb), Boot mode
 * (capabilities boot_mode), EthernetInterfaces MACs (ports). The same inventory shape as the agent's is stored,
 * and the built-in rules run on it.
 */
import type { InspectInterface, NodeTask } from '../drivers/index.js';
import type { DriverNode } from '../drivers/types.js';
import { RedfishManagement, type RedfishOptions } from '../drivers/redfish.js';
import type { RedfishClientPool } from '../drivers/redfish-client.js';
import type { ConductorConfig } from '../config.js';
import type { NodeFields } from '../store/types.js';
import { InspectionDataError, normalizeMac, runHooks, updateCapabilities } from './hooks.js';
import { storeInspectionData } from './inventory-store.js';
import { applyRules } from './rules.js';

type Obj = Record<string, unknown>;
const GiB = 2 ** 30;

/** Redfish InstructionSet → Ironic cpu_arch (PROCESSOR_INSTRUCTION_SET_MAP). */
const INSTRUCTION_SETS: Record<string, string> = {
  'ARM-A32': 'arm', 'ARM-A64': 'aarch64', 'IA-64': 'ia64', 'MIPS32': 'mips', 'MIPS64': 'mips64', 'PowerISA': 'ppc64le',
  'x86': 'i686', 'x86-64': 'x86_64',
};
const BOOT_MODES: Record<string, string> = { UEFI: 'uefi', Legacy: 'bios' };

function link(o: unknown): string | undefined {
  const id = o && typeof o === 'object' ? (o as Obj)['@odata.id'] : undefined;
  return typeof id === 'string' ? id : undefined;
}

type Get = (path: string) => Promise<Obj>;

async function members(get: Get, collection: unknown): Promise<Obj[]> {
  const path = link(collection);
  if (!path) return [];
  const coll = await get(path);
  const out: Obj[] = [];
  for (const m of Array.isArray(coll.Members) ? coll.Members : []) {
    const p = link(m);
    if (p) out.push(await get(p));
  }
  return out;
}

/** Reads the system and returns an IPA-shaped inventory plus the properties Ironic derives from it. */
export async function redfishInventory(get: Get, system: Obj): Promise<{ inventory: Obj; props: Obj }> {
  const props: Obj = {};
  const inventory: Obj = { cpu: { count: 0, architecture: '' } };
  const mem = (system.MemorySummary as Obj | undefined)?.TotalSystemMemoryGiB;
  if (typeof mem === 'number' && mem > 0) {
    props.memory_mb = Math.round(mem * 1024);
    inventory.memory = { physical_mb: props.memory_mb };
  }
  const cpu = inventory.cpu as Obj;
  const count = (system.ProcessorSummary as Obj | undefined)?.Count;
  if (typeof count === 'number') cpu.count = count;
  const procs = await members(get, system.Processors);
  const first = procs[0];
  if (first) {
    if (typeof first.Model === 'string') cpu.model_name = first.Model;
    if (typeof first.MaxSpeedMHz === 'number') cpu.frequency = first.MaxSpeedMHz;
    cpu.architecture = INSTRUCTION_SETS[String(first.InstructionSet)] ?? '';
  }
  if (typeof cpu.count === 'number' && cpu.count > 0) props.cpus = cpu.count;
  if (cpu.architecture) props.cpu_arch = cpu.architecture;

  const disks: Obj[] = [];
  const simpleSizes: number[] = [];
  for (const ss of await members(get, system.SimpleStorage)) {
    for (const d of Array.isArray(ss.Devices) ? ss.Devices as Obj[] : []) {
      if (typeof d.CapacityBytes !== 'number') continue;
      simpleSizes.push(d.CapacityBytes);
      disks.push({ name: String(d.Name ?? ''), size: d.CapacityBytes });
    }
  }
  const driveSizes: number[] = [];
  for (const st of await members(get, system.Storage)) {
    for (const dl of Array.isArray(st.Drives) ? st.Drives : []) {
      const p = link(dl);
      if (!p) continue;
      const d = await get(p);
      if (typeof d.CapacityBytes !== 'number') continue;
      driveSizes.push(d.CapacityBytes);
      disks.push({ name: String(d.Name ?? d.Id ?? ''), size: d.CapacityBytes });
    }
  }
  if (disks.length) inventory.disks = disks;
  const firstBig = (sizes: number[]): number => sizes.find((s) => s >= 4 * GiB) ?? 0;
  const size = Math.max(firstBig(simpleSizes), firstBig(driveSizes));
  props.local_gb = size ? Math.max(0, Math.floor(size / GiB - 1)) : 0;

  const interfaces: Obj[] = [];
  for (const eth of await members(get, system.EthernetInterfaces)) {
    const mac = typeof eth.MACAddress === 'string' ? normalizeMac(eth.MACAddress) : undefined;
    if (!mac) continue;
    interfaces.push({ name: String(eth.Id ?? mac), mac_address: mac,
      ...(typeof eth.SpeedMbps === 'number' ? { speed_mbps: eth.SpeedMbps } : {}) });
  }
  inventory.interfaces = interfaces;
  if (typeof system.Manufacturer === 'string' || typeof system.Model === 'string') {
    inventory.system_vendor = { manufacturer: system.Manufacturer ?? null, product_name: system.Model ?? null,
      serial_number: system.SerialNumber ?? null };
  }
  const mode = BOOT_MODES[String((system.Boot as Obj | undefined)?.BootSourceOverrideMode)];
  if (mode) inventory.boot = { current_boot_mode: mode };
  return { inventory, props };
}

/** Subclass of the management interface only to share its Redfish session pool and system lookup. */
class RedfishInspectImpl extends RedfishManagement implements InspectInterface {
  constructor(opts: Partial<RedfishOptions>, pool: RedfishClientPool, private readonly conductorCfg: () => ConductorConfig) {
    super(opts, pool);
  }

  override validate(node: DriverNode): void {
    super.validate(node);
  }

  async inspectHardware(task: NodeTask): Promise<void> {
    const rf = await this.ctx(task.driverNode());
    const get: Get = (p) => rf.client.call('GET', p);
    const { inventory, props } = await redfishInventory(get, rf.system);
    const cfg = this.conductorCfg();
    const merged: Obj = { ...task.node.properties, ...props };
    const mode = (inventory.boot as Obj | undefined)?.current_boot_mode;
    if (typeof mode === 'string' && !/(^|,)boot_mode:/.test(String(task.node.properties.capabilities ?? ''))) {
      merged.capabilities = updateCapabilities(task.node.properties.capabilities, { boot_mode: mode });
    }
    const pluginData: Obj = {};
    if ((inventory.interfaces as Obj[]).length) {
      // No PXE MAC is known out of band: every NIC becomes a port (validate-interfaces with no pxe_interface).
      await runHooks({ cfg: cfg.inspector, store: task.store, node: task.node, inventory, pluginData, props: merged,
        log: () => undefined }, ['validate-interfaces', 'ports']);
    }
    await storeInspectionData(cfg, task.node.uuid, { inventory, plugin_data: pluginData });
    const view: Obj = { ...task.node, properties: merged, traits: [...task.node.traits] };
    if (cfg.inspector.rules.length) applyRules(cfg.inspector.rules, { node: view, inventory, pluginData, log: () => undefined });
    const missing = ['memory_mb', 'cpu_arch'].filter((k) => (view.properties as Obj)[k] === undefined);
    if (missing.length) {
      throw new InspectionDataError(`Failed to discover the following properties: ${missing.join(', ')} on node ${task.node.uuid}`);
    }
    await task.save({ properties: view.properties as Obj, traits: view.traits as string[] } as Partial<NodeFields>);
    await task.reload();
  }
}

export function createRedfishInspect(opts: Partial<RedfishOptions>, pool: RedfishClientPool,
  conductorCfg: () => ConductorConfig): InspectInterface {
  return new RedfishInspectImpl(opts, pool, conductorCfg);
}
