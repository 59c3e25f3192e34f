/**
 * IPA's inspection collectors (ironic_python_agent/inspector.py): each adds its part to the payload and records
 * what went wrong in `failures` instead of throwing, so the data still reaches the conductor. IPA ships:
 * default, logs, extra-hardware, pci-devices, numa-topology, dmi-decode, lldp, usb-devices; numa-topology and
 * dmi-decode are not implemented here (asking for them is a failure, as an unknown collector is in IPA).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { errorMessage } from '../../common/errors.js';
import { run } from '../../common/exec.js';
import { dispatchToManagers, getCurrentVersions } from '../../hardware-managers/dispatch.js';
import { collectSystemLogs } from '../extensions/log.js';

export type Payload = Record<string, unknown>;

export class Failures {
  readonly messages: string[] = [];
  add(msg: string): void {
    this.messages.push(msg);
  }
  /** IPA's AccumulatedFailures.get_error: null, or every message joined. */
  error(): string | null {
    return this.messages.length ? `The following errors were encountered:\n* ${this.messages.join('\n* ')}` : null;
  }
}

export interface CollectorEnv {
  collectors: readonly string[];
  logFile: string | null;
  /** How long the lldp collector listens (ipa-lldp-timeout). */
  lldpTimeoutS?: number;
  /** /sys root, replaceable in tests. */
  sysRoot?: string;
}

type Collector = (data: Payload, failures: Failures, env: CollectorEnv) => Promise<void>;

const GiB = 2 ** 30;

interface Disk { name: string; size: number }

/** IPA's guess_root_disk: by (size, name), the first of at least 4 GiB. */
export function guessRootDisk<T extends Disk>(disks: readonly T[]): T | undefined {
  return [...disks].sort((a, b) => a.size - b.size || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .find((d) => d.size >= 4 * GiB);
}

function readHex(path: string): string | null {
  try {
    const v = readFileSync(path, 'utf8').trim();
    const i = v.indexOf('x');
    return i >= 0 ? v.slice(i + 1) : null;
  } catch {
    return null;
  }
}

/** /sys/bus/pci/devices as IPA's collect_pci_devices_info. */
export function pciDevices(sysRoot = '/sys'): Payload[] {
  const base = join(sysRoot, 'bus/pci/devices');
  const out: Payload[] = [];
  for (const bus of readdirSync(base).sort()) {
    const vendor = readHex(join(base, bus, 'vendor'));
    const product = readHex(join(base, bus, 'device'));
    const cls = readHex(join(base, bus, 'class'));
    if (vendor === null || product === null || cls === null) continue;
    let numa: string | null = null;
    try {
      numa = readFileSync(join(base, bus, 'numa_node'), 'utf8').trim();
    } catch {
      numa = null;
    }
    out.push({ vendor_id: vendor, product_id: product, class: cls, revision: readHex(join(base, bus, 'revision')), bus,
      numa_node_id: numa });
  }
  return out;
}

const collectors: Record<string, Collector> = {
  async default(data, _failures, env) {
    const inventory = await dispatchToManagers<Payload>('listHardwareInfo');
    data.inventory = inventory;
    const disks = Array.isArray(inventory.disks) ? inventory.disks as Disk[] : [];
    const root = guessRootDisk(disks);
    // No suitable root disk is only a warning in IPA.
    if (root) data.root_disk = root;
    data.boot_interface = (inventory.boot as Payload | undefined)?.pxe_interface ?? null;
    data.configuration = { collectors: [...env.collectors], managers: await getCurrentVersions().catch(() => ({})) };
  },

  async logs(data, _failures, env) {
    try {
      data.logs = await collectSystemLogs(env.logFile);
    } catch {
      // IPA: a missing journal is only a warning
    }
  },

  async 'pci-devices'(data, failures, env) {
    try {
      data.pci_devices = pciDevices(env.sysRoot);
    } catch (e) {
      failures.add(`Failed to get list of PCI devices: ${errorMessage(e)}`);
    }
  },

  async lldp(data, _failures, env) {
    data.lldp_raw = await dispatchToManagers<Payload>('collectLldpData', { timeoutS: env.lldpTimeoutS ?? 30 }).catch(() => ({}));
  },

  async 'usb-devices'(data) {
    data.usb_devices = await dispatchToManagers<Payload[]>('getUsbDevices').catch(() => []);
  },

  async 'extra-hardware'(data, failures) {
    const benchmarks: string[] = [];
    let out: string;
    try {
      out = (await run('hardware-detect', benchmarks, { timeoutMs: 600_000, quiet: true })).stdout;
    } catch (e) {
      failures.add(`failed to run hardware-detect utility: ${errorMessage(e)}`);
      return;
    }
    try {
      data.data = JSON.parse(out);
    } catch (e) {
      failures.add(`JSON returned from hardware-detect cannot be decoded: ${errorMessage(e)}`);
    }
  },
};

export const COLLECTOR_NAMES = Object.keys(collectors);

/** Runs the named collectors in order; an unknown name or a throwing collector is recorded, not fatal. */
export async function runCollectors(env: CollectorEnv): Promise<{ data: Payload; failures: Failures }> {
  const data: Payload = {};
  const failures = new Failures();
  for (const name of env.collectors) {
    const c = collectors[name];
    if (!c) {
      failures.add(`Failed to load collector ${name}`);
      continue;
    }
    try {
      await c(data, failures, env);
    } catch (e) {
      failures.add(`collector ${name} failed: ${errorMessage(e)}`);
    }
  }
  return { data, failures };
}
