/**
 * The internal RPC's shared secret: conductor.rpc_secret, else the file conductor.rpc_secret_file, else
 * <data_dir>/rpc-secret, created (mode 0600, 32 random bytes) on first start. Conductors that share a database
 * must be given the same secret (the same value or a copy of the file).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError, errorMessage } from '../../common/errors.js';
import type { ConductorConfig } from '../config.js';

export async function rpcSecret(config: ConductorConfig): Promise<string> {
  const cc = config.conductor;
  if (cc.rpc_secret) return cc.rpc_secret;
  const file = cc.rpc_secret_file ?? join(config.data_dir, 'rpc-secret');
  try {
    const text = (await readFile(file, 'utf8')).trim();
    if (text.length < 16) throw new ConfigError(`conductor.rpc_secret_file ${file}: shorter than 16 characters`);
    return text;
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    if ((e as { code?: string }).code !== 'ENOENT' || cc.rpc_secret_file) {
      throw new ConfigError(`cannot read the RPC secret ${file}: ${errorMessage(e)}`);
    }
  }
  const secret = randomBytes(32).toString('base64url');
  await mkdir(config.data_dir, { recursive: true });
  await writeFile(file, `${secret}\n`, { mode: 0o600, flag: 'wx' }).catch(async (e: unknown) => {
    // Another conductor on the same data dir wrote it first: use theirs.
    if ((e as { code?: string }).code !== 'EEXIST') throw e;
  });
  return (await readFile(file, 'utf8')).trim();
}
