/**
 * Schema migrations, applied in order at start-up inside transactions; `schema_version` records the
 * versions applied. Never edit a released migration: append a new one.
 *
 * Both stores run the same list, so that conductors starting together migrate once: SQLite in sqlite.ts under
 * its write lock, PostgreSQL in postgres.ts under an advisory lock. Adding a table or column is one entry here:
 *
 *   { version: 7, description: 'conductors.rpc_url', sql: (d) => `ALTER TABLE conductors ADD COLUMN rpc_url TEXT;` },
 *
 * Write SQL both databases accept: TEXT (strings, ISO times, JSON text), INTEGER (numbers, booleans as 0/1),
 * `${d.autoId}` for an auto-incremented id, double-quoted reserved words ("user"). What differs between them is a
 * method of the Dialect (dialect.ts): add one there rather than branching on the database here.
 */
import type { Dialect } from './dialect.js';
import { INTERFACE_FIELDS, JSON_FIELDS } from './types.js';
import { BIOS_SETTINGS_DDL } from './bios-settings.js';
import { VOLUME_DDL } from './volumes.js';

export interface Migration {
  version: number;
  description: string;
  /** The statements (`;`-separated), for the dialect they run on. */
  sql: string | ((d: Dialect) => string);
}

export function migrationSql(m: Migration, d: Dialect): string {
  return typeof m.sql === 'string' ? m.sql : m.sql(d);
}

