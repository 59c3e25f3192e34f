/**
 * The conductor's store from its configuration: PostgreSQL when `database.url` is set (shared by several
 * conductors), else the embedded SQLite file in data_dir.
 */
import type { ConductorConfig } from '../config.js';
import { PostgresStore } from './postgres.js';
import { safeUrl } from './postgres-rows.js';
import { SqliteStore } from './sqlite.js';
import type { Store } from './types.js';

export async function openStore(config: ConductorConfig): Promise<Store> {
  const db = config.database;
  const renderCacheBytes = db.render_cache_mib * 2 ** 20;
  if (db.url) return PostgresStore.open({ url: db.url, poolSize: db.pool_size, renderCacheBytes });
  return SqliteStore.open(config.data_dir, db.sqlite_file, { renderCacheBytes });
}

/** Where the store lives, safe to log (no password). */
export function describeStore(config: ConductorConfig): string {
  return config.database.url ? safeUrl(config.database.url) : `sqlite:${config.database.sqlite_file}`;
}
