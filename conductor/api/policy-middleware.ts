/**
 * Enforces Ironic's default policy (policy.ts) on every API request when auth.strategy is keystone; a no-op
 * otherwise (noauth and http_basic have no roles: Ironic skips policy unless auth_strategy is keystone).
 *
 * Each request is mapped to the rule(s) Ironic's controller checks for it, and to the node the rule is about:
 * - node routes (/v1/nodes/{ident}[/...]): the node must exist (404), be visible (node:get; 404 for
 *   project-scoped callers, who must not learn it exists, 403 for system-scoped ones), then the action's rule
 *   (403). A PATCH checks one rule per patched path, as Ironic's _authorize_patch_and_get_node does (the body is
 *   read here and handed to the route through ctx.state.rawBody).
 * - node lists: list_all, else the caller's project as the `project` filter (owner or lessee).
 * - ports (and port groups): by their node's owner/lessee; lists of callers without list_all keep only ports of
 *   nodes the caller may see.
 * - volume connectors/targets: by their node's owner/lessee (404 when the node is hidden); lists of callers without
 *   volume:list_all keep only rows of nodes the caller's project owns or leases (ctx.state.volumeProject).
 * - allocation create: a project-scoped caller's allocation is its project's (create_restricted to name another).
 * - everything else by a rule without a target; routes we do not know need SYSTEM_READER to read and
 *   SYSTEM_ADMIN to write (or the legacy admin role), never less.
 * Node bodies for callers below baremetal:node:get:filter_threshold are redacted as Ironic's node_sanitize does.
 */
import type { Context, Next } from 'koa';
import type { ConductorContext } from '../context.js';
import { IronicError, NodeNotFound, PortNotFound, RequestEntityTooLarge } from '../errors.js';
import { getAllocationByName, getAllocationByUuid } from '../store/allocations.js';
import { getPortgroup } from '../store/portgroups.js';
import { volumes } from '../store/volumes.js';
import type { NodeRecord } from '../store/types.js';
import { isPublicPath } from './auth.js';
import type { KeystoneCredentials } from './keystone.js';
import { checkRule, type PolicySettings, type PolicyTarget } from './policy.js';

export class HTTPForbidden extends IronicError {
  constructor(resource: string) { super(`Access was denied to the following resource: ${resource}`, 403, 'HTTPForbidden'); }
}

export class PortgroupNotFound extends IronicError {
  constructor(pg: string) { super(`Portgroup ${pg} could not be found.`, 404); }
}

/** What the auth middleware leaves for the policy: set only under auth.strategy keystone. */
export function keystoneCredentials(ctx: Context): KeystoneCredentials | undefined {
  return (ctx.state as { keystone?: KeystoneCredentials }).keystone;
}

type Plan =
  | { kind: 'public' }
  | { kind: 'global'; rule: string }
  | { kind: 'node'; ident: string; rules: string[] | 'patch' | 'delete' }
  | { kind: 'node-list' }
  | { kind: 'node-create' }
  | { kind: 'port'; object: 'port' | 'portgroup'; ident: string; rule: string }
  | { kind: 'port-list'; object: 'port' | 'portgroup' }
  | { kind: 'port-create'; object: 'port' | 'portgroup' }
  | { kind: 'allocation'; ident: string; rule: string }
  | { kind: 'allocation-list' }
  | { kind: 'allocation-create' }
  | { kind: 'volume'; object: 'connector' | 'target'; ident: string; rule: string }
  | { kind: 'volume-list'; parent?: string }
  | { kind: 'volume-create' };

const READ_METHODS = new Set(['GET', 'HEAD']);

