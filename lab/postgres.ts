/**
 * A throw-away PostgreSQL 15 cluster for tests and benchmarks: initdb into a temp dir, the server on a free
 * 127.0.0.1 port (its Unix socket in the same dir), one database per test made with CREATE DATABASE ... TEMPLATE
 * (a file copy, much cheaper than a cluster), and stop() that ends the server by its pid and removes everything.
 * initdb refuses root, so as root every server command runs as the `postgres` system user (Debian's package
 * creates it) on a directory that user owns.
 *
 *   const pg = await startPostgres();            // one per test file
 *   t.after(() => pg.stop());
 *   const url = await pg.createDatabase();       // postgresql://postgres@127.0.0.1:PORT/bmts_1, empty
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { chmod, chown, mkdtemp, rm, stat } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { run } from '../common/exec.js';

/** Debian's PostgreSQL 15 server binaries (package postgresql-15). */
export const PG_BIN = '/usr/lib/postgresql/15/bin';

export interface LabPostgresOptions {
  /**
   * fsync, synchronous_commit and full-page writes off: for tests, whose data dies with the cluster and which
   * check what a conductor commits, not what survives a power cut. Benchmarks keep the defaults (durable).
   */
  fast?: boolean;
  /** Extra `-c name=value` server settings. */
  settings?: Record<string, string | number>;
}

export interface LabPostgres {
  host: '127.0.0.1';
  port: number;
  dir: string;
  /** The postmaster's pid (what stop() ends). */
  pid: number;
  /** URL of a database (default `postgres`). */
  url(database?: string): string;
  /** A new empty database (copied from `template`, default template0); returns its URL. */
  createDatabase(name?: string, template?: string): Promise<string>;
  dropDatabase(name: string): Promise<void>;
  /** One SQL statement against a database as the superuser (test assertions, set-up). */
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(database: string, sql: string, params?: unknown[]):
    Promise<R[]>;
  /** Ends the server (by pid, immediate) and removes the directory; safe to call twice. */
  stop(): Promise<void>;
  /** stop() for a process that is exiting: SIGKILL to the server, the directory removed, no waiting. */
  stopSync(): void;
}

export function havePostgres(): boolean {
  return existsSync(join(PG_BIN, 'initdb')) && existsSync(join(PG_BIN, 'pg_ctl'));
}

async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => res(port));
    });
  });
}

function asRoot(): boolean {
  return process.getuid?.() === 0;
}

/** Runs a server binary as `postgres` when we are root (initdb and postgres refuse root), else as ourselves. */
function pgRun(bin: string, args: string[], timeoutMs = 60_000): ReturnType<typeof run> {
  const file = join(PG_BIN, bin);
  return asRoot() ? run('runuser', ['-u', 'postgres', '--', file, ...args], { timeoutMs, quiet: true })
    : run(file, args, { timeoutMs, quiet: true });
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

let dbCounter = 0;

export async function startPostgres(opts: LabPostgresOptions = {}): Promise<LabPostgres> {
  if (!havePostgres()) throw new Error(`PostgreSQL server binaries not found in ${PG_BIN} (apt-get install postgresql)`);
  const dir = await mkdtemp(join(tmpdir(), 'bmts-pg-'));
  const data = join(dir, 'data');
  let pid = 0;
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    if (!pid && existsSync(join(data, 'postmaster.pid'))) {
      pid = Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0]) || 0;
    }
    if (pid && pidAlive(pid)) {
      // SIGQUIT is PostgreSQL's immediate shutdown: children exit at once, nothing is flushed (nothing needs to be).
      try { process.kill(pid, 'SIGQUIT'); } catch { /* gone already */ }
      for (let i = 0; i < 100 && pidAlive(pid); i++) await sleep(50);
      if (pidAlive(pid)) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    // The server runs as `postgres`: it must own its directory and reach it through the parents. A test run's
    // TMPDIR (scripts/test-runner/sweep.ts) is 0700: give its parents the search bit only (no listing, no writes).
    await chmod(dir, 0o755);
    for (let p = dirname(dir); p !== dirname(p) && basename(p).startsWith('bmts-'); p = dirname(p)) {
      const mode = (await stat(p)).mode & 0o7777;
      if ((mode & 0o001) === 0) await chmod(p, mode | 0o001);
    }
    if (asRoot()) {
      const u = Number((await run('id', ['-u', 'postgres'], { quiet: true })).stdout.trim());
      const g = Number((await run('id', ['-g', 'postgres'], { quiet: true })).stdout.trim());
      await chown(dir, u, g);
    }
    const superuser = asRoot() ? 'postgres' : userInfo().username;
    await pgRun('initdb', ['-D', data, '-A', 'trust', '-U', superuser, '-E', 'UTF8', '--locale=C', '--no-sync']);
    const settings: Record<string, string | number> = {
      listen_addresses: '127.0.0.1', unix_socket_directories: dir, max_connections: 200, shared_buffers: '32MB',
      ...(opts.fast ? { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off' } : {}),
      ...(opts.settings ?? {}),
    };
    let port = 0;
    for (let attempt = 0; ; attempt++) {
      port = await freePort();
      const o = [`-p ${port}`, ...Object.entries(settings).map(([k, v]) => `-c ${k}=${String(v)}`)].join(' ');
      try {
        await pgRun('pg_ctl', ['-D', data, '-l', join(dir, 'log'), '-w', '-t', '60', '-o', o, 'start']);
        break;
      } catch (e) {
        // Another process may have taken the port between freePort() and the bind: try another one.
        if (attempt >= 2) throw e;
      }
    }
    pid = Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
    const url = (database = 'postgres'): string =>
      `postgresql://${encodeURIComponent(superuser)}@127.0.0.1:${port}/${encodeURIComponent(database)}`;
    const query = async <R extends pg.QueryResultRow>(database: string, sql: string, params: unknown[] = []):
      Promise<R[]> => {
      const c = new pg.Client({ connectionString: url(database) });
      await c.connect();
      try {
        return (await c.query<R>(sql, params)).rows;
      } finally {
        await c.end();
      }
    };
    const ident = (s: string): string => `"${s.replace(/"/g, '""')}"`;
    const stopSync = (): void => {
      if (stopped) return;
      stopped = true;
      // Its backends notice the postmaster's death and exit on their own.
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone already */ }
      try { rmSync(dir, { recursive: true, force: true }); } catch { /* best effort while exiting */ }
    };
    return {
      host: '127.0.0.1', port, dir, pid, url, query, stop, stopSync,
      createDatabase: async (name = `bmts_${process.pid}_${++dbCounter}`, template = 'template0') => {
        await query('postgres', `CREATE DATABASE ${ident(name)} TEMPLATE ${ident(template)} STRATEGY FILE_COPY`);
        return url(name);
      },
      dropDatabase: async (name) => {
        await query('postgres', `DROP DATABASE IF EXISTS ${ident(name)} WITH (FORCE)`);
      },
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
