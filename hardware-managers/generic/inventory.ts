/**
 * The hardware inventory in IPA's list_hardware_info shape, from /proc, /sys,
 * `ip -j addr`, lsblk and systeminformation. Every source may be missing or empty (containers, VMs without DMI, a
 * busybox ramdisk): each piece degrades to empty values instead of failing the whole inventory.
 */
import { existsSync } from 'node:fs';
import os from 'node:os';
import { basename, join } from 'node:path';
import { run } from '../../common/exec.js';
import { getLogger } from '../../common/logger.js';
import { hardwareContext } from '../context.js';
import { dispatchToManagers } from '../redispatch.js';
import type { BlockDevice } from '../../block/devices.js';
import { linkTarget, listDir, readSys, readSysInt, readText, realPath } from '../../block/sysfs.js';
import { errorMessage } from '../../common/errors.js';
import { readBmcLan } from './bmc-lan.js';
import { getBiosGivenNicName } from './inventory-extra.js';

const log = getLogger('inventory');

export interface CpuInfo {
  model_name: string | null;
  frequency: string | null;
  count: number;
  architecture: string;
  flags: string[];
  socket_count: number;
}
export interface MemoryInfo {
  total: number;
  physical_mb: number;
}
export interface InterfaceInfo {
  name: string;
  mac_address: string;
  ipv4_address: string | null;
  ipv6_address: string | null;
  has_carrier: boolean;
  lldp: null;
  vendor: string | null;
  product: string | null;
  client_id: null;
  biosdevname: string | null;
  speed_mbps: number | null;
  pci_address: string | null;
  driver: string | null;
}
export interface DiskInfo {
  name: string; model: string | null; size: number; rotational: boolean; wwn: string | null; serial: string | null;
  vendor: string | null; wwn_with_extension: string | null; wwn_vendor_extension: string | null; hctl: string | null;
  by_path: string | null; logical_sectors: number | null; physical_sectors: number | null; tran: string | null;
}
export interface SystemVendorInfo {
  product_name: string;
  serial_number: string;
  manufacturer: string;
  firmware: { vendor: string; version: string; build_date: string };
}
export interface BootInfo {
  current_boot_mode: 'uefi' | 'bios';
  pxe_interface: string | null;
}
export interface BmcInfo {
  bmc_address: string | null;
  bmc_v6address: string | null;
  bmc_mac?: string;
}
export interface HardwareInventory extends BmcInfo {
  interfaces: InterfaceInfo[];
  cpu: CpuInfo;
  disks: DiskInfo[];
  memory: MemoryInfo;
  system_vendor: SystemVendorInfo;
  boot: BootInfo;
  hostname: string;
}

/**
 * systeminformation, loaded on the first inventory rather than at agent start: its 0.7 MB of modules cost the
 * ramdisk's start-up (under emulation) before the first lookup, which needs none of it.
 */
type SystemInformation = typeof import('systeminformation');
let siLoading: Promise<SystemInformation> | null = null;
function sysinfo(): Promise<SystemInformation> {
  siLoading ??= import('systeminformation').then((m) => ((m as { default?: SystemInformation }).default ?? m) as SystemInformation);
  return siLoading;
}

/** A systeminformation call that can hang on odd hardware (dmidecode, udev) gets a deadline and a fallback. */
async function guarded<T>(what: string, p: () => Promise<T>, fallback: T, ms = 10_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p(),
      new Promise<T>((resolve) => {
        timer = setTimeout(() => {
          log.warn({ what }, 'systeminformation timed out; using fallback');
          resolve(fallback);
        }, ms);
      }),
    ]);
  } catch (e) {
    log.warn({ what, err: errorMessage(e) }, 'systeminformation failed; using fallback');
    return fallback;
  } finally {
    if (timer) clearTimeout(timer);
  }
}

function clean(v: unknown): string {
  const s = typeof v === 'string' ? v.trim() : v === null || v === undefined ? '' : String(v);
  return s === '-' ? '' : s;
}

