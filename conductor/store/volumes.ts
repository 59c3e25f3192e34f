/**
 * Volume connectors and targets (Ironic's volume_connectors / volume_targets, API 1.32): rows tied to a node
 * (ON DELETE CASCADE, migration 31), with Ironic's unique keys: (type, connector_id) for connectors and
 * (node, boot_index) for targets. One implementation over the stores' SQL runner (bios-settings.ts).
 */
import { isoTime } from '../time.js';
import { page, type PageQuery, type SortColumns } from './resource-rows.js';
import type { SqlRunner } from './sql-runner.js';
import type { Row } from './sqlite-rows.js';
import { DuplicateError, type Json, type Store } from './types.js';

export interface VolumeConnectorRecord {
  uuid: string;
  node_uuid: string;
  type: string;
  connector_id: string;
  extra: Json;
  created_at: string;
  updated_at: string | null;
}

export interface VolumeTargetRecord {
  uuid: string;
  node_uuid: string;
  volume_type: string;
  volume_id: string;
  boot_index: number;
  properties: Json;
  extra: Json;
  created_at: string;
  updated_at: string | null;
}

export type NewVolumeConnector = Omit<VolumeConnectorRecord, 'created_at' | 'updated_at'>;
export type NewVolumeTarget = Omit<VolumeTargetRecord, 'created_at' | 'updated_at'>;

export interface VolumeStore {
  createConnector(c: NewVolumeConnector): Promise<VolumeConnectorRecord>;
  getConnector(uuid: string): Promise<VolumeConnectorRecord | undefined>;
  /** With `q`: one page as Ironic's list (sort_key, sort_dir, marker via `missing`, limit). */
  listConnectors(nodeUuid?: string, q?: VolumePageQuery): Promise<VolumeConnectorRecord[]>;
  updateConnector(c: NewVolumeConnector): Promise<VolumeConnectorRecord>;
  deleteConnector(uuid: string): Promise<void>;
  createTarget(t: NewVolumeTarget): Promise<VolumeTargetRecord>;
  getTarget(uuid: string): Promise<VolumeTargetRecord | undefined>;
  listTargets(nodeUuid?: string, q?: VolumePageQuery): Promise<VolumeTargetRecord[]>;
  updateTarget(t: NewVolumeTarget): Promise<VolumeTargetRecord>;
  deleteTarget(uuid: string): Promise<void>;
}

export interface VolumePageQuery extends PageQuery {
  missing: (marker: string) => Error;
  /** Only rows of nodes this project owns or leases (Ironic's `project` list filter). */
  project?: string | undefined;
}

/**
 * Sortable columns: Ironic's table columns minus its controllers' invalid_sort_key_list (the JSON ones, refused
 * before this). Ironic's `node_id` column has no counterpart here (rows carry node_uuid, which Ironic cannot sort).
 */
const CONNECTOR_SORT: SortColumns = { id: 'int', uuid: 'text', type: 'text', connector_id: 'text', created_at: 'text', updated_at: 'text' };
const TARGET_SORT: SortColumns = {
  id: 'int', uuid: 'text', volume_type: 'text', volume_id: 'text', boot_index: 'int', created_at: 'text', updated_at: 'text',
};

export const VOLUME_DDL = (autoId: string): string => `
CREATE TABLE volume_connectors (
  id ${autoId},
  uuid TEXT NOT NULL UNIQUE,
  node_uuid TEXT NOT NULL REFERENCES nodes(uuid) ON DELETE CASCADE,
  type TEXT NOT NULL,
  connector_id TEXT NOT NULL,
  extra TEXT NOT NULL DEFAULT '{}',
  created_at TEXT NOT NULL,
  updated_at TEXT,
  UNIQUE (type, connector_id)
);
CREATE INDEX volume_connectors_node ON volume_connectors(node_uuid);
CREATE TABLE volume_targets (
  id ${autoId},
  uuid TEXT NOT NULL UNIQUE,
  node_uuid TEXT NOT NULL REFERENCES nodes(uuid) ON DELETE CASCADE,
  volume_type TEXT NOT NULL,
  volume_id TEXT NOT NULL,
  boot_index INTEGER NOT NULL,
  properties TEXT NOT NULL DEFAULT '{}',
  extra TEXT NOT NULL DEFAULT '{}',
  created_at TEXT NOT NULL,
  updated_at TEXT,
  UNIQUE (node_uuid, boot_index)
);
CREATE INDEX volume_targets_node ON volume_targets(node_uuid);
`;

/**
 * The runner names the violated key's (first) column: `uuid`, else the table's composite key, which this module
 * names `type_connector_id` / `node_boot_index`.
 */
function uniqueField(e: DuplicateError, table: 'volume_connectors' | 'volume_targets'): string {
  if (e.field === 'uuid') return 'uuid';
  return table === 'volume_connectors' ? 'type_connector_id' : 'node_boot_index';
}

const connectorFromRow = (r: Row): VolumeConnectorRecord => ({
  uuid: r.uuid as string, node_uuid: r.node_uuid as string, type: r.type as string, connector_id: r.connector_id as string,
  extra: JSON.parse(r.extra as string) as Json, created_at: r.created_at as string, updated_at: (r.updated_at as string | null) ?? null,
});
const targetFromRow = (r: Row): VolumeTargetRecord => ({
  uuid: r.uuid as string, node_uuid: r.node_uuid as string, volume_type: r.volume_type as string,
  volume_id: r.volume_id as string, boot_index: Number(r.boot_index), properties: JSON.parse(r.properties as string) as Json,
  extra: JSON.parse(r.extra as string) as Json, created_at: r.created_at as string, updated_at: (r.updated_at as string | null) ?? null,
});