/** The rule for /v1/nodes/{ident}/<rest> (rest without a leading slash). */
function nodeSubRule(method: string, rest: string): string[] {
  const get = READ_METHODS.has(method);
  const first = rest.split('/')[0] ?? '';
  switch (first) {
    case 'states': {
      const what = rest.split('/')[1];
      if (what === undefined) return ['baremetal:node:get_states'];
      if (what === 'provision') return ['baremetal:node:set_provision_state'];
      if (what === 'power') return ['baremetal:node:set_power_state'];
      if (what === 'raid') return ['baremetal:node:set_raid_state'];
      if (what === 'console') return [get ? 'baremetal:node:get_console' : 'baremetal:node:set_console_state'];
      if (what === 'boot_mode') return ['baremetal:node:set_boot_mode'];
      if (what === 'secure_boot') return ['baremetal:node:set_secure_boot'];
      return [get ? 'baremetal:node:get_states' : 'baremetal:node:update'];
    }
    case 'maintenance': return [method === 'DELETE' ? 'baremetal:node:clear_maintenance' : 'baremetal:node:set_maintenance'];
    case 'management': {
      const what = rest.split('/')[1];
      if (what === 'inject_nmi') return ['baremetal:node:inject_nmi'];
      if (what === 'indicators') return [get ? 'baremetal:node:get_indicator_state' : 'baremetal:node:set_indicator_state'];
      return [get ? 'baremetal:node:get_boot_device' : 'baremetal:node:set_boot_device'];
    }
    case 'validate': return ['baremetal:node:validate'];
    case 'vifs': return [get ? 'baremetal:node:vif:list' : method === 'DELETE' ? 'baremetal:node:vif:detach' : 'baremetal:node:vif:attach'];
    case 'traits': return [get ? 'baremetal:node:traits:list' : method === 'DELETE' ? 'baremetal:node:traits:delete' : 'baremetal:node:traits:set'];
    case 'bios': return ['baremetal:node:bios:get'];
    case 'history': return ['baremetal:node:history:get'];
    case 'inventory': return ['baremetal:node:inventory:get'];
    case 'vendor_passthru': return ['baremetal:node:vendor_passthru'];
    case 'ports': return ['baremetal:node:get'];
    case 'portgroups': return ['baremetal:node:get'];
    case 'volume': return [get ? 'baremetal:volume:get' : 'baremetal:volume:update'];
    default: return [get ? 'baremetal:node:get' : 'baremetal:node:update'];
  }
}

