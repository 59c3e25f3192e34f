/**
 * Issue 21 (bios): volume connectors and targets (1.32) through the real `baremetal` CLI (volume connector
 * create/list/delete, volume target create/list) and raw HTTP for gates, unique keys, the power-off rule and bad
 * input, with Ironic 21.4's status codes and texts.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { haveBaremetalCli, startTestConductor, type TestConductor } from '../fixtures/conductor.js';

const reason = (await haveBaremetalCli()) ? undefined : 'the baremetal CLI (python3-ironicclient) is not installed';
type Json = Record<string, unknown>;

describe('volume connectors and targets', { skip: reason ?? false }, () => {
  let fx: TestConductor;
  let uuid: string;
  const v = (minor: number): Record<string, string> => ({ 'X-OpenStack-Ironic-API-Version': `1.${minor}` });
  const cli = async (args: string[]): Promise<string> => {
    const r = await fx.cli(args, { timeoutMs: 60_000 });
    assert.equal(r.exitCode, 0, `baremetal ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const errText = (body: unknown): string =>
    (JSON.parse((body as { error_message: string }).error_message) as { faultstring: string }).faultstring;

  before(async () => {
    fx = await startTestConductor();
    uuid = (JSON.parse(await cli(['node', 'create', '--driver', 'fake-hardware', '--name', 'vol-node', '-f', 'json'])) as Json).uuid as string;
    const n = (await fx.api('GET', `/v1/nodes/${uuid}`)).body as Json;
    assert.equal(n.storage_interface, 'fake');
  });
  after(async () => { await fx?.close(); });

  test('connectors: the CLI creates, lists and deletes; unique (type, connector_id); power-off rule', async () => {
    const made = JSON.parse(await cli(['volume', 'connector', 'create', '--node', uuid, '--type', 'iqn',
      '--connector-id', 'iqn.2017-07.org.example:node1', '--extra', 'rack=a', '-f', 'json'])) as Json;
    assert.equal(made.type, 'iqn');
    assert.deepEqual(made.extra, { rack: 'a' });
    await cli(['volume', 'connector', 'create', '--node', uuid, '--type', 'wwpn', '--connector-id', '50:01:43:80:12:34:56:78']);
    const listed = JSON.parse(await cli(['volume', 'connector', 'list', '--node', 'vol-node', '-f', 'json'])) as Json[];
    assert.deepEqual(listed.map((x) => [x.Type, x['Connector ID']]),
      [['iqn', 'iqn.2017-07.org.example:node1'], ['wwpn', '50:01:43:80:12:34:56:78']]);

    let r = await fx.api('POST', '/v1/volume/connectors', { node_uuid: uuid, type: 'iqn', connector_id: 'iqn.2017-07.org.example:node1' });
    assert.equal(r.status, 409);
    assert.equal(errText(r.body), 'A volume connector with type iqn and connector ID iqn.2017-07.org.example:node1 already exists.');
    r = await fx.api('POST', '/v1/volume/connectors', { node_uuid: uuid, type: 'iqn', connector_id: 'x', uuid: made.uuid });
    assert.equal(r.status, 409);
    assert.equal(errText(r.body), `A volume connector with UUID ${String(made.uuid)} already exists.`);

    // Changes need the node powered off.
    assert.equal((await fx.api('PUT', `/v1/nodes/${uuid}/states/power`, { target: 'power on' })).status, 202);
    for (let i = 0; i < 100 && ((await fx.api('GET', `/v1/nodes/${uuid}`)).body as Json).power_state !== 'power on'; i++) {
      await new Promise((res) => setTimeout(res, 25));
    }
    r = await fx.api('DELETE', `/v1/volume/connectors/${String(made.uuid)}`);
    assert.equal(r.status, 400);
    assert.equal(errText(r.body), `The requested action "volume connector deletion" can not be performed on node "${uuid}" while it is in state "power on".`);
    r = await fx.api('PATCH', `/v1/volume/connectors/${String(made.uuid)}`, [{ op: 'replace', path: '/connector_id', value: 'iqn.x' }]);
    assert.equal(r.status, 400);
    assert.equal((await fx.api('PUT', `/v1/nodes/${uuid}/states/power`, { target: 'power off' })).status, 202);
    for (let i = 0; i < 100 && ((await fx.api('GET', `/v1/nodes/${uuid}`)).body as Json).power_state !== 'power off'; i++) {
      await new Promise((res) => setTimeout(res, 25));
    }
    r = await fx.api('PATCH', `/v1/volume/connectors/${String(made.uuid)}`, [{ op: 'replace', path: '/connector_id', value: 'iqn.x' }]);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal((r.body as Json).connector_id, 'iqn.x');
    assert.notEqual((r.body as Json).updated_at, null);
    r = await fx.api('PATCH', `/v1/volume/connectors/${String(made.uuid)}`, [{ op: 'replace', path: '/uuid', value: made.uuid }]);
    assert.equal(r.status, 400);
    await cli(['volume', 'connector', 'delete', String(made.uuid)]);
    assert.equal((await fx.api('GET', `/v1/volume/connectors/${String(made.uuid)}`)).status, 404);
    const left = JSON.parse(await cli(['volume', 'connector', 'list', '-f', 'json'])) as Json[];
    assert.deepEqual(left.map((x) => x.Type), ['wwpn']);
  });

  test('targets: the CLI creates and lists; boot_index unique per node; detail and fields', async () => {
    const t0 = JSON.parse(await cli(['volume', 'target', 'create', '--node', uuid, '--type', 'iscsi', '--boot-index', '0',
      '--volume-id', 'vol-0001', '--property', 'target_lun=0', '-f', 'json'])) as Json;
    assert.deepEqual([t0.volume_type, t0.boot_index, t0.properties], ['iscsi', 0, { target_lun: 0 }]);
    await cli(['volume', 'target', 'create', '--node', uuid, '--type', 'fibre_channel', '--boot-index', '1', '--volume-id', 'vol-0002']);
    const listed = JSON.parse(await cli(['volume', 'target', 'list', '--node', uuid, '-f', 'json'])) as Json[];
    assert.deepEqual(listed.map((x) => [x['Driver Volume Type'], x['Boot Index'], x['Volume ID']]),
      [['iscsi', 0, 'vol-0001'], ['fibre_channel', 1, 'vol-0002']]);
    let r = await fx.api('POST', '/v1/volume/targets', { node_uuid: uuid, volume_type: 'iscsi', boot_index: 0, volume_id: 'vol-9' });
    assert.equal(r.status, 409);
    assert.equal(errText(r.body), "A volume target with boot index '0' for the same node already exists.");
    r = await fx.api('GET', `/v1/nodes/${uuid}/volume/targets?detail=true`);
    assert.deepEqual(Object.keys(((r.body as { targets: Json[] }).targets[0])!).sort(),
      ['boot_index', 'created_at', 'extra', 'links', 'node_uuid', 'properties', 'updated_at', 'uuid', 'volume_id', 'volume_type']);
    r = await fx.api('GET', '/v1/volume/targets?fields=volume_id');
    assert.deepEqual((r.body as { targets: Json[] }).targets.map((x) => Object.keys(x).sort()), [['links', 'volume_id'], ['links', 'volume_id']]);
    r = await fx.api('GET', '/v1/volume/targets?fields=volume_id&detail=true');
    assert.equal(r.status, 400);
  });

  test('gates, bad bodies, unknown nodes, the node-scoped collections', async () => {
    assert.equal((await fx.api('GET', '/v1/volume', undefined, v(31))).status, 404);
    assert.equal((await fx.api('GET', '/v1/volume/connectors', undefined, v(31))).status, 404);
    assert.equal((await fx.api('GET', `/v1/nodes/${uuid}/volume`, undefined, v(31))).status, 404);
    let r = await fx.api('GET', '/v1/volume', undefined, v(32));
    assert.equal(r.status, 200);
    assert.equal(((r.body as Json).connectors as { href: string }[])[0]!.href, `${fx.url}/v1/volume/connectors/`);
    r = await fx.api('GET', `/v1/nodes/${uuid}/volume`, undefined, v(32));
    assert.equal(((r.body as Json).targets as { href: string }[])[0]!.href, `${fx.url}/v1/nodes/${uuid}/volume/targets`);

    // The node body links its volume from 1.32 (self + bookmark), not before, and not in a fields subset.
    assert.equal(((await fx.api('GET', '/v1', undefined, v(31))).body as Json).volume, undefined);
    assert.equal(((await fx.api('GET', '/v1', undefined, v(32))).body as { volume: { href: string }[] }).volume[0]!.href, `${fx.url}/v1/volume/`);
    r = await fx.api('GET', `/v1/nodes/${uuid}`, undefined, v(32));
    assert.deepEqual((r.body as Json).volume, [{ href: `${fx.url}/v1/nodes/${uuid}/volume`, rel: 'self' },
      { href: `${fx.url}/nodes/${uuid}/volume`, rel: 'bookmark' }]);
    assert.equal(((await fx.api('GET', `/v1/nodes/${uuid}`, undefined, v(31))).body as Json).volume, undefined);
    r = await fx.api('GET', '/v1/nodes/detail', undefined, v(82));
    assert.equal(((r.body as { nodes: Json[] }).nodes[0]!.volume as Json[]).length, 2);
    assert.equal(((await fx.api('GET', `/v1/nodes/${uuid}?fields=uuid`)).body as Json).volume, undefined);

    r = await fx.api('POST', '/v1/volume/connectors', { node_uuid: uuid, type: 'iqn' });
    assert.equal(r.status, 400);
    assert.match(errText(r.body), /'connector_id' is a required property/);
    r = await fx.api('POST', '/v1/volume/targets', { node_uuid: uuid, volume_type: 'iscsi', boot_index: 'first', volume_id: 'v' });
    assert.equal(r.status, 400);
    r = await fx.api('POST', '/v1/volume/connectors', { node_uuid: uuid, type: 'iqn', connector_id: 'a', color: 'red' });
    assert.equal(r.status, 400);
    r = await fx.api('POST', '/v1/volume/connectors', { node_uuid: '11111111-2222-3333-4444-555555555555', type: 'iqn', connector_id: 'a' });
    assert.equal(r.status, 400);
    assert.equal(errText(r.body), "Invalid input for field/attribute node_uuid. Value: '11111111-2222-3333-4444-555555555555'. ");
    r = await fx.api('POST', '/v1/volume/connectors', { node_uuid: 'vol-node', type: 'iqn', connector_id: 'a' });
    assert.equal(r.status, 400, 'node_uuid must be a UUID');
    r = await fx.api('POST', `/v1/nodes/${uuid}/volume/connectors`, { node_uuid: uuid, type: 'iqn', connector_id: 'a' });
    assert.equal(r.status, 403);
    assert.equal(errText(r.body), 'Operation not permitted.');
    r = await fx.api('GET', '/v1/volume/connectors/not-a-uuid');
    assert.equal(r.status, 400);
    r = await fx.api('GET', '/v1/volume/targets/11111111-2222-3333-4444-555555555555');
    assert.equal(r.status, 404);
    assert.equal(errText(r.body), 'Volume target 11111111-2222-3333-4444-555555555555 could not be found.');
    r = await fx.api('GET', '/v1/volume/connectors?node=no-such-node');
    assert.equal(r.status, 404);
  });
  test('lists page as Ironic: limit, marker, sort_key, sort_dir, the next link, max_limit, bad input', async () => {
    const made: string[] = [];
    for (const id of ['pg-c', 'pg-a', 'pg-b']) {
      const r = await fx.api('POST', '/v1/volume/connectors', { node_uuid: uuid, type: 'iqn', connector_id: id });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      made.push((r.body as Json).uuid as string);
    }
    const ids = async (path: string): Promise<string[]> => {
      const r = await fx.api('GET', path);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return ((r.body as { connectors: Json[] }).connectors).map((x) => x.connector_id as string).filter((x) => x.startsWith('pg-'));
    };
    assert.deepEqual(await ids('/v1/volume/connectors?sort_key=connector_id'), ['pg-a', 'pg-b', 'pg-c']);
    assert.deepEqual(await ids(`/v1/nodes/${uuid}/volume/connectors?sort_key=connector_id&sort_dir=desc`), ['pg-c', 'pg-b', 'pg-a']);
    // Page of 1 sorted by connector_id descending from pg-c: the next link names the top-level collection.
    let r = await fx.api('GET', `/v1/nodes/${uuid}/volume/connectors?sort_key=connector_id&sort_dir=desc&limit=1&marker=${made[0]!}`);
    const body = r.body as { connectors: Json[]; next: string };
    assert.deepEqual(body.connectors.map((x) => x.connector_id), ['pg-b']);
    assert.equal(body.next, `${fx.url}/v1/volume/connectors?sort_key=connector_id&sort_dir=desc&fields=uuid,node_uuid,type,connector_id&limit=1&marker=${made[2]!}`);
    r = await fx.api('GET', `/v1/volume/connectors?detail=True&limit=1&marker=${made[1]!}`);
    assert.equal((r.body as { next: string }).next, `${fx.url}/v1/volume/connectors?sort_key=id&sort_dir=asc&detail=True&limit=1&marker=${made[2]!}`);
    r = await fx.api('GET', `/v1/volume/connectors?limit=1000&marker=${made[1]!}`);
    assert.equal((r.body as Json).next, undefined, 'no next link on a short page');

    r = await fx.api('GET', '/v1/volume/connectors?marker=11111111-2222-3333-4444-555555555555');
    assert.equal(r.status, 404);
    assert.equal(errText(r.body), 'Volume connector 11111111-2222-3333-4444-555555555555 could not be found.');
    r = await fx.api('GET', '/v1/volume/targets?marker=nope');
    assert.equal(r.status, 400);
    assert.equal(errText(r.body), 'Expected UUID for marker: nope');
    r = await fx.api('GET', '/v1/volume/connectors?sort_key=extra');
    assert.equal(r.status, 400);
    assert.equal(errText(r.body), 'The sort_key value extra is an invalid field for sorting');
    r = await fx.api('GET', '/v1/volume/targets?sort_key=properties');
    assert.equal(r.status, 400);
    r = await fx.api('GET', '/v1/volume/targets?sort_key=color');
    assert.equal(r.status, 400);
    assert.equal(errText(r.body), 'The sort_key value "color" is an invalid field for sorting');
    r = await fx.api('GET', '/v1/volume/connectors?sort_dir=up');
    assert.equal(r.status, 400);
    r = await fx.api('GET', '/v1/volume/connectors?limit=0');
    assert.equal(r.status, 400);
    assert.equal(errText(r.body), 'Limit must be positive');
    r = await fx.api('GET', '/v1/volume/targets?sort_key=boot_index&sort_dir=desc&fields=boot_index');
    assert.deepEqual((r.body as { targets: Json[] }).targets.map((x) => x.boot_index), [1, 0]);
  });
});