const ifaceCols = INTERFACE_FIELDS.map((f) => `  ${f} TEXT`).join(',\n');
const jsonCols = JSON_FIELDS.map((f) => `  ${f} TEXT NOT NULL DEFAULT '{}'`).join(',\n');

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'nodes, ports, conductors, node_history',
    sql: (d) => `
CREATE TABLE nodes (
  id ${d.autoId},
  uuid TEXT NOT NULL UNIQUE,
  name TEXT UNIQUE,
  created_at TEXT NOT NULL,
  updated_at TEXT,
  driver TEXT NOT NULL,
  instance_uuid TEXT UNIQUE,
  chassis_uuid TEXT,
  power_state TEXT,
  target_power_state TEXT,
  provision_state TEXT NOT NULL,
  target_provision_state TEXT,
  provision_updated_at TEXT,
  last_error TEXT,
  maintenance INTEGER NOT NULL DEFAULT 0,
  maintenance_reason TEXT,
  fault TEXT,
  reservation TEXT,
  console_enabled INTEGER NOT NULL DEFAULT 0,
  inspection_started_at TEXT,
  inspection_finished_at TEXT,
  resource_class TEXT,
  traits TEXT NOT NULL DEFAULT '[]',
  conductor_group TEXT NOT NULL DEFAULT '',
  allocation_uuid TEXT,
  automated_clean INTEGER,
  protected INTEGER NOT NULL DEFAULT 0,
  protected_reason TEXT,
  owner TEXT,
  lessee TEXT,
  description TEXT,
  retired INTEGER NOT NULL DEFAULT 0,
  retired_reason TEXT,
  boot_mode TEXT,
  secure_boot INTEGER,
  shard TEXT,
${ifaceCols},
${jsonCols}
);
CREATE INDEX nodes_provision_state ON nodes(provision_state);
CREATE INDEX nodes_driver ON nodes(driver);
CREATE INDEX nodes_reservation ON nodes(reservation);
CREATE INDEX nodes_owner ON nodes(owner);
CREATE INDEX nodes_conductor_group ON nodes(conductor_group);

CREATE TABLE ports (
  id ${d.autoId},
  uuid TEXT NOT NULL UNIQUE,
  address TEXT NOT NULL UNIQUE,
  node_uuid TEXT NOT NULL REFERENCES nodes(uuid) ON DELETE CASCADE,
  extra TEXT NOT NULL DEFAULT '{}',
  internal_info TEXT NOT NULL DEFAULT '{}',
  local_link_connection TEXT NOT NULL DEFAULT '{}',
  pxe_enabled INTEGER NOT NULL DEFAULT 1,
  physical_network TEXT,
  portgroup_uuid TEXT,
  is_smartnic INTEGER NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL,
  updated_at TEXT
);
CREATE INDEX ports_node_uuid ON ports(node_uuid);

CREATE TABLE conductors (
  hostname TEXT PRIMARY KEY,
  conductor_group TEXT NOT NULL DEFAULT '',
  drivers TEXT NOT NULL DEFAULT '[]',
  online INTEGER NOT NULL DEFAULT 1,
  created_at TEXT NOT NULL,
  updated_at TEXT
);

CREATE TABLE node_history (
  id ${d.autoId},
  uuid TEXT NOT NULL UNIQUE,
  node_uuid TEXT NOT NULL REFERENCES nodes(uuid) ON DELETE CASCADE,
  created_at TEXT NOT NULL,
  severity TEXT NOT NULL,
  event_type TEXT NOT NULL,
  event TEXT NOT NULL,
  conductor TEXT,
  "user" TEXT
);
CREATE INDEX node_history_node ON node_history(node_uuid);
`,
  },
  {
    version: 2,
    description: 'nodes.version, bumped by every update (validates cached node list pages)',
    // The store bumps it in its own UPDATEs; the trigger catches any statement that does not (another
    // conductor's included: on PostgreSQL the bump is what keeps each process's render cache honest).
    sql: (d) => `
ALTER TABLE nodes ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
${d.versionBumpTrigger('nodes')}`,
  },
  {
    version: 3,
    description: 'conductors: enabled interfaces and the internal RPC URL (several conductors, conductor/cluster/)',
    sql: `
ALTER TABLE conductors ADD COLUMN hardware_interfaces TEXT NOT NULL DEFAULT '{}';
ALTER TABLE conductors ADD COLUMN rpc_url TEXT;
`,
  },
  {
    version: 10,
    description: 'chassis and portgroups (Ironic 1.23+); ports.portgroup_uuid indexed',
    // A node's portgroups go with it (ON DELETE CASCADE), as Ironic's destroy_node removes them.
    sql: (d) => `
CREATE TABLE chassis (
  id ${d.autoId},
  uuid TEXT NOT NULL UNIQUE,
  description TEXT,
  extra TEXT NOT NULL DEFAULT '{}',
  created_at TEXT NOT NULL,
  updated_at TEXT
);
CREATE TABLE portgroups (
  id ${d.autoId},
  uuid TEXT NOT NULL UNIQUE,
  name TEXT UNIQUE,
  node_uuid TEXT NOT NULL REFERENCES nodes(uuid) ON DELETE CASCADE,
  address TEXT UNIQUE,
  extra TEXT NOT NULL DEFAULT '{}',
  internal_info TEXT NOT NULL DEFAULT '{}',
  standalone_ports_supported INTEGER NOT NULL DEFAULT 1,
  mode TEXT,
  properties TEXT NOT NULL DEFAULT '{}',
  created_at TEXT NOT NULL,
  updated_at TEXT
);
CREATE INDEX portgroups_node_uuid ON portgroups(node_uuid);
CREATE INDEX ports_portgroup_uuid ON ports(portgroup_uuid);
CREATE INDEX nodes_chassis_uuid ON nodes(chassis_uuid);
`,
  },
  {
    version: 20,
    description: 'allocations (Ironic 1.52): a node reserved for an instance by resource class, traits, candidates',
    sql: (d) => `
CREATE TABLE allocations (
  id ${d.autoId},
  uuid TEXT NOT NULL UNIQUE,
  name TEXT UNIQUE,
  node_uuid TEXT,
  state TEXT NOT NULL,
  owner TEXT,
  last_error TEXT,
  resource_class TEXT,
  traits TEXT NOT NULL DEFAULT '[]',
  candidate_nodes TEXT NOT NULL DEFAULT '[]',
  extra TEXT NOT NULL DEFAULT '{}',
  conductor_affinity TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT
);
CREATE INDEX allocations_node_uuid ON allocations(node_uuid);
CREATE INDEX allocations_state ON allocations(state);
`,
  },
  {
    version: 21,
    description: 'deploy_templates (Ironic 1.55): named deploy step sets applied by instance trait',
    sql: (d) => `
CREATE TABLE deploy_templates (
  id ${d.autoId},
  uuid TEXT NOT NULL UNIQUE,
  name TEXT NOT NULL UNIQUE,
  description TEXT,
  steps TEXT NOT NULL DEFAULT '[]',
  extra TEXT NOT NULL DEFAULT '{}',
  created_at TEXT NOT NULL,
  updated_at TEXT
);
`,
  },
  { version: 30, description: 'bios_settings: the BIOS settings cache (GET /v1/nodes/{node}/bios)', sql: BIOS_SETTINGS_DDL },
  { version: 31, description: 'volume_connectors, volume_targets (/v1/volume)', sql: (d) => VOLUME_DDL(d.autoId) },
];