const GLOBAL_PREFIXES: [RegExp, string, string][] = [
  // [path, read rule, write rule]
  [/^\/v1\/chassis(\/|$)/, 'baremetal:chassis:get', 'baremetal:chassis:update'],
  [/^\/v1\/drivers\/[^/]+\/vendor_passthru/, 'baremetal:driver:vendor_passthru', 'baremetal:driver:vendor_passthru'],
  [/^\/v1\/drivers\/[^/]+\/properties$/, 'baremetal:driver:get_properties', 'baremetal:driver:get_properties'],
  [/^\/v1\/drivers\/[^/]+\/raid\//, 'baremetal:driver:get_raid_logical_disk_properties', 'baremetal:events:post'],
  [/^\/v1\/drivers(\/|$)/, 'baremetal:driver:get', 'baremetal:events:post'],
  [/^\/v1\/conductors(\/|$)/, 'baremetal:conductor:get', 'baremetal:events:post'],
  [/^\/v1\/deploy_templates(\/|$)/, 'baremetal:deploy_template:get', 'baremetal:deploy_template:update'],
  [/^\/v1\/events$/, 'baremetal:events:post', 'baremetal:events:post'],
  [/^\/v1\/shards$/, 'baremetal:shards:get', 'baremetal:events:post'],
  [/^\/v1\/volume(\/|$)/, 'baremetal:volume:list_all', 'baremetal:volume:create'],
];

export function planFor(method: string, path: string): Plan {
  if (isPublicPath(path, method)) return { kind: 'public' };
  const read = READ_METHODS.has(method);
  if (path === '/v1/nodes' || path === '/v1/nodes/detail') {
    if (read) return { kind: 'node-list' };
    if (method === 'POST' && path === '/v1/nodes') return { kind: 'node-create' };
  }
  // Volume connectors/targets follow their node (Ironic's check_volume_list_policy / check_volume_policy_and_retrieve).
  let m = /^\/v1\/nodes\/([^/]+)\/volume\/(?:connectors|targets)$/.exec(path);
  if (m?.[1] && read) return { kind: 'volume-list', parent: decodeURIComponent(m[1]) };
  m = /^\/v1\/volume\/(connectors|targets)(?:\/([^/]+))?$/.exec(path);
  if (m?.[1]) {
    if (m[2] === undefined) {
      if (read) return { kind: 'volume-list' };
      if (method === 'POST') return { kind: 'volume-create' };
    } else {
      const rule = read ? 'baremetal:volume:get' : method === 'DELETE' ? 'baremetal:volume:delete' : 'baremetal:volume:update';
      return { kind: 'volume', object: m[1] === 'connectors' ? 'connector' : 'target', ident: decodeURIComponent(m[2]), rule };
    }
  }
  if (path === '/v1/volume' && read) return { kind: 'global', rule: 'baremetal:volume:get' };
  m = /^\/v1\/nodes\/([^/]+)(?:\/(.*))?$/.exec(path);
  if (m?.[1] && m[1] !== 'detail') {
    const ident = decodeURIComponent(m[1]);
    const rest = m[2] ?? '';
    if (!rest) {
      if (method === 'PATCH') return { kind: 'node', ident, rules: 'patch' };
      if (method === 'DELETE') return { kind: 'node', ident, rules: 'delete' };
      return { kind: 'node', ident, rules: [read ? 'baremetal:node:get' : 'baremetal:node:update'] };
    }
    return { kind: 'node', ident, rules: nodeSubRule(method, rest) };
  }
  m = /^\/v1\/(ports|portgroups)(?:\/([^/]+))?(?:\/(.*))?$/.exec(path);
  if (m?.[1]) {
    const object = m[1] === 'ports' ? 'port' : 'portgroup';
    const ident = m[2];
    if (ident === undefined || (ident === 'detail' && !m[3])) {
      if (read) return { kind: 'port-list', object };
      if (method === 'POST' && ident === undefined) return { kind: 'port-create', object };
      return { kind: 'global', rule: `baremetal:${object}:create` };
    }
    const rule = read ? `baremetal:${object}:get` : method === 'DELETE' && !m[3] ? `baremetal:${object}:delete` : `baremetal:${object}:update`;
    return { kind: 'port', object, ident: decodeURIComponent(ident), rule };
  }
  m = /^\/v1\/allocations(?:\/([^/]+))?$/.exec(path);
  if (m) {
    if (m[1] === undefined) {
      if (read) return { kind: 'allocation-list' };
      return method === 'POST' ? { kind: 'allocation-create' } : { kind: 'global', rule: 'baremetal:allocation:create' };
    }
    const rule = read ? 'baremetal:allocation:get' : method === 'DELETE' ? 'baremetal:allocation:delete' : 'baremetal:allocation:update';
    return { kind: 'allocation', ident: decodeURIComponent(m[1]), rule };
  }
  for (const [re, readRule, writeRule] of GLOBAL_PREFIXES) {
    if (!re.test(path)) continue;
    if (re.source.includes('chassis') && !read) {
      return { kind: 'global', rule: method === 'POST' ? 'baremetal:chassis:create' : method === 'DELETE' ? 'baremetal:chassis:delete' : writeRule };
    }
    if (re.source.includes('deploy_templates') && !read) {
      return { kind: 'global', rule: method === 'POST' ? 'baremetal:deploy_template:create' : method === 'DELETE' ? 'baremetal:deploy_template:delete' : writeRule };
    }
    return { kind: 'global', rule: read ? readRule : writeRule };
  }
  // Unknown to this table: the strictest defaults (system reader to read, system admin to write).
  return { kind: 'global', rule: read ? 'baremetal:node:list_all' : 'baremetal:node:delete' };
}

/** Ironic's per-path rules for a node PATCH (api/controllers/v1/node.py _authorize_patch_and_get_node). */
export function patchRules(patch: unknown): string[] {
  const rules: string[] = [];
  let generic = false;
  const ifaces = ['bios', 'boot', 'console', 'deploy', 'firmware', 'inspect', 'management', 'network', 'power', 'raid',
    'rescue', 'storage', 'vendor'];
  for (const op of Array.isArray(patch) ? patch : []) {
    const p = typeof (op as { path?: unknown })?.path === 'string' ? (op as { path: string }).path : '';
    const value = (op as { value?: unknown }).value;
    if (p.startsWith('/instance_info')) rules.push('baremetal:node:update_instance_info');
    else if (p.startsWith('/extra')) rules.push('baremetal:node:update_extra');
    else if (p.startsWith('/automated_clean') && (value === false || (typeof value === 'string' && ['false', '0', 'no', 'off', 'f', 'n'].includes(value.toLowerCase())))) {
      rules.push('baremetal:node:disable_cleaning');
    } else if (p.startsWith('/driver_info')) rules.push('baremetal:node:update:driver_info');
    else if (p.startsWith('/properties')) rules.push('baremetal:node:update:properties');
    else if (p.startsWith('/chassis_uuid')) rules.push('baremetal:node:update:chassis_uuid');
    else if (p.startsWith('/instance_uuid')) rules.push('baremetal:node:update:instance_uuid');
    else if (p.startsWith('/lessee')) rules.push('baremetal:node:update:lessee');
    else if (p.startsWith('/owner')) rules.push('baremetal:node:update:owner');
    else if (p.startsWith('/driver')) rules.push('baremetal:node:update:driver_interfaces');
    else if (/^\/[a-z]+_interface$/.test(p) && ifaces.includes(p.slice(1, -'_interface'.length))) {
      rules.push('baremetal:node:update:driver_interfaces');
    } else if (p.startsWith('/network_data')) rules.push('baremetal:node:update:network_data');
    else if (p.startsWith('/conductor_group')) rules.push('baremetal:node:update:conductor_group');
    else if (p.startsWith('/name')) rules.push('baremetal:node:update:name');
    else if (p.startsWith('/retired')) rules.push('baremetal:node:update:retired');
    else if (p.startsWith('/shard')) rules.push('baremetal:node:update:shard');
    else generic = true;
  }
  if (generic || rules.length === 0) rules.push('baremetal:node:update');
  return rules;
}

const REDACTED = {
  last_error: '** Value Redacted - Requires baremetal:node:get:last_error permission. **',
  reservation: '** Redacted - requires baremetal:node:get:reservation permission. **',
  driver_internal_info: { content: '** Redacted - Requires baremetal:node:get:driver_internal_info permission. **' },
  driver_info: { content: '** Redacted - requires baremetal:node:get:driver_info permission. **' },
} as const;

/**
 * The whole request body, kept up to `limit` bytes; past that the rest is drained (not kept) so the route can
 * still answer 413 on a live connection (breaking out of the stream would destroy the socket).
 */
async function readRaw(ctx: Context, limit: number): Promise<Buffer> {
  if (Number(ctx.get('content-length') || 0) > limit) {
    ctx.req.resume();
    throw new RequestEntityTooLarge(limit);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req as AsyncIterable<Buffer>) {
    if (size <= limit) chunks.push(chunk);
    size += chunk.length;
  }
  return Buffer.concat(chunks);
}

function parseBody(body: unknown): Record<string, unknown> | undefined {
  if (Buffer.isBuffer(body) || typeof body === 'string') {
    try { return JSON.parse(body.toString()) as Record<string, unknown>; } catch { return undefined; }
  }
  return body && typeof body === 'object' ? body as Record<string, unknown> : undefined;
}

/**
 * The node a create request's body names by `node_uuid` (ports, volume connectors/targets): the body is read once
 * here and left in ctx.state.rawBody for the route (conductor/api/http.ts readJson reuses it).
 */
async function bodyNode(c: ConductorContext, ctx: Context): Promise<NodeRecord | undefined> {
  const raw = await readRaw(ctx, c.config.max_body_bytes);
  (ctx.state as { rawBody?: Buffer }).rawBody = raw;
  const body = parseBody(raw);
  const nodeUuid = typeof body?.node_uuid === 'string' ? body.node_uuid : undefined;
  return nodeUuid ? await c.store.getNodeByUuid(nodeUuid.toLowerCase()) : undefined;
}

export function policyMiddleware(c: ConductorContext): (ctx: Context, next: Next) => Promise<void> {
  const ks = c.config.auth.keystone;
  if (c.config.auth.strategy !== 'keystone' || !ks) return async (_ctx, next) => { await next(); };
  const settings: PolicySettings = { service_project_name: ks.service_project_name, enforce_new_defaults: ks.enforce_new_defaults };
  const allowed = (creds: KeystoneCredentials, rule: string, t: PolicyTarget = {}): boolean => checkRule(rule, creds, t, settings);
  const authorize = (creds: KeystoneCredentials, rule: string, t: PolicyTarget = {}): void => {
    if (!allowed(creds, rule, t)) throw new HTTPForbidden(rule);
  };
  const findNode = async (ident: string): Promise<NodeRecord> => c.tasks.findNode(ident.replace(/\.json$/, ''));

  /** Redacts what a caller below filter_threshold may not read in one rendered node. */
  const sanitize = (creds: KeystoneCredentials, node: Record<string, unknown>): void => {
    const t: PolicyTarget = { owner: node.owner as string | null | undefined, lessee: node.lessee as string | null | undefined };
    for (const [field, value] of Object.entries(REDACTED)) {
      if (field in node && !allowed(creds, `baremetal:node:get:${field}`, t)) node[field] = value;
    }
  };

  return async (ctx, next) => {
    const creds = keystoneCredentials(ctx);
    const plan = planFor(ctx.method, ctx.path);
    if (plan.kind === 'public' || !creds) return next();
    const filtered = !allowed(creds, 'baremetal:node:get:filter_threshold');
    switch (plan.kind) {
      case 'global':
        authorize(creds, plan.rule);
        return next();
      case 'node-create': {
        if (allowed(creds, 'baremetal:node:create')) return next();
        authorize(creds, 'baremetal:node:create:self_owned_node');
        if (creds.system) return next();
        // A node a project admin creates for itself is its project's (Ironic's post(): owned_node).
        const raw = await readRaw(ctx, c.config.max_body_bytes);
        let body: unknown;
        try { body = JSON.parse(raw.toString('utf8')); } catch { body = undefined; }
        if (body && typeof body === 'object' && !Array.isArray(body)) {
          const b = body as Record<string, unknown>;
          if (b.owner !== undefined && b.owner !== null && b.owner !== creds.projectId) {
            throw new IronicError('Cannot create a node as a project scoped admin with an owner other than your own project.', 400, 'Invalid');
          }
          b.owner = creds.projectId;
          (ctx.state as { rawBody?: Buffer }).rawBody = Buffer.from(JSON.stringify(b));
        } else {
          (ctx.state as { rawBody?: Buffer }).rawBody = raw;
        }
        return next();
      }
      case 'node-list': {
        const q = new URLSearchParams(ctx.querystring);
        if (!allowed(creds, 'baremetal:node:list_all')) {
          const own = creds.projectId;
          const asked = q.get('project') ?? q.get('owner');
          if (!own || (asked && asked !== own)) throw new HTTPForbidden('baremetal:node:list_all');
          authorize(creds, 'baremetal:node:list');
          q.set('project', own);
          ctx.querystring = q.toString();
        }
        await next();
        if (filtered && ctx.status === 200) {
          const body = parseBody(ctx.body);
          if (body && Array.isArray(body.nodes)) {
            for (const n of body.nodes as Record<string, unknown>[]) sanitize(creds, n);
            ctx.body = body;
          }
        }
        return;
      }
      case 'node': {
        const node = await findNode(plan.ident);
        const t: PolicyTarget = { owner: node.owner, lessee: node.lessee };
        if (!allowed(creds, 'baremetal:node:get', t)) {
          if (creds.projectId) throw new NodeNotFound(plan.ident);
          throw new HTTPForbidden('baremetal:node:get');
        }
        if (plan.rules === 'delete') {
          if (!allowed(creds, 'baremetal:node:delete', t)) {
            if (creds.system || node.owner !== creds.projectId) throw new HTTPForbidden('baremetal:node:delete');
            authorize(creds, 'baremetal:node:delete:self_owned_node', t);
          }
        } else if (plan.rules === 'patch') {
          const raw = await readRaw(ctx, c.config.max_body_bytes);
          (ctx.state as { rawBody?: Buffer }).rawBody = raw;
          let patch: unknown;
          try { patch = JSON.parse(raw.toString('utf8')); } catch { patch = undefined; }
          for (const rule of patchRules(patch)) authorize(creds, rule, t);
        } else {
          for (const rule of plan.rules) authorize(creds, rule, t);
        }
        await next();
        if (filtered && ctx.status === 200 && ctx.method === 'GET' && /^\/v1\/nodes\/[^/]+$/.test(ctx.path)) {
          const body = parseBody(ctx.body);
          if (body) {
            sanitize(creds, body);
            ctx.body = body;
          }
        }
        return;
      }
      case 'port': {
        let nodeUuid: string | undefined;
        if (plan.object === 'port') {
          const port = await c.store.getPortByUuid(plan.ident.toLowerCase());
          if (!port) throw new PortNotFound(plan.ident);
          nodeUuid = port.node_uuid;
        } else {
          const by = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(plan.ident) ? 'uuid' : 'name';
          const pg = await getPortgroup(c.store.sql, by, by === 'uuid' ? plan.ident.toLowerCase() : plan.ident).catch(() => undefined);
          // Unknown (or an ident the route refuses): the route answers, as Ironic looks the object up first.
          if (!pg) return next();
          nodeUuid = pg.node_uuid;
        }
        const node = nodeUuid ? await c.store.getNodeByUuid(nodeUuid) : undefined;
        const t: PolicyTarget = { owner: node?.owner ?? null, lessee: node?.lessee ?? null };
        if (!allowed(creds, 'baremetal:node:get', t)) {
          throw plan.object === 'port' ? new PortNotFound(plan.ident) : new PortgroupNotFound(plan.ident);
        }
        authorize(creds, plan.rule, t);
        return next();
      }
      case 'allocation': {
        const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(plan.ident);
        const a = uuid ? await getAllocationByUuid(c.store.sql, plan.ident.toLowerCase()).catch(() => undefined)
          : await getAllocationByName(c.store.sql, plan.ident).catch(() => undefined);
        if (!a) return next();
        // Ironic's check_allocation_policy_and_retrieve: not allowed to see it -> 404, then the action's rule -> 403.
        if (!allowed(creds, 'baremetal:allocation:get', { allocationOwner: a.owner })) {
          throw new IronicError(`Allocation ${plan.ident} could not be found.`, 404, 'AllocationNotFound');
        }
        authorize(creds, plan.rule, { allocationOwner: a.owner });
        return next();
      }
      case 'allocation-list': {
        if (allowed(creds, 'baremetal:allocation:list_all')) return next();
        const q = new URLSearchParams(ctx.querystring);
        const own = creds.projectId;
        const asked = q.get('owner');
        // The owner filter exists from 1.60 (older requests cannot be narrowed to the caller's allocations).
        if (!own || (asked && asked !== own) || (ctx.state as { minor?: number }).minor === undefined ||
          ((ctx.state as { minor: number }).minor < 60)) throw new HTTPForbidden('baremetal:allocation:list_all');
        authorize(creds, 'baremetal:allocation:list');
        q.set('owner', own);
        ctx.querystring = q.toString();
        return next();
      }
      case 'allocation-create': {
        // Ironic's _authorize_create_allocation and post(): a caller without create may still create for its own
        // project through create_restricted; under the new defaults a non-system caller's allocation is its
        // project's, and naming another owner needs create_restricted.
        const raw = await readRaw(ctx, c.config.max_body_bytes);
        (ctx.state as { rawBody?: Buffer }).rawBody = raw;
        let body: unknown;
        try { body = JSON.parse(raw.toString('utf8')); } catch { body = undefined; }
        const b = body && typeof body === 'object' && !Array.isArray(body) ? body as Record<string, unknown> : undefined;
        const owner = typeof b?.owner === 'string' && b.owner ? b.owner : undefined;
        const project = creds.projectId;
        if (!allowed(creds, 'baremetal:allocation:create')) {
          if (project && owner && owner !== project) throw new HTTPForbidden('baremetal:allocation:create');
          authorize(creds, 'baremetal:allocation:create_restricted');
          if (b) b.owner = project ?? null;
        } else if (settings.enforce_new_defaults && !creds.system && b) {
          if (owner) {
            if (!allowed(creds, 'baremetal:allocation:create_restricted') && owner !== project) {
              throw new IronicError(`Cannot create allocation with an owner Project ID value ${owner} not matching the requestor ` +
                `Project ID ${String(project ?? null)}. Policy baremetal:allocation:create_restricted is required for this capability.`,
              403, 'NotAuthorized');
            }
          } else {
            b.owner = project ?? null;
          }
        }
        if (b) (ctx.state as { rawBody?: Buffer }).rawBody = Buffer.from(JSON.stringify(b));
        return next();
      }
      case 'volume-list': {
        if (plan.parent !== undefined) {
          const node = await findNode(plan.parent);
          if (!allowed(creds, 'baremetal:node:get', { owner: node.owner, lessee: node.lessee })) throw new NodeNotFound(plan.parent);
        }
        if (allowed(creds, 'baremetal:volume:list_all')) return next();
        if (!creds.projectId) throw new HTTPForbidden('baremetal:volume:list_all');
        authorize(creds, 'baremetal:volume:list');
        // The route lists only rows of nodes the project owns or leases (Ironic's `project` list filter).
        (ctx.state as { volumeProject?: string }).volumeProject = creds.projectId;
        return next();
      }
      case 'volume': {
        if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(plan.ident)) return next();
        const v = volumes(c.store);
        const rec = plan.object === 'connector' ? await v.getConnector(plan.ident.toLowerCase()) : await v.getTarget(plan.ident.toLowerCase());
        // Unknown: the route answers its 404, as Ironic looks the volume up first.
        if (!rec) return next();
        const node = await c.store.getNodeByUuid(rec.node_uuid);
        const t: PolicyTarget = { owner: node?.owner ?? null, lessee: node?.lessee ?? null };
        if (!allowed(creds, 'baremetal:node:get', t)) {
          throw new IronicError(`Volume ${plan.object} ${plan.ident} could not be found.`, 404);
        }
        authorize(creds, plan.rule, t);
        return next();
      }
      case 'volume-create': {
        const node = await bodyNode(c, ctx);
        authorize(creds, 'baremetal:volume:create', { owner: node?.owner ?? null, lessee: node?.lessee ?? null });
        return next();
      }
      case 'port-create': {
        const node = await bodyNode(c, ctx);
        authorize(creds, `baremetal:${plan.object}:create`, { owner: node?.owner ?? null, lessee: node?.lessee ?? null });
        return next();
      }
      case 'port-list': {
        if (allowed(creds, `baremetal:${plan.object}:list_all`)) return next();
        if (!creds.projectId) throw new HTTPForbidden(`baremetal:${plan.object}:list_all`);
        authorize(creds, `baremetal:${plan.object}:list`);
        // Keep node_uuid in the rendered items to filter on, and drop it again if the caller did not ask for it.
        const q = new URLSearchParams(ctx.querystring);
        const fields = q.get('fields');
        const added = fields !== null && !fields.split(',').includes('node_uuid');
        if (added) {
          q.set('fields', `${fields},node_uuid`);
          ctx.querystring = q.toString();
        }
        await next();
        const key = plan.object === 'port' ? 'ports' : 'portgroups';
        const body = parseBody(ctx.body);
        if (ctx.status !== 200 || !body || !Array.isArray(body[key])) return;
        const seen = new Map<string, boolean>();
        const kept: Record<string, unknown>[] = [];
        for (const item of body[key] as Record<string, unknown>[]) {
          let id = typeof item.node_uuid === 'string' ? item.node_uuid : '';
          if (!id && typeof item.uuid === 'string') {
            // Brief items carry no node_uuid: find it by the item's own UUID.
            const rec = plan.object === 'port' ? await c.store.getPortByUuid(item.uuid)
              : await getPortgroup(c.store.sql, 'uuid', item.uuid).catch(() => undefined);
            id = rec?.node_uuid ?? '';
          }
          if (!seen.has(id)) {
            const n = id ? await c.store.getNodeByUuid(id) : undefined;
            seen.set(id, !!n && allowed(creds, 'baremetal:node:get', { owner: n.owner, lessee: n.lessee }));
          }
          if (!seen.get(id)) continue;
          if (added) delete item.node_uuid;
          kept.push(item);
        }
        body[key] = kept;
        ctx.body = body;
        return;
      }
    }
  };
}
