/**
 * What the PostgreSQL store needs besides the shared row code (sqlite-rows.ts, which both stores use: the schema
 * is the same TEXT/INTEGER one): its errors mapped to the store's, and URLs safe to log.
 */
import { maskText } from '../../common/secrets.js';

/** SQLSTATEs the store maps (PostgreSQL appendix A). */
export const PG_UNIQUE_VIOLATION = '23505';
export const PG_FOREIGN_KEY_VIOLATION = '23503';

interface PgErrorLike { code?: string; detail?: string; constraint?: string }

/** The column of a unique violation (`Key (name)=(a) already exists.`), else undefined. */
export function pgUniqueViolation(e: unknown): string | undefined {
  const err = e as PgErrorLike;
  if (err?.code !== PG_UNIQUE_VIOLATION) return undefined;
  const m = /Key \(([\w", ]+)\)=/.exec(err.detail ?? '');
  if (m?.[1]) return m[1].replace(/"/g, '');
  // Constraint names are <table>_<column>_key by default.
  const c = /^[a-z]+_(\w+)_key$/.exec(err.constraint ?? '');
  return c?.[1] ?? 'unknown';
}

export function isPgForeignKeyViolation(e: unknown): boolean {
  return (e as PgErrorLike)?.code === PG_FOREIGN_KEY_VIOLATION;
}

/** The URL without its password (and user), for logs and error messages. */
export function safeUrl(url: string): string {
  return maskText(url);
}

export function isPostgresUrl(url: string): boolean {
  return /^postgres(?:ql)?:\/\//i.test(url);
}
