/**
 * A throw-away Keystone (Debian's `keystone` package, 22.x) for tests: one process (its built-in wsgiref server,
 * not uwsgi: with SQLite uwsgi crashed in most runs) on a free 127.0.0.1 port, SQLite and fernet keys in a temp
 * dir, bootstrapped with an `admin` user/project/role (plus the bootstrap's member and reader roles) and its
 * catalog entry. stop() ends the server by its pid and removes the directory; a failed start stops it too.
 *
 *   const ks = await startKeystone();               // ~10 s: keystone-manage imports are slow
 *   t.after(() => ks.stop());
 *   const p = await ks.createProject('lessee1');
 *   const u = await ks.createUser('alice', 'pw', p.id, ['member']);
 *   const tok = await ks.token({ user: 'alice', password: 'pw', project: 'lessee1' });
 *
 * The recipe is /work/shared/services.md ("Keystone 22 ... as one process"). An empty `policy_dirs =` makes every
 * checked call a 500, so it points at an empty directory, and policy.yaml holds `{}` (the in-code defaults).
 */
import { createWriteStream, existsSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { have, run, spawnLong } from '../common/exec.js';

export interface KeystoneProject { id: string; name: string }
export interface KeystoneUser { id: string; name: string; password: string }

export interface LabKeystone {
  /** e.g. http://127.0.0.1:PORT/v3 (the identity endpoint in the catalog). */
  url: string;
  /** http://127.0.0.1:PORT (what OS_AUTH_URL may be given as; clients discover /v3). */
  authUrl: string;
  port: number;
  dir: string;
  pid: number;
  adminPassword: string;
  /** The bootstrap admin's project-scoped token (refreshed on demand). */
  adminToken(): Promise<string>;
  /** An authenticated Keystone API call as admin; throws on a non-2xx answer. */
  request(method: string, path: string, body?: unknown): Promise<Record<string, unknown>>;
  createProject(name: string): Promise<KeystoneProject>;
  /** A role by name, created if missing; returns its id. */
  ensureRole(name: string): Promise<string>;
  /** A user with a password and the given roles on a project. */
  createUser(name: string, password: string, projectId: string, roles: readonly string[]): Promise<KeystoneUser>;
  /** A catalog service + public/internal/admin endpoints (e.g. baremetal -> our conductor). */
  addEndpoint(type: string, name: string, url: string): Promise<void>;
  /** A project-scoped (or system-scoped: `system: true`) token for a user; returns the X-Subject-Token. */
  token(o: { user: string; password: string; project?: string; system?: boolean }): Promise<string>;
  stop(): Promise<void>;
  /** For process exit handlers: SIGKILL and remove the directory without waiting. */
  stopSync(): void;
}

export async function haveKeystone(): Promise<boolean> {
  return await have('keystone-manage') && await have('keystone-wsgi-public');
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

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function passwordAuth(user: string, password: string, scope: Record<string, unknown> | undefined): unknown {
  return {
    auth: {
      identity: { methods: ['password'], password: { user: { name: user, domain: { id: 'default' }, password } } },
      ...(scope ? { scope } : {}),
    },
  };
}

export async function startKeystone(): Promise<LabKeystone> {
  if (!(await haveKeystone())) throw new Error('keystone-manage / keystone-wsgi-public not found (apt-get install keystone)');
  const dir = await mkdtemp(join(tmpdir(), 'bmts-keystone-'));
  let pid = 0;
  let stopped = false;
  let child: ReturnType<typeof spawnLong> | undefined;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    if (pid && pidAlive(pid)) {
      try { process.kill(pid, 'SIGTERM'); } catch { /* gone already */ }
      for (let i = 0; i < 60 && pidAlive(pid); i++) await sleep(50);
      if (pidAlive(pid)) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
    if (child) await child.catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  };
  const stopSync = (): void => {
    if (stopped) return;
    stopped = true;
    if (pid) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    try { rmSync(dir, { recursive: true, force: true }); } catch { /* best effort while exiting */ }
  };
  try {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}/v3`;
    const adminPassword = `ks-${randomBytes(12).toString('hex')}`;
    const conf = join(dir, 'keystone.conf');
    await mkdir(join(dir, 'log'));
    await mkdir(join(dir, 'policy.d'));
    await writeFile(join(dir, 'policy.yaml'), '{}\n');
    await writeFile(conf, [
      '[DEFAULT]', `log_dir = ${join(dir, 'log')}`,
      '[database]', `connection = sqlite:///${join(dir, 'keystone.db')}`,
      '[token]', 'provider = fernet',
      '[fernet_tokens]', `key_repository = ${join(dir, 'fernet-keys')}`,
      '[fernet_receipts]', `key_repository = ${join(dir, 'fernet-keys')}`,
      '[credential]', `key_repository = ${join(dir, 'credential-keys')}`,
      '[oslo_policy]', `policy_file = ${join(dir, 'policy.yaml')}`, `policy_dirs = ${join(dir, 'policy.d')}`,
      '',
    ].join('\n'));
    const km = (args: string[]): ReturnType<typeof run> =>
      run('keystone-manage', ['--config-file', conf, ...args], { timeoutMs: 120_000, quiet: true });
    const owner = ['--keystone-user', 'root', '--keystone-group', 'root'];
    const uid = process.getuid?.() ?? 0;
    if (uid !== 0) {
      // keystone-manage chowns the key repositories to the named user: as non-root, name ourselves.
      const who = (await run('id', ['-un'], { quiet: true })).stdout.trim();
      const grp = (await run('id', ['-gn'], { quiet: true })).stdout.trim();
      owner.splice(0, owner.length, '--keystone-user', who, '--keystone-group', grp);
    }
    // The key set-ups touch no database: run them beside db_sync (each call is ~3 s of Python imports).
    await Promise.all([km(['db_sync']), km(['fernet_setup', ...owner]), km(['credential_setup', ...owner])]);
    // WAL (a property of the database file, so set once here): keystone's wsgiref process holds pooled SQLite
    // connections, and in rollback-journal mode a reader left open on one of them made writes on another fail with
    // "database is locked" (a 500) now and then. With WAL readers never block the writer.
    await run('/usr/bin/python3', ['-c', 'import sqlite3,sys; sqlite3.connect(sys.argv[1]).execute("pragma journal_mode=wal")',
      join(dir, 'keystone.db')], { quiet: true, timeoutMs: 30_000 });
    await run('keystone-manage', ['--config-file', conf, 'bootstrap', '--bootstrap-password', adminPassword,
      '--bootstrap-username', 'admin', '--bootstrap-project-name', 'admin', '--bootstrap-role-name', 'admin',
      '--bootstrap-region-id', 'RegionOne', '--bootstrap-admin-url', url, '--bootstrap-internal-url', url,
      '--bootstrap-public-url', url], { timeoutMs: 120_000, quiet: true, redactArgs: [3] });
    child = spawnLong('keystone-wsgi-public', ['--host', '127.0.0.1', '--port', String(port)], {
      env: { OS_KEYSTONE_CONFIG_FILES: conf }, cwd: dir,
    });
    child.catch(() => undefined);
    // wsgiref prints request lines and the tracebacks of failed requests on stderr: keep them for debugging.
    const serverLog = createWriteStream(join(dir, 'log', 'server.log'));
    child.stderr?.pipe(serverLog);
    child.stdout?.pipe(serverLog);
    pid = child.pid ?? 0;
    // Ready when /v3 answers; the server itself logs to stderr, which we do not keep.
    let ready = false;
    for (let i = 0; i < 300 && !ready; i++) {
      if (child.exitCode !== null) throw new Error(`keystone-wsgi-public exited with ${String(child.exitCode)}`);
      try {
        ready = (await fetch(url, { signal: AbortSignal.timeout(2000) })).ok;
      } catch { /* not listening yet */ }
      if (!ready) await sleep(100);
    }
    if (!ready) throw new Error(`Keystone did not answer on ${url}`);

    const tokenFor = async (body: unknown): Promise<{ token: string; expires: number }> => {
      const r = await fetch(`${url}/auth/tokens`, {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
      });
      const text = await r.text();
      if (r.status !== 201) throw new Error(`Keystone token request: ${r.status} ${text.slice(0, 300)}`);
      const exp = (JSON.parse(text) as { token: { expires_at: string } }).token.expires_at;
      return { token: r.headers.get('x-subject-token') ?? '', expires: Date.parse(exp) };
    };
    let admin: { token: string; expires: number } | undefined;
    const adminToken = async (): Promise<string> => {
      if (!admin || admin.expires - Date.now() < 60_000) {
        admin = await tokenFor(passwordAuth('admin', adminPassword, { project: { name: 'admin', domain: { id: 'default' } } }));
      }
      return admin.token;
    };
    const request = async (method: string, path: string, body?: unknown): Promise<Record<string, unknown>> => {
      const r = await fetch(`${url}${path}`, {
        method,
        headers: { 'x-auth-token': await adminToken(), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      const text = await r.text();
      if (r.status >= 300) throw new Error(`Keystone ${method} ${path}: ${r.status} ${text.slice(0, 300)}`);
      return text ? JSON.parse(text) as Record<string, unknown> : {};
    };
    const roleIds = new Map<string, string>();
    const ensureRole = async (name: string): Promise<string> => {
      const known = roleIds.get(name);
      if (known) return known;
      const found = (await request('GET', `/roles?name=${encodeURIComponent(name)}`)).roles as { id: string }[];
      const id = found[0]?.id ?? ((await request('POST', '/roles', { role: { name } })).role as { id: string }).id;
      roleIds.set(name, id);
      return id;
    };
    return {
      url, authUrl: `http://127.0.0.1:${port}`, port, dir, pid, adminPassword, adminToken, request, ensureRole, stop, stopSync,
      createProject: async (name) => {
        const p = (await request('POST', '/projects', { project: { name, domain_id: 'default' } })).project as KeystoneProject;
        return { id: p.id, name: p.name };
      },
      createUser: async (name, password, projectId, roles) => {
        const u = (await request('POST', '/users', { user: { name, password, domain_id: 'default' } })).user as { id: string };
        for (const role of roles) {
          await request('PUT', `/projects/${projectId}/users/${u.id}/roles/${await ensureRole(role)}`);
        }
        return { id: u.id, name, password };
      },
      addEndpoint: async (type, name, endpointUrl) => {
        const s = (await request('POST', '/services', { service: { type, name } })).service as { id: string };
        for (const iface of ['public', 'internal', 'admin']) {
          await request('POST', '/endpoints', { endpoint: { service_id: s.id, interface: iface, url: endpointUrl, region_id: 'RegionOne' } });
        }
      },
      token: async (o) => (await tokenFor(passwordAuth(o.user, o.password, o.system ? { system: { all: true } }
        : o.project ? { project: { name: o.project, domain: { id: 'default' } } } : undefined))).token,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** True when a previous run left nothing behind in `dir` (for tests of the fixture's own clean-up). */
export function keystoneDirGone(dir: string): boolean {
  return !existsSync(dir);
}
