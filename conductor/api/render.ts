/**
 * Node, port and driver JSON as Ironic 21.4 renders them: fields hidden below their microversion, secrets
 * masked, links built from the public base URL.
 */
import { InvalidParameterValue, NotAcceptable } from '../errors.js';
import { maskSecrets } from '../../common/secrets.js';
import { JSON_FIELDS, type NodeJsonSpec, type NodeRecord, type PortRecord } from '../store/types.js';

type Obj = Record<string, unknown>;
export const MASK = '******';

/** Minimum microversion of each node field (Ironic's VERSIONED_FIELDS); absent = always there. */
const NODE_FIELD_VERSIONS: Readonly<Record<string, number>> = {
  driver_internal_info: 3, name: 5, inspection_finished_at: 6, inspection_started_at: 6, clean_step: 7,
  raid_config: 12, target_raid_config: 12, network_interface: 20, resource_class: 21, storage_interface: 33,
  traits: 37, rescue_interface: 38, bios_interface: 40, fault: 42, deploy_step: 44, conductor_group: 46,
  automated_clean: 47, protected: 48, protected_reason: 48, conductor: 49, owner: 50, description: 51,
  allocation_uuid: 52, retired: 61, retired_reason: 61, lessee: 65, network_data: 66, boot_mode: 75,
  secure_boot: 75, shard: 82,
  boot_interface: 31, console_interface: 31, deploy_interface: 31, inspect_interface: 31, management_interface: 31,
  power_interface: 31, raid_interface: 31, vendor_interface: 31,
};

export const NODE_FIELDS: readonly string[] = [
  'allocation_uuid', 'automated_clean', 'bios_interface', 'boot_interface', 'boot_mode', 'chassis_uuid', 'clean_step',
  'conductor', 'conductor_group', 'console_enabled', 'console_interface', 'created_at', 'deploy_interface',
  'deploy_step', 'description', 'driver', 'driver_info', 'driver_internal_info', 'extra', 'fault',
  'inspect_interface', 'inspection_finished_at', 'inspection_started_at', 'instance_info', 'instance_uuid',
  'last_error', 'lessee', 'maintenance', 'maintenance_reason', 'management_interface', 'name', 'network_data',
  'network_interface', 'owner', 'power_interface', 'power_state', 'properties', 'protected', 'protected_reason',
  'provision_state', 'provision_updated_at', 'raid_config', 'raid_interface', 'rescue_interface', 'reservation',
  'resource_class', 'retired', 'retired_reason', 'secure_boot', 'shard', 'storage_interface', 'target_power_state',
  'target_provision_state', 'target_raid_config', 'traits', 'updated_at', 'uuid', 'vendor_interface',
];
const NODE_FIELD_SET = new Set(NODE_FIELDS);

/**
 * Substrings of stored JSON that may need masking (SQL LIKE hints for the store, and a cheap pre-check):
 * every word SECRET_KEY_RE and maskText look for, and `@` for URL userinfo.
 */
const SECRET_WORDS = ['pass', 'secret', 'token', 'credential', 'configdrive', 'fernet', 'authori', 'key', '@'];
const SECRET_RE = new RegExp(SECRET_WORDS.join('|'), 'i');

/** Recursive: nested dicts and URL userinfo too (conductor/secrets.ts). */
function maskDict(d: Obj): Obj {
  return maskSecrets(d);
}

export function links(base: string, resource: string, id = ''): Obj[] {
  const suffix = id ? `/${id}` : '/';
  return [{ href: `${base}/v1/${resource}${suffix}`, rel: 'self' }, { href: `${base}/${resource}${suffix}`, rel: 'bookmark' }];
}

/** Parses `fields=` for nodes: unknown -> 400, newer than the request's microversion -> 406. */
export function parseNodeFields(raw: string | undefined, minor: number): string[] | undefined {
  if (raw === undefined) return undefined;
  if (minor < 8) throw new NotAcceptable();
  const fields = raw.split(',').map((f) => f.trim()).filter(Boolean);
  const bad = fields.filter((f) => !NODE_FIELD_SET.has(f));
  if (bad.length) throw new InvalidParameterValue(`Field(s) "${bad.join(', ')}" are not valid`);
  for (const f of fields) if ((NODE_FIELD_VERSIONS[f] ?? 0) > minor) throw new NotAcceptable();
  return fields;
}

