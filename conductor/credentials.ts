/**
 * First-start credentials for `http_basic`: when no htpasswd file is configured and `<data_dir>/htpasswd` does
 * not exist, a user `admin` with a random password is created. The hash goes to `<data_dir>/htpasswd`, the
 * password (once, for the operator, the demo and the tests) to `<data_dir>/admin-credentials.json`, both 0600;
 * the caller prints it once. `<data_dir>/openrc` (0600, rewritten each start) exports what the `baremetal` CLI
 * needs: OS_AUTH_TYPE, OS_USERNAME, OS_PASSWORD, OS_ENDPOINT and, with TLS, OS_CACERT.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import type { ConductorConfig } from './config.js';

export const ADMIN_USER = 'admin';
const BCRYPT_COST = 10;

export interface AdminCredentials {
  username: string;
  password: string;
}

export interface CredentialFiles {
  htpasswd: string;
  /** The generated password's file (absent when the operator brought an htpasswd file). */
  credentials: string;
  openrc: string;
}

export function credentialFiles(cfg: ConductorConfig): CredentialFiles {
  return {
    htpasswd: cfg.auth.htpasswd_file ?? join(cfg.data_dir, 'htpasswd'),
    credentials: join(cfg.data_dir, 'admin-credentials.json'),
    openrc: join(cfg.data_dir, 'openrc'),
  };
}

async function writePrivate(path: string, content: string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, content, { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, path);
}

export interface EnsuredAuth {
  /** The config with auth.htpasswd_file filled in. */
  config: ConductorConfig;
  /** Set when this call created the credentials (print them once). */
  created: (AdminCredentials & { file: string }) | undefined;
}

/** Fills in the default htpasswd file and creates it with a random admin password when it is absent. */
export async function ensureAdminCredentials(cfg: ConductorConfig): Promise<EnsuredAuth> {
  if (cfg.auth.strategy !== 'http_basic' || cfg.auth.htpasswd_file) return { config: cfg, created: undefined };
  const files = credentialFiles(cfg);
  const config: ConductorConfig = { ...cfg, auth: { ...cfg.auth, htpasswd_file: files.htpasswd } };
  if (existsSync(files.htpasswd)) return { config, created: undefined };
  await mkdir(cfg.data_dir, { recursive: true });
  // A leading '-' would make `baremetal --os-password <pw>` (the command the demo prints) read it as an option.
  const password = `p${randomBytes(18).toString('base64url')}`;
  const hash = await bcrypt.hash(password, BCRYPT_COST);
  // Credentials first: a crash in between leaves a password without its hash (retried), never the reverse.
  await writePrivate(files.credentials, `${JSON.stringify({ username: ADMIN_USER, password }, null, 1)}\n`);
  await writePrivate(files.htpasswd, `${ADMIN_USER}:${hash}\n`);
  return { config, created: { username: ADMIN_USER, password, file: files.credentials } };
}

/** The generated credentials, when this data dir has them. */
export async function readAdminCredentials(dataDir: string): Promise<AdminCredentials | undefined> {
  try {
    const j = JSON.parse(await readFile(join(dataDir, 'admin-credentials.json'), 'utf8')) as Partial<AdminCredentials>;
    return typeof j.username === 'string' && typeof j.password === 'string'
      ? { username: j.username, password: j.password } : undefined;
  } catch {
    return undefined;
  }
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** `<data_dir>/openrc` for `source`: the CLI's environment for this conductor (its password only if we made it). */
export async function writeOpenrc(cfg: ConductorConfig, url: string, caFile: string | undefined): Promise<string> {
  const files = credentialFiles(cfg);
  const lines = ['# baremetal-ts conductor: `source` this, then run `baremetal node list`', 'unset OS_CLOUD'];
  if (cfg.auth.strategy === 'noauth') {
    lines.push('export OS_AUTH_TYPE=none');
  } else if (cfg.auth.strategy === 'keystone') {
    lines.push('export OS_AUTH_TYPE=password', `export OS_AUTH_URL=${shellQuote(cfg.auth.keystone?.auth_url ?? '')}`,
      '# export OS_USERNAME=... OS_PASSWORD=... OS_PROJECT_NAME=... OS_USER_DOMAIN_ID=default OS_PROJECT_DOMAIN_ID=default');
  } else {
    const creds = await readAdminCredentials(cfg.data_dir);
    lines.push('export OS_AUTH_TYPE=http_basic', `export OS_USERNAME=${shellQuote(creds?.username ?? ADMIN_USER)}`);
    lines.push(creds ? `export OS_PASSWORD=${shellQuote(creds.password)}` : '# export OS_PASSWORD=... (htpasswd file of your own)');
  }
  lines.push(`export OS_ENDPOINT=${shellQuote(url)}`);
  if (caFile) lines.push(`export OS_CACERT=${shellQuote(caFile)}`);
  await mkdir(cfg.data_dir, { recursive: true });
  await writePrivate(files.openrc, `${lines.join('\n')}\n`);
  return files.openrc;
}
