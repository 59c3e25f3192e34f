/**
 * Allocations (API 1.52+): validation of a create request as Ironic's API does it, then Ironic's conductor
 * process (conductor/allocations.py): find candidate nodes (available, not in maintenance, no instance, powered
 * state known, the resource class, every requested trait, within candidate_nodes and the owner's nodes), shuffle
 * them so parallel allocations try different nodes first (a node named like the allocation first), and take one
 * with a conditional update (store/allocations.ts claimNode). A node another allocation took meanwhile is skipped;
 * a reserved (locked) one is retried, as Ironic retries NodeLocked. When nothing can be taken the allocation ends
 * `error` with Ironic's last_error text.
 */
import { randomUUID } from 'node:crypto';
import { errorMessage } from '../../common/errors.js';
import type { ConductorContext } from '../context.js';
import {
  Conflict, InstanceAssociated, InvalidParameterValue, IronicError, NodeAssociated, NotAcceptable, NotFound,
} from '../errors.js';
import { isUuid } from '../locks.js';
import { UPDATE_ALLOWED_STATES } from '../states.js';
import {
  backfillNode, claimNode, createAllocation as storeCreate, destroyAllocation, failAllocation,
  getAllocationByName, getAllocationByUuid, listAllocations, takeOverAllocation, updateAllocation, type AllocationRecord,
} from '../store/allocations.js';
import { DuplicateError, type Json, type NodeRecord } from '../store/types.js';
import { applyJsonPatch, type PatchOp } from './jsonpatch.js';
import { isValidTrait } from './traits.js';

const CREATE_KEYS = new Set(['candidate_nodes', 'extra', 'name', 'node', 'owner', 'resource_class', 'traits', 'uuid']);
export const ALLOCATION_PATCHABLE = ['name', 'extra'];

function schemaError(what: string, msg: string): InvalidParameterValue {
  return new InvalidParameterValue(`Schema error for ${what}: ${msg}`);
}

/** ALLOCATION_SCHEMA: types of each key, unknown keys refused. */
function checkSchema(body: Record<string, unknown>, what: string): void {
  for (const k of Object.keys(body)) {
    if (!CREATE_KEYS.has(k)) throw schemaError(what, `Additional properties are not allowed ('${k}' was unexpected)`);
  }
  for (const k of ['name', 'node', 'owner', 'resource_class', 'uuid']) {
    const v = body[k];
    if (v !== undefined && v !== null && typeof v !== 'string') throw schemaError(what, `${JSON.stringify(v)} is not of type 'string', 'null'`);
  }
  if (typeof body.resource_class === 'string' && body.resource_class.length > 80) {
    throw schemaError(what, `'${body.resource_class}' is too long`);
  }
  const extra = body.extra;
  if (extra !== undefined && extra !== null && (typeof extra !== 'object' || Array.isArray(extra))) {
    throw schemaError(what, `${JSON.stringify(extra)} is not of type 'object', 'null'`);
  }
  for (const k of ['candidate_nodes', 'traits']) {
    const v = body[k];
    if (v === undefined || v === null) continue;
    if (!Array.isArray(v)) throw schemaError(what, `${JSON.stringify(v)} is not of type 'array', 'null'`);
    for (const item of v) {
      if (typeof item !== 'string') throw schemaError(what, `${JSON.stringify(item)} is not of type 'string'`);
      if (k === 'traits' && !isValidTrait(item)) throw schemaError(what, `'${item}' is not valid under any of the given schemas`);
    }
  }
  if (typeof body.uuid === 'string' && !isUuid(body.uuid)) {
    throw new InvalidParameterValue(`Expected a UUID for uuid: ${body.uuid}`);
  }
}

function checkName(name: unknown, verb: 'create' | 'update'): void {
  if (name === null || name === undefined || name === '') return;
  // Ironic's is_valid_logical_name (RFC 3986 unreserved characters, at most 255).
  if (typeof name !== 'string' || name.length > 255 || !/^[A-Za-z0-9\-._~]+$/.test(name)) {
    throw new InvalidParameterValue(`Cannot ${verb} allocation with invalid name '${String(name)}'`);
  }
}

/** An allocation by UUID or name (404 AllocationNotFound). */
export async function findAllocation(c: ConductorContext, ident: string): Promise<AllocationRecord> {
  const a = isUuid(ident) ? await getAllocationByUuid(c.store.sql, ident.toLowerCase())
    : await getAllocationByName(c.store.sql, ident);
  if (!a) throw new NotFound(`Allocation ${ident} could not be found.`);
  return a;
}