export interface NodeRenderOptions {
  minor: number;
  base: string;
  /** Only these fields (plus uuid for the links-less `fields` form). */
  fields?: readonly string[];
  /** The conductor name shown in `conductor` (null when no conductor can take the node). */
  conductor: string | null;
}

function nodeValue(node: NodeRecord, field: string, conductor: string | null): unknown {
  switch (field) {
    case 'driver_info': return maskDict(node.driver_info);
    case 'instance_info': return maskDict(node.instance_info);
    case 'driver_internal_info': return maskInternalDict(node.driver_internal_info);
    case 'conductor': return conductor;
    default: return (node as unknown as Obj)[field] ?? null;
  }
}

export function renderNode(node: NodeRecord, o: NodeRenderOptions): Obj {
  const out: Obj = {};
  const wanted = o.fields ?? NODE_FIELDS;
  for (const f of wanted) {
    if ((NODE_FIELD_VERSIONS[f] ?? 0) > o.minor) continue;
    out[f] = nodeValue(node, f, o.conductor);
  }
  if (o.fields === undefined) {
    out.links = links(o.base, 'nodes', node.uuid);
    out.ports = links(o.base, 'nodes', `${node.uuid}/ports`);
    if (o.minor >= 14) out.states = links(o.base, 'nodes', `${node.uuid}/states`);
    if (o.minor >= 24) out.portgroups = links(o.base, 'nodes', `${node.uuid}/portgroups`);
    if (o.minor >= 32) out.volume = links(o.base, 'nodes', `${node.uuid}/volume`);
  }
  return out;
}

const BOOL_FIELDS = new Set(['maintenance', 'console_enabled', 'automated_clean', 'protected', 'retired', 'secure_boot']);
const JSON_TEXT_FIELDS = new Set(['traits', ...JSON_FIELDS]);

/** Recent maskedJson results: driver_info rarely changes, and nearly every one holds a password. */
const maskMemo = new Map<string, string>();
let maskMemoChars = 0;

/** maskDict on stored JSON text; the text itself when nothing is masked. */
function maskedJson(raw: string): string {
  if (!SECRET_RE.test(raw)) return raw;
  const hit = maskMemo.get(raw);
  if (hit !== undefined) return hit;
  const d = JSON.parse(raw) as Obj;
  const m = maskDict(d);
  const out = m === d ? raw : JSON.stringify(m);
  if (raw.length <= 2048) {
    // ~4 MiB at most (two-byte chars); starting afresh is cheap, entries are re-made on the next list.
    if (maskMemoChars > 2 ** 20) {
      maskMemo.clear();
      maskMemoChars = 0;
    }
    maskMemo.set(raw, out);
    maskMemoChars += raw.length + out.length;
  }
  return out;
}

/** driver_internal_info keys holding secrets: the agent token, the iscsi deploy's CHAP secret while it writes. */
const INTERNAL_SECRETS = ['agent_secret_token', 'iscsi_chap_password'];

function maskInternalDict(d: Obj): Obj {
  if (!INTERNAL_SECRETS.some((k) => k in d)) return d;
  const out = { ...d };
  for (const k of INTERNAL_SECRETS) if (k in out) out[k] = MASK;
  return out;
}

function maskedInternal(raw: string): string {
  const d = JSON.parse(raw) as Obj;
  return INTERNAL_SECRETS.some((k) => k in d) ? JSON.stringify(maskInternalDict(d)) : raw;
}

const MASKERS: NodeJsonSpec['maskers'] = {
  driver_info: { hints: SECRET_WORDS, mask: maskedJson },
  instance_info: { hints: SECRET_WORDS, mask: maskedJson },
  driver_internal_info: { hints: INTERNAL_SECRETS, mask: maskedInternal },
};

/**
 * What the store renders for each item of a node list: renderNode's output (detail, or `fields`), or
 * renderNodeBrief's (`brief`), as JSON text. The API tests compare detail lists with per-node shows.
 */
