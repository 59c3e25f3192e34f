/**
 * The BIOS settings cache (store/bios-settings.ts, migration 30) on both stores: sync creates, updates (with
 * updated_at), deletes what is not given and leaves the unchanged alone; upsert only touches what it is given;
 * registry fields round-trip (booleans, numbers, the allowable_values list); rows go with their node. Volume
 * connectors and targets (store/volumes.ts, migration 31): unique keys as DuplicateError, update, cascade.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { initialState } from '../../conductor/states.js';
import { DuplicateError } from '../../conductor/store/types.js';
import { STORE_BACKENDS } from '../fixtures/stores.js';
import { biosSettings } from '../../conductor/store/bios-settings.js';
import { volumes } from '../../conductor/store/volumes.js';

for (const b of STORE_BACKENDS) test(`${b.name} store: BIOS settings cache sync, upsert, registry fields, cascade`, { skip: b.skip }, async (t) => {
  const store = await b.open(t);
  const mk = async () => (await store.createNode({ uuid: randomUUID(), driver: 'fake-hardware', ...initialState(82) })).uuid;
  const a = await mk();
  const other = await mk();

  let r = await biosSettings(store).sync(a, [{ name: 'B', value: '1' }, { name: 'A', value: 'x' }]);
  assert.deepEqual(r, { created: ['B', 'A'], updated: [], deleted: [], unchanged: [] });
  await biosSettings(store).sync(other, [{ name: 'A', value: 'other' }]);
  let rows = await biosSettings(store).list(a);
  assert.deepEqual(rows.map((s) => [s.name, s.value, s.updated_at]), [['A', 'x', null], ['B', '1', null]]);
  assert.match(rows[0]!.created_at, /^\d{4}-\d\d-\d\dT/);

  r = await biosSettings(store).sync(a, [{ name: 'A', value: 'y' }, { name: 'C', value: null }, { name: 'B', value: '1' }]);
  assert.deepEqual(r, { created: ['C'], updated: ['A'], deleted: [], unchanged: ['B'] });
  r = await biosSettings(store).sync(a, [{ name: 'A', value: 'y' }]);
  assert.deepEqual(r, { created: [], updated: [], deleted: ['B', 'C'], unchanged: ['A'] });
  rows = await biosSettings(store).list(a);
  assert.equal(rows.length, 1);
  assert.notEqual(rows[0]!.updated_at, null, 'the changed value has updated_at');

  await biosSettings(store).upsert(a, [{ name: 'Mode', value: 'Uefi', attribute_type: 'Enumeration', allowable_values: ['Bios', 'Uefi'],
    read_only: false, reset_required: true, unique: false, lower_bound: null, upper_bound: 10, min_length: 0, max_length: 16 }]);
  const mode = await biosSettings(store).get(a, 'Mode');
  assert.deepEqual({ ...mode, created_at: undefined }, { node_uuid: a, name: 'Mode', value: 'Uefi', attribute_type: 'Enumeration',
    allowable_values: ['Bios', 'Uefi'], lower_bound: null, max_length: 16, min_length: 0, read_only: false, reset_required: true,
    unique: false, upper_bound: 10, created_at: undefined, updated_at: null });
  assert.deepEqual((await biosSettings(store).list(a)).map((s) => s.name), ['A', 'Mode'], 'upsert keeps the others');
  assert.equal(await biosSettings(store).get(a, 'Nope'), undefined);
  assert.deepEqual((await biosSettings(store).list(other)).map((s) => s.value), ['other'], 'another node untouched');

  await biosSettings(store).deleteAll(a);
  assert.deepEqual(await biosSettings(store).list(a), []);
  await biosSettings(store).sync(a, [{ name: 'Z', value: '1' }]);
  await store.deleteNode(a);
  assert.deepEqual(await biosSettings(store).list(a), [], 'rows go with the node');
  assert.equal((await biosSettings(store).list(other)).length, 1);
});

for (const b of STORE_BACKENDS) test(`${b.name} store: volume connectors and targets, unique keys, update, cascade`, { skip: b.skip }, async (t) => {
  const store = await b.open(t);
  const mk = async () => (await store.createNode({ uuid: randomUUID(), driver: 'fake-hardware', ...initialState(82) })).uuid;
  const a = await mk();
  const other = await mk();
  const c1 = await volumes(store).createConnector({ uuid: randomUUID(), node_uuid: a, type: 'iqn', connector_id: 'iqn.1', extra: { k: 1 } });
  assert.deepEqual([c1.type, c1.connector_id, c1.extra, c1.updated_at], ['iqn', 'iqn.1', { k: 1 }, null]);
  await assert.rejects(volumes(store).createConnector({ uuid: randomUUID(), node_uuid: other, type: 'iqn', connector_id: 'iqn.1', extra: {} }),
    (e: unknown) => e instanceof DuplicateError && e.field === 'type_connector_id');
  await assert.rejects(volumes(store).createConnector({ uuid: c1.uuid, node_uuid: other, type: 'ip', connector_id: '10.0.0.1', extra: {} }),
    (e: unknown) => e instanceof DuplicateError && e.field === 'uuid');
  await volumes(store).createConnector({ uuid: randomUUID(), node_uuid: other, type: 'iqn', connector_id: 'iqn.2', extra: {} });
  assert.deepEqual((await volumes(store).listConnectors(a)).map((c) => c.connector_id), ['iqn.1']);
  assert.equal((await volumes(store).listConnectors()).length, 2);
  const up = await volumes(store).updateConnector({ ...c1, connector_id: 'iqn.3' });
  assert.equal(up.connector_id, 'iqn.3');
  assert.notEqual(up.updated_at, null);

  const t0 = await volumes(store).createTarget({ uuid: randomUUID(), node_uuid: a, volume_type: 'iscsi', volume_id: 'v0', boot_index: 0,
    properties: { lun: 0 }, extra: {} });
  assert.deepEqual([t0.boot_index, t0.properties], [0, { lun: 0 }]);
  await assert.rejects(volumes(store).createTarget({ uuid: randomUUID(), node_uuid: a, volume_type: 'iscsi', volume_id: 'v1', boot_index: 0,
    properties: {}, extra: {} }), (e: unknown) => e instanceof DuplicateError && e.field === 'node_boot_index');
  await volumes(store).createTarget({ uuid: randomUUID(), node_uuid: other, volume_type: 'iscsi', volume_id: 'v1', boot_index: 0, properties: {}, extra: {} });
  assert.equal((await volumes(store).getTarget(t0.uuid))?.volume_id, 'v0');

  await store.deleteNode(a);
  assert.deepEqual(await volumes(store).listConnectors(a), []);
  assert.deepEqual(await volumes(store).listTargets(a), []);
  assert.equal(await volumes(store).getConnector(c1.uuid), undefined);
  assert.equal((await volumes(store).listTargets()).length, 1, "the other node's target stays");
  await volumes(store).deleteTarget((await volumes(store).listTargets())[0]!.uuid);
  assert.deepEqual(await volumes(store).listTargets(), []);
});
