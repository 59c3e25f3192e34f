/**
 * A narrow SQL surface that both stores expose for the resources kept in their own store modules (allocations,
 * deploy templates: conductor/store/allocations.ts, deploy-templates.ts), so those modules are written once for
 * SQLite and PostgreSQL instead of growing sqlite.ts and postgres.ts.
 *
 * `atomic` is the one multi-statement primitive: a list of statements run in one transaction, where a statement
 * marked `required` must change at least one row or the whole list is rolled back. Conditional UPDATEs then give
 * compare-and-set across tables (take a node only if it is still free AND the allocation still allocating)
 * without holding a lock across round trips.
 */
import type Database from 'better-sqlite3';
import type pg from 'pg';
import { POSTGRES, SQLITE } from './dialect.js';
import type { GroupCommit } from './group-commit.js';
import { pgUniqueViolation } from './postgres-rows.js';
import { uniqueViolation } from './sqlite-rows.js';
import type { Row } from './types.js';
import { DuplicateError, type SqlRunner } from './types.js';

export type { AtomicStep, SqlRunner } from './types.js';

class Rollback extends Error {}

export function sqliteRunner(db: Database.Database, writes: GroupCommit): SqlRunner {
  const stmts = new Map<string, Database.Statement>();
  const stmt = (sql: string): Database.Statement => {
    let s = stmts.get(sql);
    if (!s) {
      s = db.prepare(sql);
      if (stmts.size >= 200) stmts.delete(stmts.keys().next().value as string);
      stmts.set(sql, s);
    }
    return s;
  };
  const dup = (e: unknown, sql: string, args: readonly unknown[]): never => {
    const field = uniqueViolation(e);
    if (field) throw new DuplicateError(field, valueFor(sql, args, field));
    throw e;
  };
  return {
    dialect: SQLITE,
    read: async (sql, args = []) => stmt(sql).all(...args) as Row[],
    write: (sql, args = []) => writes.run(() => {
      try {
        const s = stmt(sql);
        return s.reader ? s.all(...args) as Row[] : (s.run(...args), []);
      } catch (e) {
        return dup(e, sql, args);
      }
    }),
    // Each group-commit op runs in its own savepoint, so throwing undoes exactly this list's statements.
    atomic: (steps) => writes.run(() => {
      for (const st of steps) {
        let changed: number;
        try {
          changed = stmt(st.sql).run(...st.args).changes;
        } catch (e) {
          return dup(e, st.sql, st.args);
        }
        if (st.required && changed === 0) throw new Rollback();
      }
      return true;
    }).catch((e: unknown) => {
      if (e instanceof Rollback) return false;
      throw e;
    }),
  };
}

export function postgresRunner(pool: pg.Pool): SqlRunner {
  const text = (sql: string): string => POSTGRES.placeholders(sql);
  const dup = (e: unknown, sql: string, args: readonly unknown[]): never => {
    const field = pgUniqueViolation(e);
    if (field) throw new DuplicateError(field, valueFor(sql, args, field));
    throw e;
  };
  return {
    dialect: POSTGRES,
    read: async (sql, args = []) => (await pool.query(text(sql), args as unknown[])).rows as Row[],
    write: async (sql, args = []) => {
      try {
        return (await pool.query(text(sql), args as unknown[])).rows as Row[];
      } catch (e) {
        return dup(e, sql, args);
      }
    },
    atomic: async (steps) => {
      const c = await pool.connect();
      try {
        await c.query('BEGIN');
        for (const st of steps) {
          let changed: number;
          try {
            // READ COMMITTED: a conditional UPDATE racing another on the same row waits for its commit and
            // re-checks its WHERE, so two transactions never both take one node.
            changed = (await c.query(text(st.sql), st.args as unknown[])).rowCount ?? 0;
          } catch (e) {
            await c.query('ROLLBACK').catch(() => undefined);
            return dup(e, st.sql, st.args);
          }
          if (st.required && changed === 0) {
            await c.query('ROLLBACK');
            return false;
          }
        }
        await c.query('COMMIT');
        return true;
      } catch (e) {
        await c.query('ROLLBACK').catch(() => undefined);
        throw e;
      } finally {
        c.release();
      }
    },
  };
}

/** The bound value of `field` in an INSERT/UPDATE, for DuplicateError's message. */
function valueFor(sql: string, args: readonly unknown[], field: string): string {
  const ins = /INSERT INTO \w+ \(([^)]*)\)/i.exec(sql);
  if (ins?.[1]) {
    const i = ins[1].split(',').map((s) => s.trim()).indexOf(field);
    if (i >= 0) return String(args[i]);
  }
  const set = /SET (.*?) WHERE/is.exec(sql);
  if (set?.[1]) {
    const cols = set[1].split(',').map((s) => s.trim());
    let n = 0;
    for (const c of cols) {
      const [name, val] = c.split('=').map((s) => s.trim());
      if (name === field && val === '?') return String(args[n]);
      if (val?.includes('?')) n++;
    }
  }
  return 'unknown';
}
