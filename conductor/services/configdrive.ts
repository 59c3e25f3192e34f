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

/**
 * Ironic's _CONFIG_DRIVE_SCHEMA (api/controllers/v1/utils.py): meta_data, network_data and vendor_data objects,
 * user_data an object, a list, a string or null, nothing else; 400 "Invalid configdrive format: ..." otherwise.
 */
export function validateConfigDriveDict(cd: Record<string, unknown>): void {
  const unknown = Object.keys(cd).filter((k) => !(KEYS as readonly string[]).includes(k));
  if (unknown.length) {
    throw new InvalidParameterValue(`Invalid configdrive format: Additional properties are not allowed ` +
      `(${unknown.map((k) => `'${k}'`).join(', ')} ${unknown.length > 1 ? 'were' : 'was'} unexpected); the config drive keys are ${KEYS.join(', ')}.`);
  }
  for (const k of ['meta_data', 'network_data', 'vendor_data'] as const) {
    if (k in cd && !isObject(cd[k])) {
      throw new InvalidParameterValue(`Invalid configdrive format: ${JSON.stringify(cd[k])} is not of type 'object' (config drive ${k}).`);
    }
  }
  const ud = cd.user_data;
  if (ud !== undefined && ud !== null && typeof ud !== 'string' && typeof ud !== 'object') {
    throw new InvalidParameterValue(`Invalid configdrive format: ${JSON.stringify(ud)} is not of type 'object', 'array', ` +
      `'string', 'null' (config drive user_data).`);
  }
}

/** Base64 with the whitespace Ironic tolerates; anything else that is not a URL is refused (utils.py _B64_ALPHABET). */
const B64 = /^[A-Za-z0-9+/=\n\r\t ]*$/;

/**
 * Ironic's check_allow_configdrive for PUT .../states/provision: empty means none; only with target active (and
 * rebuild from 1.35); a dictionary from 1.56, its vendor_data from 1.59 (400, not 406, as Ironic); a string must be
 * a URL or base64.
 */
export function checkConfigDriveRequest(target: string, configdrive: unknown, apiMinor: number): void {
  if (!configdrive) return;
  const targets = apiMinor >= 35 ? ['active', 'rebuild'] : ['active'];
  if (!targets.includes(target)) {
    throw new InvalidParameterValue(`Adding a config drive is only supported when setting provision state to ${targets.join(', ')}`);
  }
  if (isObject(configdrive)) {
    validateConfigDriveDict(configdrive);
    if (apiMinor < 56) {
      throw new InvalidParameterValue('Providing a JSON object for configdrive is only supported starting with API version 1.56');
    }
    if ('vendor_data' in configdrive && apiMinor < 59) {
      throw new InvalidParameterValue('Providing vendor_data in configdrive is only supported starting with API version 1.59');
    }
    return;
  }
  if (typeof configdrive !== 'string') {
    throw new InvalidParameterValue(`Invalid configdrive format: ${JSON.stringify(configdrive)} is not valid under any of the given schemas`);
  }
  if (configdrive.includes('://')) return;
  if (!B64.test(configdrive)) {
    throw new InvalidParameterValue('Invalid configdrive format: it is neither a JSON, nor a URL, nor a base64 string');
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
    // As Ironic's build_configdrive: the node's UUID (and name) unless the caller's meta_data has its own; user_data
    // as given when a string, JSON when a dict or list; openstacksdk's layout: every file under both metadata
    // versions it writes (2012-08-10 and latest), empty network_data/vendor_data/user_data left out.
    const meta = { ...(isObject(cd.meta_data) ? cd.meta_data : {}) };
    if (meta.uuid === undefined) meta.uuid = node.uuid;
    if (node.name && meta.name === undefined) meta.name = node.name;
    const ud = cd.user_data;
    const userData = typeof ud === 'string' ? (ud || undefined) : ud !== null && typeof ud === 'object' ? JSON.stringify(ud) : undefined;
    const nonEmpty = (v: unknown): v is Record<string, unknown> => isObject(v) && Object.keys(v).length > 0;
    for (const version of ['2012-08-10', 'latest']) {
      const dir = join(work, 'root', 'openstack', version);
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, 'meta_data.json'), JSON.stringify(meta));
      if (userData !== undefined) await writeFile(join(dir, 'user_data'), userData);
      if (nonEmpty(cd.network_data)) await writeFile(join(dir, 'network_data.json'), JSON.stringify(cd.network_data));
      if (nonEmpty(cd.vendor_data)) await writeFile(join(dir, 'vendor_data2.json'), JSON.stringify(cd.vendor_data));
    }
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
