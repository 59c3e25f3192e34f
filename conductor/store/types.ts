/**
 * The Store interface: what the conductor needs from its database, nothing more. Promise-based so a
 * PostgreSQL implementation can sit behind the same interface as the embedded SQLite one.
 */
import { z } from 'zod';
import type { TransitionPatch } from '../states.js';
import type { Dialect } from './dialect.js';

export type Json = Record<string, unknown>;
/** A result row as both drivers return it (column name -> value). */
export type Row = Record<string, unknown>;

export const INTERFACE_FIELDS = [
  'bios_interface', 'boot_interface', 'console_interface', 'deploy_interface', 'inspect_interface',
  'management_interface', 'network_interface', 'power_interface', 'raid_interface', 'rescue_interface',
  'storage_interface', 'vendor_interface',
] as const;
export type InterfaceField = (typeof INTERFACE_FIELDS)[number];

export const JSON_FIELDS = [
  'driver_info', 'driver_internal_info', 'properties', 'instance_info', 'extra', 'clean_step', 'deploy_step',
  'raid_config', 'target_raid_config', 'network_data',
] as const;
export type JsonField = (typeof JSON_FIELDS)[number];

export interface NodeRecord extends Record<InterfaceField, string | null>, Record<JsonField, Json> {
  id: number;
  uuid: string;
  name: string | null;
  created_at: string;
  updated_at: string | null;
  driver: string;
  instance_uuid: string | null;
  chassis_uuid: string | null;
  power_state: string | null;
  target_power_state: string | null;
  provision_state: string;
  target_provision_state: string | null;
  provision_updated_at: string | null;
  last_error: string | null;
  maintenance: boolean;
  maintenance_reason: string | null;
  fault: string | null;
  reservation: string | null;
  console_enabled: boolean;
  inspection_started_at: string | null;
  inspection_finished_at: string | null;
  resource_class: string | null;
  traits: string[];
  conductor_group: string;
  allocation_uuid: string | null;
  automated_clean: boolean | null;
  protected: boolean;
  protected_reason: string | null;
  owner: string | null;
  lessee: string | null;
  description: string | null;
  retired: boolean;
  retired_reason: string | null;
  boot_mode: string | null;
  secure_boot: boolean | null;
  shard: string | null;
}

/** Fields a caller may write directly. provision_state/target_provision_state only via a TransitionPatch. */
export type NodeFields = Omit<NodeRecord, 'id' | 'uuid' | 'created_at' | 'updated_at' | 'provision_state' |
  'target_provision_state' | 'reservation'>;
export type NodeUpdate = Partial<NodeFields> | (Partial<NodeFields> & TransitionPatch);
export type NewNode = Partial<NodeFields> & TransitionPatch & { uuid: string; driver: string };

export interface PortRecord {
  id: number;
  uuid: string;
  address: string;
  node_uuid: string;
  extra: Json;
  internal_info: Json;
  local_link_connection: Json;
  pxe_enabled: boolean;
  physical_network: string | null;
  portgroup_uuid: string | null;
  is_smartnic: boolean;
  created_at: string;
  updated_at: string | null;
}
export type PortFields = Omit<PortRecord, 'id' | 'uuid' | 'created_at' | 'updated_at'>;
export type NewPort = Partial<PortFields> & { uuid: string; address: string; node_uuid: string };

export interface HistoryRecord {
  id: number;
  uuid: string;
  node_uuid: string;
  created_at: string;
  severity: 'INFO' | 'ERROR';
  event_type: string;
  event: string;
  conductor: string | null;
  user: string | null;
}
export type NewHistory = Omit<HistoryRecord, 'id' | 'created_at'>;

export interface ConductorRecord {
  hostname: string;
  conductor_group: string;
  drivers: string[];
  online: boolean;
  /** Enabled interface implementations per kind (`power: [ipmitool, fake]`, ...). */
  hardware_interfaces?: Record<string, string[]>;
  /** Where other conductors reach this one's internal JSON-RPC (conductor/cluster/rpc-server.ts). */
  rpc_url?: string | null;
  created_at: string;
  updated_at: string | null;
}