export async function getCpus(): Promise<CpuInfo> {
  const text = readText('/proc/cpuinfo') ?? '';
  const field = (k: string): string | null => new RegExp(`^${k}\\s*:\\s*(.*)$`, 'm').exec(text)?.[1]?.trim() ?? null;
  const sockets = new Set([...text.matchAll(/^physical id\s*:\s*(\S+)/gm)].map((m) => m[1]));
  const processors = [...text.matchAll(/^processor\s*:/gm)].length;
  const cpu = await guarded('cpu', async () => (await sysinfo()).cpu(), null);
  const maxKhz = readSysInt('/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq');
  const mhz = maxKhz ? maxKhz / 1000 : Number(field('cpu MHz')) || (cpu?.speedMax ? cpu.speedMax * 1000 : 0);
  const flags = (field('flags') ?? field('Features') ?? cpu?.flags ?? '').split(/\s+/).filter(Boolean);
  const model = field('model name') ?? (cpu ? clean(`${cpu.manufacturer} ${cpu.brand}`) || null : null);
  return {
    model_name: model,
    frequency: mhz > 0 ? mhz.toFixed(4) : null,
    count: os.cpus().length || processors || 1,
    architecture: os.machine(),
    flags,
    socket_count: Math.max(1, sockets.size),
  };
}

export async function getMemory(): Promise<MemoryInfo> {
  const total = os.totalmem();
  const layout = await guarded('memLayout', async () => (await sysinfo()).memLayout(), []);
  const dimms = layout.reduce((a, m) => a + (Number(m.size) || 0), 0);
  // Without DIMM data (VMs, containers), usable RAM rounded up is the best estimate of installed RAM.
  return { total, physical_mb: Math.ceil((dimms > 0 ? dimms : total) / 1024 ** 2) };
}

interface IpAddr {
  ifname?: string;
  addr_info?: { family?: string; local?: string; scope?: string }[];
}

async function addresses(): Promise<Map<string, { v4: string | null; v6: string | null }>> {
  const out = new Map<string, { v4: string | null; v6: string | null }>();
  try {
    const r = await run('ip', ['-j', 'addr'], { quiet: true, timeoutMs: 10_000 });
    for (const i of JSON.parse(r.stdout) as IpAddr[]) {
      if (!i.ifname) continue;
      const info = i.addr_info ?? [];
      const v6s = info.filter((a) => a.family === 'inet6' && a.local);
      out.set(i.ifname, {
        v4: info.find((a) => a.family === 'inet' && a.local)?.local ?? null,
        v6: (v6s.find((a) => a.scope === 'global') ?? v6s[0])?.local ?? null,
      });
    }
  } catch {
    for (const [name, list] of Object.entries(os.networkInterfaces())) {
      const v6s = (list ?? []).filter((a) => a.family === 'IPv6');
      out.set(name, {
        v4: (list ?? []).find((a) => a.family === 'IPv4')?.address ?? null,
        v6: (v6s.find((a) => !a.address.startsWith('fe80')) ?? v6s[0])?.address ?? null,
      });
    }
  }
  return out;
}

const PCI_ADDR = /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/i;

/** Physical NICs, VLANs and bonds with a MAC (no loopback, bridges, tunnels or other virtual devices). */
export async function listNetworkInterfaces(): Promise<InterfaceInfo[]> {
  const ips = await addresses();
  const out: InterfaceInfo[] = [];
  for (const name of listDir('/sys/class/net').sort()) {
    const base = join('/sys/class/net', name);
    const physical = existsSync(join(base, 'device'));
    const vlanOrBond = existsSync(join('/proc/net/vlan', name)) || existsSync(join(base, 'bonding'));
    if (name === 'lo' || !(physical || vlanOrBond)) continue;
    const mac = readSys(join(base, 'address'));
    if (!mac || mac === '00:00:00:00:00:00') continue;
    const devPath = realPath(join(base, 'device'));
    const pci = devPath?.split('/').reverse().find((c) => PCI_ADDR.test(c)) ?? null;
    const driver = linkTarget(join(base, 'device', 'driver'));
    const speed = readSysInt(join(base, 'speed'));
    out.push({
      name,
      mac_address: mac.toLowerCase(),
      ipv4_address: ips.get(name)?.v4 ?? null,
      ipv6_address: ips.get(name)?.v6 ?? null,
      has_carrier: readSys(join(base, 'carrier')) === '1',
      lldp: null,
      vendor: readSys(join(base, 'device', 'vendor')),
      product: readSys(join(base, 'device', 'device')),
      client_id: null,
      biosdevname: await getBiosGivenNicName(name),
      speed_mbps: speed !== null && speed > 0 ? speed : null,
      pci_address: pci,
      driver: driver ? basename(driver) : null,
    });
  }
  return out;
}

