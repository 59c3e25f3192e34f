/**
 * The allocation and deploy template store modules on both databases: rows, filters, the atomic node claim (two
 * stores, as two conductors, racing many allocations for fewer nodes: no node is given twice) and the freeing of
 * a node when its allocation is deleted.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { initialState } from '../../conductor/states.js';
import {
  backfillNode, claimNode, createAllocation, destroyAllocation, failAllocation, getAllocationByName, getAllocationByUuid,
  listAllocations, updateAllocation,
} from '../../conductor/store/allocations.js';
import {
  createDeployTemplate, deleteDeployTemplate, deployTemplatesByNames, getDeployTemplate, listDeployTemplates,
  updateDeployTemplate,
} from '../../conductor/store/deploy-templates.js';
import { DuplicateError, type Store } from '../../conductor/store/types.js';
import { STORE_BACKENDS } from '../fixtures/stores.js';

async function availableNode(store: Store, extra: Record<string, unknown> = {}): Promise<string> {
  const n = await store.createNode({ uuid: randomUUID(), driver: 'fake-hardware', ...initialState(82),
    resource_class: 'gold', power_state: 'power off', ...extra });
  await store.updateNode(n.uuid, { provision_state: 'available', target_provision_state: null } as never);
  return n.uuid;
}

for (const b of STORE_BACKENDS) test(`${b.name} store: allocations: create, unique name, filters, patch, claim, free on delete`, { skip: b.skip }, async (t) => {
  const store = await b.open(t);
  const a = await createAllocation(store.sql, { uuid: randomUUID(), name: 'a1', resource_class: 'gold', traits: ['CUSTOM_X'],
    extra: { k: 1 } });
  assert.equal(a.state, 'allocating');
  assert.deepEqual(a.traits, ['CUSTOM_X']);
  assert.deepEqual(a.candidate_nodes, []);
  await assert.rejects(createAllocation(store.sql, { uuid: randomUUID(), name: 'a1' }),
    (e: unknown) => e instanceof DuplicateError && e.field === 'name');
  await assert.rejects(createAllocation(store.sql, { uuid: a.uuid }), (e: unknown) => e instanceof DuplicateError && e.field === 'uuid');
  assert.equal((await getAllocationByName(store.sql, 'a1'))?.uuid, a.uuid);

  const node = await availableNode(store);
  assert.equal(await claimNode(store.sql, a, node), true);
  const claimed = await store.getNodeByUuid(node);
  assert.equal(claimed?.instance_uuid, a.uuid);
  assert.equal(claimed?.allocation_uuid, a.uuid);
  assert.equal((await getAllocationByUuid(store.sql, a.uuid))?.state, 'active');
  assert.equal((await listAllocations(store.sql, { node_uuid: node }))[0]?.uuid, a.uuid);
  assert.equal((await listAllocations(store.sql, { state: 'allocating' })).length, 0);

  // A second allocation cannot take the same node; a failed one records Ironic's text.
  const b2 = await createAllocation(store.sql, { uuid: randomUUID(), resource_class: 'gold' });
  assert.equal(await claimNode(store.sql, b2, node), false);
  assert.equal((await getAllocationByUuid(store.sql, b2.uuid))?.state, 'allocating', 'a failed claim changes nothing');
  await failAllocation(store.sql, b2.uuid, 'Failed to process allocation x: no.');
  const failed = await getAllocationByUuid(store.sql, b2.uuid);
  assert.equal(failed?.state, 'error');
  assert.equal(failed?.last_error, 'Failed to process allocation x: no.');

  // Wrong resource class, maintenance, reserved nodes are not claimable.
  const silver = await availableNode(store, { resource_class: 'silver' });
  const maint = await availableNode(store, { maintenance: true });
  const reserved = await availableNode(store);
  assert.equal((await store.reserveNode(reserved, 'other-conductor')).ok, true);
  const c = await createAllocation(store.sql, { uuid: randomUUID(), resource_class: 'gold' });
  for (const n of [silver, maint, reserved]) assert.equal(await claimNode(store.sql, c, n), false, n);

  const patched = await updateAllocation(store.sql, a.uuid, { name: 'renamed', extra: { k: 2 } });
  assert.equal(patched.name, 'renamed');
  assert.deepEqual(patched.extra, { k: 2 });
  await assert.rejects(updateAllocation(store.sql, c.uuid, { name: 'renamed' }), (e: unknown) => e instanceof DuplicateError);

  assert.equal(await destroyAllocation(store.sql, a.uuid), true);
  const freed = await store.getNodeByUuid(node);
  assert.equal(freed?.instance_uuid, null);
  assert.equal(freed?.allocation_uuid, null);
  assert.equal(await destroyAllocation(store.sql, a.uuid), false, 'already gone');

  // Backfill binds a deployed node whose instance_uuid is the allocation's UUID; a bound node refuses another.
  const inst = randomUUID();
  const active = await store.createNode({ uuid: randomUUID(), driver: 'fake-hardware', ...initialState(82), instance_uuid: inst });
  const bf = await createAllocation(store.sql, { uuid: inst, resource_class: 'gold' });
  assert.equal(await backfillNode(store.sql, bf.uuid, active.uuid), true);
  assert.equal((await store.getNodeByUuid(active.uuid))?.allocation_uuid, inst);
  const other = await createAllocation(store.sql, { uuid: randomUUID() });
  assert.equal(await backfillNode(store.sql, other.uuid, active.uuid), false);
});

for (const b of STORE_BACKENDS) test(`${b.name} store: two stores race 12 allocations for 4 nodes: each node is given once`, { skip: b.skip }, async (t) => {
  const one = await b.open(t);
  const two = await b.reopen(t, one);
  const nodes: string[] = [];
  for (let i = 0; i < 4; i++) nodes.push(await availableNode(one));
  const allocs = await Promise.all(Array.from({ length: 12 }, () => createAllocation(one.sql, { uuid: randomUUID(), resource_class: 'gold' })));
  // Every allocation tries every node (each in its own order) until one claim succeeds, all at once.
  const won = await Promise.all(allocs.map(async (a, i) => {
    const store = i % 2 ? two : one;
    const order = [...nodes].sort(() => Math.random() - 0.5);
    for (const n of order) if (await claimNode(store.sql, a, n)) return n;
    return undefined;
  }));
  const given = won.filter((n): n is string => n !== undefined);
  assert.equal(given.length, 4, JSON.stringify(won));
  assert.equal(new Set(given).size, 4, 'no node given twice');
  for (const [i, a] of allocs.entries()) {
    const row = await getAllocationByUuid(two.sql, a.uuid);
    if (won[i]) {
      assert.equal(row?.state, 'active');
      assert.equal(row?.node_uuid, won[i]);
      assert.equal((await two.getNodeByUuid(won[i] as string))?.allocation_uuid, a.uuid);
    } else {
      assert.equal(row?.state, 'allocating');
      assert.equal(row?.node_uuid, null);
    }
  }
});

for (const b of STORE_BACKENDS) test(`${b.name} store: deploy templates: create, unique name, by names, list, update, delete`, { skip: b.skip }, async (t) => {
  const store = await b.open(t);
  const steps = [{ interface: 'deploy', step: 'write_image', args: {}, priority: 90 }];
  const x = await createDeployTemplate(store.sql, { uuid: randomUUID(), name: 'CUSTOM_X', description: null, steps, extra: {} });
  assert.deepEqual(x.steps, steps);
  await assert.rejects(createDeployTemplate(store.sql, { uuid: randomUUID(), name: 'CUSTOM_X', description: null, steps, extra: {} }),
    (e: unknown) => e instanceof DuplicateError && e.field === 'name');
  const y = await createDeployTemplate(store.sql, { uuid: randomUUID(), name: 'CUSTOM_Y', description: 'd', steps, extra: { a: 1 } });
  assert.deepEqual((await deployTemplatesByNames(store.sql, ['CUSTOM_Y', 'CUSTOM_NONE', 'CUSTOM_X'])).map((r) => r.name),
    ['CUSTOM_X', 'CUSTOM_Y']);
  assert.deepEqual((await listDeployTemplates(store.sql, { sort_key: 'name', sort_dir: 'desc' })).map((r) => r.name),
    ['CUSTOM_Y', 'CUSTOM_X']);
  const page2 = await listDeployTemplates(store.sql, { limit: 1, marker: x.uuid });
  assert.deepEqual(page2.map((r) => r.uuid), [y.uuid]);
  const u = await updateDeployTemplate(store.sql, y.uuid, { name: 'CUSTOM_Z', description: null, steps: [], extra: {} });
  assert.equal(u.name, 'CUSTOM_Z');
  assert.equal((await getDeployTemplate(store.sql, 'name', 'CUSTOM_Z'))?.uuid, y.uuid);
  assert.equal(await deleteDeployTemplate(store.sql, y.uuid), true);
  assert.equal(await getDeployTemplate(store.sql, 'uuid', y.uuid), undefined);
});