export function nodeListSpec(o: { minor: number; base: string; fields?: readonly string[]; brief?: boolean;
  conductor: NodeJsonSpec['conductor'] }): NodeJsonSpec {
  const common = { base: o.base, conductor: o.conductor, maskers: MASKERS };
  if (o.brief) {
    const names = ['uuid', ...(o.minor >= 5 ? ['name'] : []), 'instance_uuid', 'power_state', 'provision_state'];
    return { ...common, fields: [...names.map((name) => ({ name, fmt: 'scalar' as const })),
      { name: 'maintenance', fmt: 'bool' }], links: [['links', '']] };
  }
  const fields = (o.fields ?? NODE_FIELDS).filter((f) => (NODE_FIELD_VERSIONS[f] ?? 0) <= o.minor).map((name) => ({
    name,
    fmt: name === 'conductor' ? 'conductor' as const : BOOL_FIELDS.has(name) ? 'bool' as const
      : JSON_TEXT_FIELDS.has(name) ? 'json' as const : 'scalar' as const,
  }));
  const links: [string, string][] = [];
  if (o.fields === undefined) {
    links.push(['links', ''], ['ports', '/ports']);
    if (o.minor >= 14) links.push(['states', '/states']);
    if (o.minor >= 24) links.push(['portgroups', '/portgroups']);
    if (o.minor >= 32) links.push(['volume', '/volume']);
  }
  return { ...common, fields, links };
}

/** The short list form (no `fields`, no `detail`). */
export function renderNodeBrief(node: NodeRecord, o: { minor: number; base: string }): Obj {
  const out: Obj = { uuid: node.uuid };
  if (o.minor >= 5) out.name = node.name;
  out.instance_uuid = node.instance_uuid;
  out.power_state = node.power_state;
  out.provision_state = node.provision_state;
  out.maintenance = node.maintenance;
  out.links = links(o.base, 'nodes', node.uuid);
  return out;
}

export function renderStates(node: NodeRecord, minor: number): Obj {
  const out: Obj = {
    console_enabled: node.console_enabled, last_error: node.last_error, power_state: node.power_state,
    provision_state: node.provision_state, provision_updated_at: node.provision_updated_at,
    target_power_state: node.target_power_state, target_provision_state: node.target_provision_state,
  };
  if (minor >= 12) { out.raid_config = node.raid_config; out.target_raid_config = node.target_raid_config; }
  if (minor >= 75) { out.boot_mode = node.boot_mode; out.secure_boot = node.secure_boot; }
  return out;
}

const PORT_FIELD_VERSIONS: Readonly<Record<string, number>> = {
  internal_info: 18, local_link_connection: 19, pxe_enabled: 19, portgroup_uuid: 24, physical_network: 34,
  is_smartnic: 53,
};
export const PORT_FIELDS: readonly string[] = ['uuid', 'address', 'created_at', 'extra', 'internal_info',
  'is_smartnic', 'local_link_connection', 'node_uuid', 'physical_network', 'portgroup_uuid', 'pxe_enabled',
  'updated_at'];
const PORT_FIELD_SET = new Set(PORT_FIELDS);

export function parsePortFields(raw: string | undefined, minor: number): string[] | undefined {
  if (raw === undefined) return undefined;
  if (minor < 8) throw new NotAcceptable();
  const fields = raw.split(',').map((f) => f.trim()).filter(Boolean);
  const bad = fields.filter((f) => !PORT_FIELD_SET.has(f));
  if (bad.length) throw new InvalidParameterValue(`Field(s) "${bad.join(', ')}" are not valid`);
  for (const f of fields) if ((PORT_FIELD_VERSIONS[f] ?? 0) > minor) throw new NotAcceptable();
  return fields;
}

export function renderPort(port: PortRecord, o: { minor: number; base: string; fields?: readonly string[];
  brief?: boolean }): Obj {
  const out: Obj = {};
  const wanted = o.brief ? ['uuid', 'address'] : o.fields ?? PORT_FIELDS;
  for (const f of wanted) {
    if ((PORT_FIELD_VERSIONS[f] ?? 0) > o.minor) continue;
    out[f] = (port as unknown as Obj)[f] ?? null;
  }
  if (o.fields === undefined) out.links = links(o.base, 'ports', port.uuid);
  return out;
}