export async function getSystemVendorInfo(): Promise<SystemVendorInfo> {
  const dmi = (k: string): string => clean(readSys(join('/sys/class/dmi/id', k)));
  const sys = await guarded('system', async () => (await sysinfo()).system(), null);
  const bios = await guarded('bios', async () => (await sysinfo()).bios(), null);
  // systeminformation guesses "Docker Container" from /.dockerenv: not a product name.
  const siModel = clean(sys?.model) === 'Docker Container' ? '' : clean(sys?.model);
  return {
    product_name: dmi('product_name') || siModel,
    serial_number: dmi('product_serial') || clean(sys?.serial),
    manufacturer: dmi('sys_vendor') || clean(sys?.manufacturer),
    firmware: {
      vendor: dmi('bios_vendor') || clean(bios?.vendor),
      version: dmi('bios_version') || clean(bios?.version),
      build_date: dmi('bios_date') || clean(bios?.releaseDate),
    },
  };
}

export function getBootInfo(): BootInfo {
  return {
    current_boot_mode: existsSync('/sys/firmware/efi') ? 'uefi' : 'bios',
    pxe_interface: hardwareContext().bootif,
  };
}

function hasIpmiDevice(): boolean {
  return ['/dev/ipmi0', '/dev/ipmi/0', '/dev/ipmidev/0'].some((p) => existsSync(p));
}

/** BMC addresses read in-band (bmc-lan.ts); nulls when there is no local IPMI device or detection is skipped. */
export async function getBmcInfo(): Promise<BmcInfo> {
  const node = hardwareContext().node;
  if (hardwareContext().skipBmcDetect || node?.skip_bmc_detect === true || !hasIpmiDevice()) {
    return { bmc_address: null, bmc_v6address: null };
  }
  const lan = await readBmcLan();
  return { bmc_address: lan.address, bmc_v6address: lan.v6address, ...(lan.mac ? { bmc_mac: lan.mac } : {}) };
}

export function toDiskInfo(d: BlockDevice): DiskInfo {
  return {
    name: d.name, model: d.model, size: d.size, rotational: d.rotational, wwn: d.wwn, serial: d.serial,
    vendor: d.vendor, wwn_with_extension: d.wwn_with_extension, wwn_vendor_extension: d.wwn_vendor_extension,
    hctl: d.hctl, by_path: d.by_path, logical_sectors: d.logical_sectors, physical_sectors: d.physical_sectors,
    tran: d.tran,
  };
}

/** Each piece goes through dispatch, so a vendor manager can replace one (say, its NICs) and keep the rest. */
export async function listHardwareInfo(): Promise<HardwareInventory> {
  const piece = async <T>(method: string, fallback: T): Promise<T> => {
    try {
      return await dispatchToManagers<T>(method);
    } catch (e) {
      log.warn({ method, err: errorMessage(e) }, 'inventory piece failed');
      return fallback;
    }
  };
  const emptyVendor: SystemVendorInfo = {
    product_name: '', serial_number: '', manufacturer: '', firmware: { vendor: '', version: '', build_date: '' },
  };
  const disks = await piece<BlockDevice[]>('listBlockDevices', []);
  const bmc = await piece<BmcInfo>('getBmcInfo', { bmc_address: null, bmc_v6address: null });
  return {
    interfaces: await piece('listNetworkInterfaces', []),
    cpu: await piece('getCpus', { model_name: null, frequency: null, count: 1, architecture: os.machine(), flags: [], socket_count: 1 }),
    disks: disks.map(toDiskInfo),
    memory: await piece('getMemory', { total: os.totalmem(), physical_mb: Math.ceil(os.totalmem() / 1024 ** 2) }),
    ...bmc,
    system_vendor: await piece('getSystemVendorInfo', emptyVendor),
    boot: await piece('getBootInfo', getBootInfo()),
    hostname: os.hostname(),
  };
}