/** Node idents (UUIDs or names) to UUIDs, in order; unknown ones are a 400 as Ironic's check_node_list. */
async function nodeUuids(c: ConductorContext, idents: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  const missing: string[] = [];
  for (const id of idents) {
    const n = isUuid(id) ? await c.store.getNodeByUuid(id.toLowerCase()) : await c.store.getNodeByName(id);
    if (n) out.push(n.uuid);
    else missing.push(id);
  }
  if (missing.length) throw new InvalidParameterValue(`Nodes cannot be found: ${missing.join(', ')}`);
  return out;
}

export async function createAllocation(c: ConductorContext, body: Record<string, unknown>, minor: number):
  Promise<AllocationRecord> {
  checkSchema(body, 'allocation');
  if ('owner' in body && minor < 60) throw new NotAcceptable();
  checkName(body.name, 'create');
  let node: NodeRecord | undefined;
  if (typeof body.node === 'string' && body.node !== '') {
    if (minor < 58) throw new InvalidParameterValue('Cannot set node when creating an allocation in this API version');
    try {
      node = await c.tasks.findNode(body.node);
    } catch (e) {
      // Ironic answers a missing backfill node with 400, not 404.
      throw new InvalidParameterValue(errorMessage(e));
    }
  }
  let resourceClass = typeof body.resource_class === 'string' && body.resource_class !== '' ? body.resource_class : null;
  if (!resourceClass) {
    if (node) resourceClass = node.resource_class;
    else throw new InvalidParameterValue('The resource_class field is mandatory when not backfilling');
  }
  const candidates = Array.isArray(body.candidate_nodes) && body.candidate_nodes.length
    ? await nodeUuids(c, body.candidate_nodes as string[]) : [];
  let uuid = typeof body.uuid === 'string' ? body.uuid.toLowerCase() : undefined;
  if (!uuid) uuid = node?.instance_uuid ?? randomUUID();
  let alloc: AllocationRecord;
  try {
    alloc = await storeCreate(c.store.sql, {
      uuid, name: (body.name as string | null | undefined) || null, owner: (body.owner as string | null | undefined) ?? null,
      resource_class: resourceClass, traits: (body.traits as string[] | null | undefined) ?? [], candidate_nodes: candidates,
      extra: (body.extra as Json | null | undefined) ?? {}, conductor_affinity: c.host,
    });
  } catch (e) {
    if (e instanceof DuplicateError && e.field === 'name') throw new Conflict(`An allocation with name ${String(body.name)} already exists.`);
    if (e instanceof DuplicateError) throw new Conflict(`An allocation with UUID ${uuid} already exists.`);
    throw e;
  }
  if (node) return backfill(c, alloc, node);
  spawnAllocate(c, alloc);
  return alloc;
}

function failed(uuid: string, error: string): string {
  return `Failed to process allocation ${uuid}: ${error}.`;
}

/** Synchronous, as Ironic's backfill_allocation: the node must be active and match; errors fail the allocation. */
async function backfill(c: ConductorContext, alloc: AllocationRecord, node: NodeRecord): Promise<AllocationRecord> {
  const errors: string[] = [];
  if (node.provision_state !== 'active') {
    errors.push(`Node must be in the "active" state, but the current state is "${node.provision_state}"`);
  }
  if (alloc.resource_class && node.resource_class !== alloc.resource_class) {
    errors.push(`Resource class ${String(node.resource_class)} does not match the requested resource class ${alloc.resource_class}`);
  }
  if (alloc.traits.length && !alloc.traits.every((t) => node.traits.includes(t))) {
    errors.push(`List of traits ${JSON.stringify(node.traits)} does not match the requested traits ${JSON.stringify(alloc.traits)}`);
  }
  if (alloc.candidate_nodes.length && !alloc.candidate_nodes.includes(node.uuid)) {
    errors.push(`Candidate nodes must be empty or contain the target node, but got ${JSON.stringify(alloc.candidate_nodes)}`);
  }
  let err: IronicError | undefined;
  if (errors.length) {
    // Ironic raises AllocationFailed here, which its API answers with 500; bad input is a 400 for us.
    err = new InvalidParameterValue(failed(alloc.uuid, `Cannot backfill an allocation for node ${node.uuid}: ${errors.join('; ')}`));
  } else {
    try {
      if (!(await backfillNode(c.store.sql, alloc.uuid, node.uuid))) {
        const now = await c.store.getNodeByUuid(node.uuid);
        err = new NodeAssociated(node.uuid, String(now?.instance_uuid ?? now?.allocation_uuid));
      }
    } catch (e) {
      if (!(e instanceof DuplicateError)) throw e;
      err = new InstanceAssociated(alloc.uuid, node.uuid);
    }
  }
  if (err) {
    await failAllocation(c.store.sql, alloc.uuid, err.details);
    throw err;
  }
  return (await getAllocationByUuid(c.store.sql, alloc.uuid)) ?? alloc;
}

