/**
 * The cloud-facing parts of the API outside nodes/ports: writable traits (1.37), events (1.54) and shards (1.82),
 * through the real `baremetal` CLI where it has commands (node add/remove trait, trait list; python3-ironicclient
 * 5.0.1 has no shard command) and raw HTTP for
 * version gates and bad input — with Ironic 21.4's status codes and texts.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { haveBaremetalCli, startTestConductor, type TestConductor } from '../fixtures/conductor.js';

const reason = (await haveBaremetalCli()) ? undefined : 'the baremetal CLI (python3-ironicclient) is not installed';

describe('cloud API: traits, events, shards', { skip: reason ?? false }, () => {
  let fx: TestConductor;
  let uuid: string;
  const v = (minor: number): Record<string, string> => ({ 'X-OpenStack-Ironic-API-Version': `1.${minor}` });
  const cli = async (args: string[]): Promise<string> => {
    const r = await fx.cli(args);
    assert.equal(r.exitCode, 0, `baremetal ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const traits = async (): Promise<string[]> => {
    const r = await fx.api('GET', `/v1/nodes/${uuid}/traits`, undefined, v(82));
    assert.equal(r.status, 200);
    return (r.body as { traits: string[] }).traits;
  };

  before(async () => {
    fx = await startTestConductor();
    uuid = (JSON.parse(await cli(['node', 'create', '--driver', 'fake-hardware', '-f', 'json'])) as { uuid: string }).uuid;
  });
  after(async () => { await fx?.close(); });

  test('traits: the CLI adds standard and custom traits, removes one, then all', async () => {
    await cli(['node', 'add', 'trait', uuid, 'CUSTOM_GPU', 'HW_CPU_X86_AVX2']);
    assert.deepEqual(await traits(), ['CUSTOM_GPU', 'HW_CPU_X86_AVX2']);
    const listed = JSON.parse(await cli(['node', 'trait', 'list', uuid, '-f', 'json'])) as { Traits: string }[];
    assert.deepEqual(listed.map((t) => t.Traits).sort(), ['CUSTOM_GPU', 'HW_CPU_X86_AVX2']);
    await cli(['node', 'remove', 'trait', uuid, 'CUSTOM_GPU']);
    assert.deepEqual(await traits(), ['HW_CPU_X86_AVX2']);
    await cli(['node', 'remove', 'trait', uuid, '--all']);
    assert.deepEqual(await traits(), []);
  });

  test('traits: PUT replaces the set; bad names, unknown standard traits and more than 50 are refused', async () => {
    let r = await fx.api('PUT', `/v1/nodes/${uuid}/traits`, { traits: ['CUSTOM_B', 'CUSTOM_A', 'CUSTOM_A'] }, v(37));
    assert.equal(r.status, 204);
    assert.deepEqual(await traits(), ['CUSTOM_A', 'CUSTOM_B']);
    r = await fx.api('PUT', `/v1/nodes/${uuid}/traits/custom_lower`, undefined, v(37));
    assert.equal(r.status, 400);
    assert.match(JSON.stringify(r.body), /Invalid trait/);
    r = await fx.api('PUT', `/v1/nodes/${uuid}/traits/HW_NO_SUCH_STANDARD_TRAIT`, undefined, v(37));
    assert.equal(r.status, 400, 'a name that looks standard but is not in os-traits');
    r = await fx.api('PUT', `/v1/nodes/${uuid}/traits`, { traits: Array.from({ length: 51 }, (_, i) => `CUSTOM_T${i}`) }, v(37));
    assert.equal(r.status, 400);
    assert.match(JSON.stringify(r.body), /maximum number of traits per node \(51 vs\. 50\)/);
    r = await fx.api('PUT', `/v1/nodes/${uuid}/traits`, { trait: 'CUSTOM_X' }, v(37));
    assert.equal(r.status, 400, 'unknown body key');
    r = await fx.api('DELETE', `/v1/nodes/${uuid}/traits/CUSTOM_ZZZ`, undefined, v(37));
    assert.equal(r.status, 404);
    assert.match(JSON.stringify(r.body), /doesn't have a trait 'CUSTOM_ZZZ'/);
    assert.deepEqual(await traits(), ['CUSTOM_A', 'CUSTOM_B'], 'refused requests changed nothing');
    r = await fx.api('PUT', `/v1/nodes/${uuid}/traits/CUSTOM_C`, undefined, v(36));
    assert.equal(r.status, 406, 'traits are 1.37');
  });

  test('events: valid network events are accepted (204), bad ones 400, before 1.54 404', async () => {
    const ev = { event: 'network.bind_port', port_id: '11111111-2222-3333-4444-555555555555', mac_address: '52:54:00:12:34:56',
      status: 'ACTIVE', device_id: '66666666-7777-8888-9999-000000000000', 'binding:host_id': null, 'binding:vnic_type': 'baremetal' };
    assert.equal((await fx.api('POST', '/v1/events', { events: [ev] }, v(54))).status, 204);
    for (const bad of [{ events: [] }, { events: [{ ...ev, event: 'compute.boom' }] }, { events: [{ ...ev, port_id: 'nope' }] },
      { events: [{ ...ev, mac_address: 'zz' }] }, { events: [{ ...ev, extra: 1 }] }, { events: [ev], more: 1 }]) {
      const r = await fx.api('POST', '/v1/events', bad, v(54));
      assert.equal(r.status, 400, JSON.stringify(bad));
    }
    assert.equal((await fx.api('POST', '/v1/events', { events: [ev] }, v(53))).status, 404);
  });

  test('shards: counts per shard, unsharded as "None", most populated first; 404 before 1.82', async () => {
    for (const shard of ['rack-a', 'rack-a', 'rack-b']) {
      const r = await fx.api('POST', '/v1/nodes', { driver: 'fake-hardware', shard }, v(82));
      assert.equal(r.status, 201);
    }
    const r = await fx.api('GET', '/v1/shards', undefined, v(82));
    assert.equal(r.status, 200);
    const shards = (r.body as { shards: { name: string; count: number }[] }).shards;
    assert.deepEqual(shards.find((s) => s.name === 'rack-a'), { name: 'rack-a', count: 2 });
    assert.deepEqual(shards.find((s) => s.name === 'rack-b'), { name: 'rack-b', count: 1 });
    assert.equal(shards.find((s) => s.name === 'None')?.count, 1);
    assert.equal(shards[0]?.count, 2, 'most populated first');
    assert.equal((await fx.api('GET', '/v1/shards', undefined, v(81))).status, 404);
    const root = await fx.api('GET', '/v1', undefined, v(82));
    assert.ok((root.body as Record<string, unknown>).shards, 'the v1 root links shards at 1.82');
  });
});