export class SqlVolumes implements VolumeStore {
  constructor(private readonly sql: SqlRunner) {}

  private async write(table: 'volume_connectors' | 'volume_targets', sql: string, args: unknown[], value: string): Promise<void> {
    try {
      await this.sql.write(sql, args);
    } catch (e) {
      if (e instanceof DuplicateError) throw new DuplicateError(uniqueField(e, table), value);
      throw e;
    }
  }

  async createConnector(c: NewVolumeConnector): Promise<VolumeConnectorRecord> {
    await this.write('volume_connectors', `INSERT INTO volume_connectors (uuid, node_uuid, type, connector_id, extra, created_at)
      VALUES (?, ?, ?, ?, ?, ?)`, [c.uuid, c.node_uuid, c.type, c.connector_id, JSON.stringify(c.extra), isoTime()], c.uuid);
    return (await this.getConnector(c.uuid))!;
  }

  async getConnector(uuid: string): Promise<VolumeConnectorRecord | undefined> {
    const r = (await this.sql.read('SELECT * FROM volume_connectors WHERE uuid = ?', [uuid]))[0];
    return r ? connectorFromRow(r) : undefined;
  }

  private async list(table: 'volume_connectors' | 'volume_targets', nodeUuid: string | undefined, q: VolumePageQuery | undefined): Promise<Row[]> {
    const where: string[] = [];
    const args: unknown[] = [];
    if (nodeUuid !== undefined) { where.push('node_uuid = ?'); args.push(nodeUuid); }
    if (q?.project !== undefined) {
      where.push('node_uuid IN (SELECT uuid FROM nodes WHERE owner = ? OR lessee = ?)');
      args.push(q.project, q.project);
    }
    const tail = await page(this.sql, table, table === 'volume_connectors' ? CONNECTOR_SORT : TARGET_SORT, q ?? {}, where, args,
      q?.missing ?? ((m) => new Error(`no ${table} row ${m}`)));
    return this.sql.read(`SELECT * FROM ${table}${tail}`, args);
  }

  async listConnectors(nodeUuid?: string, q?: VolumePageQuery): Promise<VolumeConnectorRecord[]> {
    return (await this.list('volume_connectors', nodeUuid, q)).map(connectorFromRow);
  }

  async updateConnector(c: NewVolumeConnector): Promise<VolumeConnectorRecord> {
    await this.write('volume_connectors', `UPDATE volume_connectors SET node_uuid = ?, type = ?, connector_id = ?, extra = ?,
      updated_at = ? WHERE uuid = ?`, [c.node_uuid, c.type, c.connector_id, JSON.stringify(c.extra), isoTime(), c.uuid], c.uuid);
    return (await this.getConnector(c.uuid))!;
  }

  async deleteConnector(uuid: string): Promise<void> {
    await this.sql.write('DELETE FROM volume_connectors WHERE uuid = ?', [uuid]);
  }

  async createTarget(t: NewVolumeTarget): Promise<VolumeTargetRecord> {
    await this.write('volume_targets', `INSERT INTO volume_targets (uuid, node_uuid, volume_type, volume_id, boot_index, properties,
      extra, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, [t.uuid, t.node_uuid, t.volume_type, t.volume_id, t.boot_index,
      JSON.stringify(t.properties), JSON.stringify(t.extra), isoTime()], t.uuid);
    return (await this.getTarget(t.uuid))!;
  }

  async getTarget(uuid: string): Promise<VolumeTargetRecord | undefined> {
    const r = (await this.sql.read('SELECT * FROM volume_targets WHERE uuid = ?', [uuid]))[0];
    return r ? targetFromRow(r) : undefined;
  }

  async listTargets(nodeUuid?: string, q?: VolumePageQuery): Promise<VolumeTargetRecord[]> {
    return (await this.list('volume_targets', nodeUuid, q)).map(targetFromRow);
  }

  async updateTarget(t: NewVolumeTarget): Promise<VolumeTargetRecord> {
    await this.write('volume_targets', `UPDATE volume_targets SET node_uuid = ?, volume_type = ?, volume_id = ?, boot_index = ?,
      properties = ?, extra = ?, updated_at = ? WHERE uuid = ?`, [t.node_uuid, t.volume_type, t.volume_id, t.boot_index,
      JSON.stringify(t.properties), JSON.stringify(t.extra), isoTime(), t.uuid], t.uuid);
    return (await this.getTarget(t.uuid))!;
  }

  async deleteTarget(uuid: string): Promise<void> {
    await this.sql.write('DELETE FROM volume_targets WHERE uuid = ?', [uuid]);
  }
}

const cache = new WeakMap<Store, VolumeStore>();
/** The volume connectors/targets of a store (over its SqlRunner; one instance per store). */
export function volumes(store: Store): VolumeStore {
  let v = cache.get(store);
  if (!v) {
    v = new SqlVolumes(store.sql);
    cache.set(store, v);
  }
  return v;
}
