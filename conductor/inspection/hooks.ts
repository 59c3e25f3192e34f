/**
 * Inspection data processing, hook by hook as Ironic's drivers/modules/inspector/hooks/: each hook may
 * `preprocess` (validate, fill plugin_data) and then run (update the node's properties and ports). Property
 * changes collect in `props` and are saved once by the caller; ports are written as they are decided.
 */
import { randomUUID } from 'node:crypto';
import type { NodeRecord, PortRecord, Store } from '../store/types.js';
import { DuplicateError } from '../store/types.js';
import { HOOK_NAMES, type HookName, type InspectorConfig } from './config.js';
import { guessRootDisk, matchRootDevice, type InventoryDisk } from './hints.js';
import { parseLldp } from './lldp.js';

type Obj = Record<string, unknown>;

export class InspectionDataError extends Error {}

export interface InventoryInterface {
  name: string;
  mac_address: string;
  ipv4_address?: string | null;
  ipv6_address?: string | null;
  client_id?: string | null;
  lldp?: unknown;
  pxe_enabled?: boolean;
  [k: string]: unknown;
}

export interface HookEnv {
  cfg: InspectorConfig;
  store: Store;
  node: NodeRecord;
  inventory: Obj;
  pluginData: Obj;
  /** The node's properties being built; saved by the caller after every hook ran. */
  props: Obj;
  log: (msg: string, extra?: Obj) => void;
}

interface Hook {
  preprocess?(env: HookEnv): void;
  run?(env: HookEnv): Promise<void> | void;
}

const GiB = 2 ** 30;

export function normalizeMac(mac: string): string | undefined {
  const m = mac.trim().toLowerCase().replace(/-/g, ':');
  return /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(m) ? m : undefined;
}

/** inventory.boot.pxe_interface; a pxelinux-style 01-aa-bb-... is accepted too. */
export function pxeMac(inventory: Obj): string | undefined {
  const boot = inventory.boot as Obj | undefined;
  let mac = typeof boot?.pxe_interface === 'string' ? boot.pxe_interface : undefined;
  if (!mac) return undefined;
  if (/^[0-9a-f]{2}(-[0-9a-f]{2}){6}$/i.test(mac)) mac = mac.slice(3);
  return normalizeMac(mac);
}

function isLoopback(ip: string): boolean {
  return ip.startsWith('127.') || ip === '::1';
}

/** Ironic's capabilities string "k1:v1,k2:v2" merged with `updates`. */
export function updateCapabilities(old: unknown, updates: Record<string, string>): string {
  const caps = new Map<string, string>();
  if (typeof old === 'string') {
    for (const part of old.split(',')) {
      const i = part.indexOf(':');
      if (i > 0) caps.set(part.slice(0, i).trim(), part.slice(i + 1).trim());
    }
  } else if (old && typeof old === 'object') {
    for (const [k, v] of Object.entries(old as Obj)) caps.set(k, String(v));
  }
  for (const [k, v] of Object.entries(updates)) caps.set(k, v);
  return [...caps].map(([k, v]) => `${k}:${v}`).join(',');
}

function interfacesOf(env: HookEnv): Record<string, InventoryInterface> {
  return (env.pluginData.all_interfaces ?? {}) as Record<string, InventoryInterface>;
}