/** Runs the allocation process in the background, as Ironic's conductor spawns a worker for it. */
export function spawnAllocate(c: ConductorContext, alloc: AllocationRecord): void {
  void (async () => {
    await new Promise((r) => setImmediate(r));
    try {
      await allocate(c, alloc);
    } catch (e) {
      c.log.error({ allocation: alloc.uuid, err: errorMessage(e) }, 'allocation failed unexpectedly');
      await failAllocation(c.store.sql, alloc.uuid, `Unexpected exception during allocation: ${errorMessage(e)}`)
        .catch(() => undefined);
    }
  })();
}

function shuffle<T>(a: T[]): T[] {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j] as T, a[i] as T];
  }
  return a;
}

/** Ironic's _candidate_nodes; a string is the AllocationFailed reason. */
async function candidates(c: ConductorContext, alloc: AllocationRecord): Promise<NodeRecord[] | string> {
  let nodes = await c.store.listNodes({
    ...(alloc.resource_class !== null ? { resource_class: alloc.resource_class } : {}),
    provision_state: ['available'], associated: false, maintenance: false,
    ...(alloc.owner ? { project: alloc.owner } : {}),
  });
  nodes = nodes.filter((n) => n.power_state !== null && n.allocation_uuid === null);
  if (alloc.candidate_nodes.length) {
    const want = new Set(alloc.candidate_nodes);
    nodes = nodes.filter((n) => want.has(n.uuid));
  }
  if (!nodes.length) {
    return alloc.candidate_nodes.length
      ? `none of the requested nodes are available and match the resource class ${String(alloc.resource_class)}`
      : `no available nodes match the resource class ${String(alloc.resource_class)}`;
  }
  if (alloc.traits.length) {
    nodes = nodes.filter((n) => alloc.traits.every((t) => n.traits.includes(t)));
    if (!nodes.length) return `no suitable nodes have the requested traits ${alloc.traits.join(', ')}`;
  }
  shuffle(nodes);
  if (alloc.name) {
    const i = nodes.findIndex((n) => n.name === alloc.name);
    if (i > 0) nodes.unshift(...nodes.splice(i, 1));
  }
  return nodes;
}

async function allocate(c: ConductorContext, alloc: AllocationRecord): Promise<void> {
  const found = await candidates(c, alloc);
  if (typeof found === 'string') {
    await failAllocation(c.store.sql, alloc.uuid, failed(alloc.uuid, found));
    return;
  }
  let nodes = found;
  for (let attempt = 1; ; attempt++) {
    const retry: NodeRecord[] = [];
    for (const node of nodes) {
      if (await claimNode(c.store.sql, alloc, node.uuid)) {
        c.log.info({ node: node.uuid, allocation: alloc.uuid }, 'node reserved for allocation');
        return;
      }
      const now = await c.store.getNodeByUuid(node.uuid);
      const current = await getAllocationByUuid(c.store.sql, alloc.uuid);
      if (!current || current.state !== 'allocating') return; // deleted (or finished) meanwhile
      // Still suitable but locked by a task: worth another try, as Ironic retries NodeLocked.
      if (now && now.reservation !== null && now.instance_uuid === null && now.allocation_uuid === null &&
        now.provision_state === 'available' && !now.maintenance && now.resource_class === alloc.resource_class &&
        alloc.traits.every((t) => now.traits.includes(t))) retry.push(now);
    }
    nodes = retry;
    const error = nodes.length ? `could not reserve any of ${nodes.length} suitable nodes`
      : 'all nodes were filtered out during reservation';
    // Ironic retries the whole list node_locked_retry_attempts times, node_locked_retry_interval apart.
    if (!nodes.length || attempt >= Math.max(1, c.config.locks.node_locked_retry_attempts)) {
      await failAllocation(c.store.sql, alloc.uuid, failed(alloc.uuid, error));
      return;
    }
    await new Promise((r) => setTimeout(r, c.config.locks.node_locked_retry_interval * 1000));
  }
}