export type SortDir = 'asc' | 'desc';

export interface NodeQuery {
  associated?: boolean;
  maintenance?: boolean;
  retired?: boolean;
  fault?: string;
  provision_state?: string[];
  driver?: string;
  resource_class?: string;
  chassis_uuid?: string;
  conductor_group?: string;
  owner?: string;
  lessee?: string;
  project?: string;
  instance_uuid?: string;
  description_contains?: string;
  shard?: string[];
  sharded?: boolean;
  reserved?: boolean;
  /** Nodes whose provision_updated_at is older than this ISO time (periodic timeout checks). */
  provision_updated_before?: string;
  sort_key?: string;
  sort_dir?: SortDir;
  /** UUID of the last item of the previous page. */
  marker?: string;
  limit?: number;
}

export interface PortQuery {
  node_uuid?: string;
  /** Only ports of nodes in one of these shards. */
  node_shards?: string[];
  address?: string;
  portgroup_uuid?: string;
  sort_key?: string;
  sort_dir?: SortDir;
  marker?: string;
  limit?: number;
}

export type ReserveResult = { ok: true; node: NodeRecord } | { ok: false; holder: string | null; missing?: boolean };

/** How one key of a rendered node is produced from its column. */
export type NodeJsonFormat = 'scalar' | 'bool' | 'json' | 'conductor';

/**
 * A node list item rendered by the store as JSON text: `fields` in order (each a node column, or `conductor`),
 * then link arrays. Must render exactly what the API's renderNode would (the API tests compare them).
 */
export interface NodeJsonSpec {
  fields: readonly { name: string; fmt: NodeJsonFormat }[];
  /** [key, suffix]: `key: [{href: base/v1/nodes/<uuid><suffix>, rel: self}, {href: base/nodes/..., rel: bookmark}]` */
  links: readonly (readonly [string, string])[];
  base: string;
  /**
   * `conductor` is `host` for nodes in `group` whose driver is one of `drivers`, else null; with `owners` (other
   * conductors alive) it is `owners.of(node)`, the hash ring's owner, and `owners.epoch` (the ring's version) is
   * part of a cached page's key, so a rebuilt ring renders the page again.
   */
  conductor: { host: string; group: string; drivers: readonly string[]; owners?: NodeOwners };
  /**
   * JSON fields whose stored text may need masking: `mask` gets the stored text of values containing any of
   * `hints` (case-insensitive) and returns the JSON text to render.
   */
  maskers?: Readonly<Record<string, { hints: readonly string[]; mask(raw: string): string }>>;
}

/**
 * The spec's fields once each (the first of a repeated name wins), each with the JSON text that opens it (`"name":`,
 * after a comma from the second on). Names are spliced into SQL by the renderers, so anything but [a-z_] is refused.
 */
export function specFields(spec: NodeJsonSpec): { name: string; fmt: NodeJsonFormat; key: string }[] {
  const out: { name: string; fmt: NodeJsonFormat; key: string }[] = [];
  const seen = new Set<string>();
  for (const f of spec.fields) {
    if (seen.has(f.name)) continue;
    if (!/^[a-z_]+$/.test(f.name)) throw new Error(`bad node field ${f.name}`);
    out.push({ name: f.name, fmt: f.fmt, key: `${seen.size ? ',' : ''}"${f.name}":` });
    seen.add(f.name);
  }
  return out;
}

/** Who owns each node when several conductors share the database (see NodeJsonSpec.conductor). */
export interface NodeOwners {
  of(node: { uuid: string; driver: string; conductor_group: string }): string | null;
  epoch: number;
}

/** A rendered page of nodes: the items (UTF-8 JSON) joined by commas, their count and the last one's UUID. */
export interface NodeJsonList {
  items: Buffer;
  count: number;
  lastUuid?: string;
}

export interface NodeJsonRow {
  json: string;
  uuid: string;
  driver: string;
  conductor_group: string;
}

export interface Store {
  readonly kind: string;
  /** Plain SQL for the resources kept in their own store modules (chassis, portgroups, allocations, deploy templates). */
  readonly sql: SqlRunner;
  close(): Promise<void>;