const hooks: Record<HookName, Hook> = {
  'ramdisk-error': {
    preprocess(env) {
      if (env.pluginData.error) throw new InspectionDataError(`Ramdisk reported error: ${String(env.pluginData.error)}`);
    },
  },

  'validate-interfaces': {
    preprocess(env) {
      const list = env.inventory.interfaces;
      if (!Array.isArray(list)) throw new InspectionDataError('no interfaces present in inventory');
      const pxe = pxeMac(env.inventory);
      const all: Record<string, InventoryInterface> = {};
      for (const raw of list as Obj[]) {
        const name = typeof raw.name === 'string' ? raw.name : '';
        const mac = typeof raw.mac_address === 'string' ? normalizeMac(raw.mac_address) : undefined;
        if (!name || !mac) continue;
        const v6 = typeof raw.ipv6_address === 'string' ? raw.ipv6_address.split('%')[0] : raw.ipv6_address;
        all[name] = { ...raw, name, mac_address: mac, ipv6_address: v6 as string | null | undefined, pxe_enabled: mac === pxe };
      }
      if (Object.keys(all).length === 0) throw new InspectionDataError('no valid network interfaces');
      const mode = env.cfg.add_ports;
      const valid: Record<string, InventoryInterface> = {};
      for (const [name, iface] of Object.entries(all)) {
        const ip = iface.ipv4_address || iface.ipv6_address;
        if (name === 'lo' || (ip && isLoopback(ip))) continue;
        if (mode === 'pxe' && pxe && !iface.pxe_enabled) continue;
        if (mode === 'active' && !ip) continue;
        valid[name] = { ...iface };
      }
      if (Object.keys(valid).length === 0) {
        throw new InspectionDataError(`no network interfaces match the configuration (add_ports set to "${mode}")`);
      }
      env.pluginData.all_interfaces = all;
      env.pluginData.valid_interfaces = valid;
      env.pluginData.macs = Object.values(valid).map((i) => i.mac_address);
    },
  },

  ports: {
    async run(env) {
      const valid = (env.pluginData.valid_interfaces ?? {}) as Record<string, InventoryInterface>;
      if (env.cfg.add_ports !== 'disabled') {
        for (const iface of Object.values(valid)) {
          const extra: Obj = iface.client_id ? { 'client-id': iface.client_id } : {};
          try {
            await env.store.createPort({ uuid: randomUUID(), address: iface.mac_address, node_uuid: env.node.uuid,
              pxe_enabled: iface.pxe_enabled === true, extra });
            env.log('port created', { address: iface.mac_address, pxe: iface.pxe_enabled });
          } catch (e) {
            if (!(e instanceof DuplicateError)) throw e;
          }
        }
      }
      const all = interfacesOf(env);
      const keep = env.cfg.keep_ports;
      const expected = keep === 'present' ? new Set(Object.values(all).map((i) => i.mac_address))
        : keep === 'added' ? new Set(env.pluginData.macs as string[]) : undefined;
      const pxeMacs = new Set(Object.values(all).filter((i) => i.pxe_enabled).map((i) => i.mac_address));
      const clientIds = new Map(Object.values(all).map((i) => [i.mac_address, i.client_id]));
      for (const port of await env.store.listPorts({ node_uuid: env.node.uuid })) {
        if (expected && !expected.has(port.address)) {
          await env.store.deletePort(port.uuid);
          continue;
        }
        const patch: Partial<PortRecord> = {};
        if (env.cfg.update_pxe_enabled && pxeMacs.has(port.address) !== port.pxe_enabled) {
          patch.pxe_enabled = pxeMacs.has(port.address);
        }
        const cid = clientIds.get(port.address);
        if (cid && cid !== port.extra['client-id']) patch.extra = { ...port.extra, 'client-id': cid };
        if (Object.keys(patch).length) await env.store.updatePort(port.uuid, patch);
      }
    },
  },

  architecture: {
    run(env) {
      const arch = (env.inventory.cpu as Obj | undefined)?.architecture;
      if (typeof arch !== 'string' || !arch) {
        throw new InspectionDataError(`Inventory has malformed or missing CPU architecture information: ` +
          `${JSON.stringify(env.inventory.cpu ?? null)} for node ${env.node.uuid}.`);
      }
      env.props.cpu_arch = arch;
    },
  },

  cpus: {
    run(env) {
      const n = Number((env.inventory.cpu as Obj | undefined)?.count ?? 0);
      if (Number.isInteger(n) && n > 0) env.props.cpus = n;
      else env.log('no CPU count available');
    },
  },

  memory: {
    run(env) {
      const mb = (env.inventory.memory as Obj | undefined)?.physical_mb;
      if (typeof mb !== 'number' || !Number.isFinite(mb)) {
        throw new InspectionDataError(`Inventory has missing memory information: ` +
          `${JSON.stringify(env.inventory.memory ?? null)} for node ${env.node.uuid}.`);
      }
      env.props.memory_mb = mb;
    },
  },

  'root-device': {
    run(env) {
      const disks = (Array.isArray(env.inventory.disks) ? env.inventory.disks : [])
        .filter((d): d is InventoryDisk => !!d && typeof d === 'object' && typeof (d as Obj).name === 'string' &&
          typeof (d as Obj).size === 'number');
      const hints = env.node.properties.root_device;
      if (hints && typeof hints === 'object' && !Array.isArray(hints) && Object.keys(hints).length) {
        let found: InventoryDisk | undefined;
        try {
          found = matchRootDevice(disks, hints as Obj);
        } catch (e) {
          throw new InspectionDataError(`No disks could be found using root device hints ${JSON.stringify(hints)} for ` +
            `node ${env.node.uuid} because they failed to validate. Error: ${(e as Error).message}`);
        }
        if (!found) throw new InspectionDataError(`No disks satisfied root device hints for node ${env.node.uuid}`);
        env.pluginData.root_disk = found;
      } else if (!env.pluginData.root_disk) {
        // IPA's default collector sends root_disk; other ramdisks get the same rule applied here.
        const guess = guessRootDisk(disks);
        if (guess) env.pluginData.root_disk = guess;
      }
      const root = env.pluginData.root_disk as InventoryDisk | undefined;
      let localGb = root && typeof root.size === 'number' ? Math.floor(root.size / GiB) : 0;
      if (localGb > 0 && env.cfg.disk_partitioning_spacing) localGb -= 1;
      env.pluginData.local_gb = localGb;
      env.props.local_gb = localGb;
    },
  },

  'boot-mode': {
    run(env) {
      const mode = (env.inventory.boot as Obj | undefined)?.current_boot_mode;
      if (typeof mode !== 'string') return;
      env.props.capabilities = updateCapabilities(env.props.capabilities, { boot_mode: mode });
    },
  },

  'local-link-connection': {
    async run(env) {
      const raw = (env.pluginData.lldp_raw ?? {}) as Record<string, unknown>;
      const all = interfacesOf(env);
      for (const iface of Object.values(all)) {
        const tlvs = raw[iface.name] ?? iface.lldp;
        if (!tlvs) continue;
        const port = await env.store.getPortByAddress(iface.mac_address);
        if (!port || port.node_uuid !== env.node.uuid) continue;
        const llc = parseLldp(tlvs);
        const merged: Obj = { ...port.local_link_connection };
        let changed = false;
        for (const [k, v] of Object.entries(llc)) {
          if (merged[k] === undefined) {
            merged[k] = v;
            changed = true;
          }
        }
        if (changed) await env.store.updatePort(port.uuid, { local_link_connection: merged });
      }
    },
  },

  'extra-hardware': {
    run(env) {
      // hardware-detect's list of [category, item, key, value] becomes plugin_data.extra[category][item][key].
      const data = env.pluginData.data;
      if (!Array.isArray(data)) return;
      const extra: Record<string, Record<string, Obj>> = {};
      for (const row of data) {
        if (!Array.isArray(row) || row.length !== 4 || !row.slice(0, 3).every((x) => typeof x === 'string')) continue;
        const [a, b, c, v] = row as [string, string, string, unknown];
        if ([a, b, c].some((k) => k === '__proto__' || k === 'constructor' || k === 'prototype')) continue;
        const cat = extra[a] ?? {};
        const item = cat[b] ?? {};
        item[c] = v;
        cat[b] = item;
        extra[a] = cat;
      }
      env.pluginData.extra = extra;
      delete env.pluginData.data;
    },
  },
};

/** Runs the enabled hooks, in Ironic's dependency order: every preprocess first, then every hook. */
export async function runHooks(env: HookEnv, enabled: readonly HookName[]): Promise<void> {
  const order = HOOK_NAMES.filter((h) => enabled.includes(h));
  for (const h of order) hooks[h].preprocess?.(env);
  for (const h of order) await hooks[h].run?.(env);
}

/** MACs of the inventory's interfaces (valid ones only), lower-case. */
export function inventoryMacs(inventory: Obj): string[] {
  const list = Array.isArray(inventory.interfaces) ? inventory.interfaces : [];
  return [...new Set(list.map((i) => (i && typeof (i as Obj).mac_address === 'string' ? normalizeMac((i as Obj).mac_address as string) : undefined))
    .filter((m): m is string => !!m && m !== '00:00:00:00:00:00'))];
}