export async function patchAllocation(c: ConductorContext, ident: string, ops: PatchOp[]): Promise<AllocationRecord> {
  const alloc = await findAllocation(c, ident);
  for (const op of ops) {
    const root = op.path.split('/')[1] ?? '';
    if (!ALLOCATION_PATCHABLE.includes(root)) {
      throw new InvalidParameterValue(`Cannot patch ${op.path}. Only the following can be updated: ${ALLOCATION_PATCHABLE.join(', ')}`);
    }
  }
  for (const op of ops) if (op.path === '/name' && op.op !== 'remove') checkName(op.value, 'update');
  const doc = applyJsonPatch({ name: alloc.name, extra: alloc.extra } as Record<string, unknown>, ops);
  const name = doc.name === undefined ? null : doc.name;
  const extra = doc.extra === undefined || doc.extra === null ? {} : doc.extra;
  if (name !== null && typeof name !== 'string') throw schemaError('allocation', `${JSON.stringify(name)} is not of type 'string', 'null'`);
  if (typeof extra !== 'object' || Array.isArray(extra)) throw schemaError('allocation', `${JSON.stringify(extra)} is not of type 'object', 'null'`);
  try {
    return await updateAllocation(c.store.sql, alloc.uuid, { name: name as string | null, extra: extra as Json });
  } catch (e) {
    if (e instanceof DuplicateError) throw new Conflict(`An allocation with name ${String(name)} already exists.`);
    throw e;
  }
}

/** Ironic's destroy_allocation: under the node's lock, refused while the node is active or mid-operation. */
export async function deleteAllocation(c: ConductorContext, alloc: AllocationRecord): Promise<void> {
  if (!alloc.node_uuid || !(await c.store.getNodeByUuid(alloc.node_uuid))) {
    await destroyAllocation(c.store.sql, alloc.uuid);
    return;
  }
  await c.tasks.withNodeTask(alloc.node_uuid, { exclusive: true, purpose: 'allocation deletion' }, async (task) => {
    const node = task.node;
    if (!node.maintenance) {
      if (node.target_provision_state && !UPDATE_ALLOWED_STATES.has(node.provision_state)) {
        throw new Conflict(`Cannot remove allocation ${alloc.uuid} for node ${node.uuid}, because the node is in state ` +
          `${node.provision_state} where updates are not allowed (and maintenance mode is off)`);
      }
      if (node.provision_state === 'active') {
        throw new Conflict(`Cannot remove allocation ${alloc.uuid} for node ${node.uuid}, because the node is active ` +
          '(and maintenance mode is off)');
      }
    }
    await destroyAllocation(c.store.sql, alloc.uuid);
  });
}

/** The allocation of a node (GET/DELETE /v1/nodes/{n}/allocation). */
export async function allocationOfNode(c: ConductorContext, nodeIdent: string, missingNodeStatus: 400 | 404):
  Promise<AllocationRecord> {
  let node: NodeRecord;
  try {
    node = await c.tasks.findNode(nodeIdent);
  } catch (e) {
    if (missingNodeStatus === 400) throw new InvalidParameterValue(errorMessage(e));
    throw e;
  }
  const rows = await listAllocations(c.store.sql, { node_uuid: node.uuid, limit: 1 });
  const a = rows[0];
  if (!a) throw new NotFound(`Allocation for node ${nodeIdent} was not found`);
  return a;
}

/**
 * Ironic removes a node's allocation when the node is torn down (undeploy) and when its instance_uuid is removed
 * by PATCH; the node's instance_uuid and allocation_uuid go with it. Called under the node's exclusive lock.
 */
export async function removeNodeAllocation(c: ConductorContext, task: { node: NodeRecord }): Promise<void> {
  const uuid = task.node.allocation_uuid;
  if (!uuid) return;
  await destroyAllocation(c.store.sql, uuid);
  task.node = (await c.store.getNodeByUuid(task.node.uuid)) ?? task.node;
}

/** Ironic's destroy_node deletes the node's allocations (an active one only in maintenance, checked by the caller). */
export async function deleteAllocationsOfNode(c: ConductorContext, nodeUuid: string): Promise<void> {
  await c.store.sql.write('DELETE FROM allocations WHERE node_uuid = ?', [nodeUuid]);
}

/**
 * Ironic's _check_orphan_allocations: allocations still `allocating` on a conductor that is gone are taken over
 * (one conductor wins each, by a conditional update) and processed again. `own` also resumes this host's own,
 * left by its previous run (at start-up).
 */
export async function checkOrphanAllocations(c: ConductorContext, opts: { own?: boolean } = {}): Promise<number> {
  const pending = await listAllocations(c.store.sql, { state: 'allocating' });
  if (!pending.length) return 0;
  const conductors = await c.store.listConductors();
  const alive = (host: string | null): boolean => {
    if (host === c.host) return !opts.own;
    const rec = conductors.find((r) => r.hostname === host);
    return !!rec && !!c.cluster && c.cluster.isAlive(rec);
  };
  let taken = 0;
  for (const a of pending) {
    if (alive(a.conductor_affinity)) continue;
    if (!(await takeOverAllocation(c.store.sql, a.uuid, a.conductor_affinity, c.host))) continue;
    c.log.info({ allocation: a.uuid, from: a.conductor_affinity }, 'taking over an unfinished allocation');
    spawnAllocate(c, { ...a, conductor_affinity: c.host });
    taken++;
  }
  return taken;
}