  createNode(node: NewNode): Promise<NodeRecord>;
  getNodeByUuid(uuid: string): Promise<NodeRecord | undefined>;
  getNodeByName(name: string): Promise<NodeRecord | undefined>;
  getNodeByInstanceUuid(uuid: string): Promise<NodeRecord | undefined>;
  /** Node owning any of these MACs (lower-case); DuplicateNodeOnLookup when they belong to more than one. */
  getNodeByMacs(macs: readonly string[]): Promise<NodeRecord | undefined>;
  listNodes(query: NodeQuery): Promise<NodeRecord[]>;
  /** Same rows as listNodes, each rendered to JSON text as `spec` says. */
  listNodesJson(query: NodeQuery, spec: NodeJsonSpec): Promise<NodeJsonRow[]>;
  /** listNodesJson's items as one buffer, for whole responses. */
  renderNodeList(query: NodeQuery, spec: NodeJsonSpec): Promise<NodeJsonList>;
  countNodes(): Promise<number>;
  /** Nodes per shard (null: unsharded), most populated first (GET /v1/shards). */
  shardCounts(): Promise<{ shard: string | null; count: number }[]>;
  /** Updates and returns the row; `expect.reservation` makes it conditional (fails with undefined). */
  updateNode(uuid: string, patch: NodeUpdate): Promise<NodeRecord>;
  /** Deletes the node with its ports and history. */
  deleteNode(uuid: string): Promise<void>;

  /** Conditional UPDATE reservation=host WHERE reservation IS NULL. */
  reserveNode(uuid: string, host: string): Promise<ReserveResult>;
  releaseNode(uuid: string, host: string): Promise<boolean>;
  /** Clears every reservation held by `host`; returns the node UUIDs released. */
  clearReservations(host: string): Promise<string[]>;

  createPort(port: NewPort): Promise<PortRecord>;
  getPortByUuid(uuid: string): Promise<PortRecord | undefined>;
  getPortByAddress(address: string): Promise<PortRecord | undefined>;
  listPorts(query: PortQuery): Promise<PortRecord[]>;
  updatePort(uuid: string, patch: Partial<PortFields>): Promise<PortRecord>;
  deletePort(uuid: string): Promise<void>;

  addHistory(rec: NewHistory, maxEntries?: number): Promise<void>;
  listHistory(nodeUuid: string): Promise<HistoryRecord[]>;

  upsertConductor(rec: Omit<ConductorRecord, 'created_at' | 'updated_at'>): Promise<void>;
  setConductorOnline(hostname: string, online: boolean): Promise<void>;
  listConductors(): Promise<ConductorRecord[]>;

}

/** JSON columns must be plain objects (traits a string list) before they reach the database. */
export const JsonObjectSchema = z.record(z.string(), z.unknown());
export const TraitsSchema = z.array(z.string().min(1).max(255));

/** Thrown by stores on unique-constraint violations; the service layer maps it to the right 409. */
export class DuplicateError extends Error {
  constructor(readonly field: string, readonly value: string) {
    super(`duplicate ${field}: ${value}`);
  }
}

/**
 * A narrow SQL surface both stores expose (conductor/store/sql-runner.ts implements it) for the resources kept in
 * their own store modules (chassis, portgroups, allocations, deploy templates, BIOS settings, volumes).
 */
export interface AtomicStep {
  sql: string;
  args: readonly unknown[];
  /** The step must change a row, else everything is rolled back and `atomic` returns false. */
  required?: boolean;
}

export interface SqlRunner {
  readonly dialect: Dialect;
  /** A read (`?` placeholders). */
  read(sql: string, args?: readonly unknown[]): Promise<Row[]>;
  /** One write, committed when the promise resolves; unique violations become DuplicateError. */
  write(sql: string, args?: readonly unknown[]): Promise<Row[]>;
  /** The steps in one transaction; false (and nothing changed) when a required step changed no row. */
  atomic(steps: readonly AtomicStep[]): Promise<boolean>;
}
