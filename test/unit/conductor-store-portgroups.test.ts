import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { initialState } from '../../conductor/states.js';
import { createChassis, deleteChassis, getChassis, listChassis, updateChassis } from '../../conductor/store/chassis.js';
import {
  countPortgroupPorts, createPortgroup, deletePortgroup, getPortgroup, listPortgroups, updatePortgroup,
} from '../../conductor/store/portgroups.js';
import { DuplicateError } from '../../conductor/store/types.js';
import { STORE_BACKENDS } from '../fixtures/stores.js';

const missing = (m: string): Error => new Error(`marker ${m} missing`);

for (const b of STORE_BACKENDS) test(`${b.name} store: chassis CRUD, paging, delete refused while a node names it`, { skip: b.skip }, async (t) => {
  const store = await b.open(t);
  const sql = store.sql;
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) {
    const ch = await createChassis(sql, { uuid: randomUUID(), description: `rack ${4 - i}`, extra: { i } });
    ids.push(ch.uuid);
    assert.deepEqual(ch.extra, { i });
    assert.equal(ch.updated_at, null);
  }
  await assert.rejects(createChassis(sql, { uuid: ids[0] as string }), (e: unknown) => e instanceof DuplicateError && e.field === 'uuid');
  const first = await listChassis(sql, { limit: 2, sort_key: 'description' }, missing);
  assert.deepEqual(first.map((c) => c.description), ['rack 0', 'rack 1']);
  const next = await listChassis(sql, { limit: 2, sort_key: 'description', marker: first[1]?.uuid as string }, missing);
  assert.deepEqual(next.map((c) => c.description), ['rack 2', 'rack 3']);
  await assert.rejects(listChassis(sql, { sort_key: 'extra' }, missing), /invalid field for sorting/);
  await assert.rejects(listChassis(sql, { marker: randomUUID() }, missing), /marker .* missing/);

  const upd = await updateChassis(sql, ids[0] as string, { description: null, extra: { a: 'b' } });
  assert.equal(upd?.description, null);
  assert.deepEqual(upd?.extra, { a: 'b' });
  assert.ok(upd?.updated_at);
  assert.equal(await updateChassis(sql, randomUUID(), { description: 'x' }), undefined);

  const node = await store.createNode({ uuid: randomUUID(), driver: 'fake-hardware', chassis_uuid: ids[0] as string, ...initialState(82) });
  assert.equal(await deleteChassis(sql, ids[0] as string), 'not-empty');
  assert.ok(await getChassis(sql, ids[0] as string));
  await store.updateNode(node.uuid, { chassis_uuid: null });
  assert.equal(await deleteChassis(sql, ids[0] as string), 'deleted');
  assert.equal(await deleteChassis(sql, ids[0] as string), 'missing');
  assert.equal(await getChassis(sql, ids[0] as string), undefined);
});

for (const b of STORE_BACKENDS) test(`${b.name} store: portgroups unique uuid/name/address, filters, delete refused with ports, cascade with the node`, { skip: b.skip }, async (t) => {
  const store = await b.open(t);
  const sql = store.sql;
  const mkNode = () => store.createNode({ uuid: randomUUID(), driver: 'fake-hardware', ...initialState(82) });
  const n1 = await mkNode();
  const n2 = await mkNode();
  const pg = await createPortgroup(sql, { uuid: randomUUID(), node_uuid: n1.uuid, name: 'bond0', address: '52:54:00:00:00:01',
    mode: '802.3ad', properties: { miimon: '100' } });
  assert.equal(pg.standalone_ports_supported, true);
  assert.deepEqual(pg.properties, { miimon: '100' });
  assert.deepEqual(pg.internal_info, {});
  for (const [field, extra] of [['name', { name: 'bond0' }], ['address', { address: '52:54:00:00:00:01' }],
    ['uuid', { uuid: pg.uuid }]] as const) {
    await assert.rejects(createPortgroup(sql, { uuid: randomUUID(), node_uuid: n2.uuid, ...extra }),
      (e: unknown) => e instanceof DuplicateError && e.field === field, field);
  }
  // Unnamed, address-less portgroups do not collide (NULLs are distinct in both databases).
  const anon1 = await createPortgroup(sql, { uuid: randomUUID(), node_uuid: n2.uuid, standalone_ports_supported: false });
  await createPortgroup(sql, { uuid: randomUUID(), node_uuid: n2.uuid });
  assert.equal(anon1.standalone_ports_supported, false);
  assert.equal((await listPortgroups(sql, { node_uuid: n2.uuid }, missing)).length, 2);
  assert.equal((await listPortgroups(sql, { address: '52:54:00:00:00:01' }, missing))[0]?.uuid, pg.uuid);
  assert.equal((await getPortgroup(sql, 'name', 'bond0'))?.uuid, pg.uuid);
  assert.equal((await getPortgroup(sql, 'address', '52:54:00:00:00:01'))?.uuid, pg.uuid);

  const changed = await updatePortgroup(sql, pg.uuid, { internal_info: { tenant_vif_port_id: 'vif-1' }, name: 'bond1' });
  assert.deepEqual(changed?.internal_info, { tenant_vif_port_id: 'vif-1' });
  await assert.rejects(updatePortgroup(sql, anon1.uuid, { name: 'bond1' }), (e: unknown) => e instanceof DuplicateError && e.field === 'name');

  const port = await store.createPort({ uuid: randomUUID(), address: '52:54:00:00:00:02', node_uuid: n1.uuid, portgroup_uuid: pg.uuid });
  assert.equal(await countPortgroupPorts(sql, pg.uuid), 1);
  assert.deepEqual((await store.listPorts({ portgroup_uuid: pg.uuid })).map((p) => p.uuid), [port.uuid]);
  assert.equal(await deletePortgroup(sql, pg.uuid), 'not-empty');
  await store.updatePort(port.uuid, { portgroup_uuid: null });
  assert.equal(await deletePortgroup(sql, pg.uuid), 'deleted');
  assert.equal(await deletePortgroup(sql, pg.uuid), 'missing');

  await store.deleteNode(n2.uuid);
  assert.equal((await listPortgroups(sql, { node_uuid: n2.uuid }, missing)).length, 0, 'a node takes its portgroups along');
});
