/**
 * Where inspection data lives: one JSON file per node under <data_dir>/inventory, written atomically (temp file
 * + rename), readable by the conductor only. Ironic keeps it in a node_inventory table or in Swift; a file
 * store keeps the Store interface (and both its dialects) unchanged. Conductors sharing a database must share
 * data_dir for GET /v1/nodes/{node}/inventory to answer on each of them.
 */
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { ConductorConfig } from '../config.js';

export interface InspectionData {
  inventory: Record<string, unknown>;
  plugin_data: Record<string, unknown>;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function fileOf(cfg: ConductorConfig, uuid: string): string {
  // The UUID comes from our own node records, never from a request; checked anyway: it becomes a path.
  if (!UUID_RE.test(uuid)) throw new Error(`not a node UUID: ${uuid}`);
  return join(cfg.data_dir, 'inventory', `${uuid}.json`);
}

export async function storeInspectionData(cfg: ConductorConfig, uuid: string, data: InspectionData): Promise<void> {
  if (cfg.inspector.data_backend === 'none') return;
  const file = fileOf(cfg, uuid);
  await mkdir(join(cfg.data_dir, 'inventory'), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(tmp, JSON.stringify(data), { mode: 0o600 });
  await rename(tmp, file);
}

export async function getInspectionData(cfg: ConductorConfig, uuid: string): Promise<InspectionData | undefined> {
  if (cfg.inspector.data_backend === 'none') return undefined;
  try {
    return JSON.parse(await readFile(fileOf(cfg, uuid), 'utf8')) as InspectionData;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

export async function deleteInspectionData(cfg: ConductorConfig, uuid: string): Promise<void> {
  await rm(fileOf(cfg, uuid), { force: true });
}
