/**
 * Group commit for the SQLite store: writes issued during one turn of the event loop run together in one
 * transaction at the end of the turn (setImmediate), each in its own savepoint, so a failing write (a unique
 * violation, say) undoes only itself. Callers get their result only after the COMMIT, so a 201 still means
 * "stored". Concurrent requests then share one WAL commit instead of paying one each: measured on this
 * machine, 0.35 ms per autocommitted insert against 0.06 ms per insert in batches of 16.
 *
 * Writes keep their issue order, so a conditional write (a reservation) sees every write issued before it.
 * Reads run at once and see only committed writes, which is what they saw before for writes whose promise
 * had not resolved yet.
 */
import type Database from 'better-sqlite3';

interface Op {
  run(): unknown;
  resolve(v: unknown): void;
  reject(e: unknown): void;
}

export class GroupCommit {
  private pending: Op[] = [];
  private readonly savepoint: (fn: () => unknown) => unknown;
  private readonly batch: Database.Transaction<(ops: Op[], out: { ok: boolean; v: unknown }[]) => void>;

  constructor(db: Database.Database) {
    this.savepoint = db.transaction((fn: () => unknown) => fn());
    this.batch = db.transaction((ops: Op[], out: { ok: boolean; v: unknown }[]) => {
      for (const op of ops) {
        try {
          out.push({ ok: true, v: this.savepoint(() => op.run()) });
        } catch (e) {
          out.push({ ok: false, v: e });
        }
      }
    });
  }

  /** Runs `fn` (synchronous statements) in the next group transaction. */
  run<T>(fn: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ run: fn, resolve: resolve as (v: unknown) => void, reject });
      if (this.pending.length === 1) setImmediate(() => this.flush());
    });
  }

  /** Commits what is pending now (also before the database is closed). */
  flush(): void {
    const ops = this.pending;
    if (ops.length === 0) return;
    this.pending = [];
    const out: { ok: boolean; v: unknown }[] = [];
    try {
      // BEGIN IMMEDIATE: with several conductor processes on one file, a deferred transaction that reads first
      // cannot upgrade to a writer once another process has committed (SQLITE_BUSY, no busy wait).
      this.batch.immediate(ops, out);
    } catch (e) {
      for (const op of ops) op.reject(e);
      return;
    }
    ops.forEach((op, i) => {
      const r = out[i];
      if (r?.ok) op.resolve(r.v);
      else op.reject(r?.v);
    });
  }
}
