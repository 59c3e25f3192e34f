/**
 * A config drive given as a dictionary ({meta_data, user_data, network_data, vendor_data}, API 1.56) is built here,
 * as Ironic does, into what the agent expects: an ISO9660 image labelled `config-2` holding
 * openstack/latest/{meta_data.json, user_data, network_data.json, vendor_data2.json}, gzipped and base64-encoded
 * (agent/image/configdrive.ts unpacks it). The ISO comes from genisoimage or mkisofs through common/exec.ts;
 * without either the request is refused, never accepted and failed later.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { have, run } from '../../common/exec.js';
import { errorMessage } from '../../common/errors.js';
import { InvalidParameterValue } from '../errors.js';

const KEYS = ['meta_data', 'user_data', 'network_data', 'vendor_data'] as const;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Checks the dictionary's shape (400 on anything else). */
export function validateConfigDriveDict(cd: Record<string, unknown>): void {
  const unknown = Object.keys(cd).filter((k) => !(KEYS as readonly string[]).includes(k));
  if (unknown.length) {
    throw new InvalidParameterValue(`Invalid config drive: unexpected keys ${unknown.join(', ')}; allowed are ${KEYS.join(', ')}.`);
  }
  for (const k of ['meta_data', 'network_data', 'vendor_data'] as const) {
    if (cd[k] !== undefined && cd[k] !== null && !isObject(cd[k])) {
      throw new InvalidParameterValue(`Invalid config drive: ${k} must be a dictionary.`);
    }
  }
  const ud = cd.user_data;
  if (ud !== undefined && ud !== null && typeof ud !== 'string' && typeof ud !== 'object') {
    throw new InvalidParameterValue('Invalid config drive: user_data must be a string, a dictionary or a list.');
  }
}

async function isoTool(): Promise<string | null> {
  for (const t of ['genisoimage', 'mkisofs']) if (await have(t)) return t;
  return null;
}

/** Builds the gzip+base64 ISO9660 config drive for a dictionary; InvalidParameterValue when it cannot. */
export async function buildConfigDrive(cd: Record<string, unknown>, node: { uuid: string; name: string | null }):
  Promise<string> {
  validateConfigDriveDict(cd);
  const tool = await isoTool();
  if (!tool) {
    throw new InvalidParameterValue('A config drive given as a dictionary needs genisoimage or mkisofs on the ' +
      'conductor host; pass a built config drive (gzip+base64 ISO or URL) instead.');
  }
  const work = await mkdtemp(join(tmpdir(), 'bmts-configdrive-'));
  try {
    const dir = join(work, 'root', 'openstack', 'latest');
    await mkdir(dir, { recursive: true });
    // As Ironic: the node's UUID (and name) unless the caller's meta_data has its own.
    const meta = { uuid: node.uuid, ...(node.name ? { name: node.name } : {}), ...(isObject(cd.meta_data) ? cd.meta_data : {}) };
    await writeFile(join(dir, 'meta_data.json'), JSON.stringify(meta));
    if (cd.user_data !== undefined && cd.user_data !== null) {
      await writeFile(join(dir, 'user_data'), typeof cd.user_data === 'string' ? cd.user_data : JSON.stringify(cd.user_data));
    }
    if (isObject(cd.network_data)) await writeFile(join(dir, 'network_data.json'), JSON.stringify(cd.network_data));
    if (isObject(cd.vendor_data)) await writeFile(join(dir, 'vendor_data2.json'), JSON.stringify(cd.vendor_data));
    const iso = join(work, 'configdrive.iso');
    try {
      await run(tool, ['-o', iso, '-ldots', '-allow-lowercase', '-allow-multidot', '-l', '-quiet', '-J', '-r',
        '-V', 'config-2', join(work, 'root')], { timeoutMs: 60_000, quiet: true });
    } catch (e) {
      throw new InvalidParameterValue(`Could not build the config drive: ${errorMessage(e)}`);
    }
    return gzipSync(await readFile(iso)).toString('base64');
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
