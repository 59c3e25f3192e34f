/**
 * Two conductor processes on one PostgreSQL database: the read paths that avoid work (detail list pages cached
 * per conductor and checked against the database in one aggregated row, lookups batched into one statement per
 * event-loop turn) never answer with data older than a write another conductor has acknowledged: each write
 * through conductor A is seen by the very next read through conductor B.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { havePostgres, startPostgres } from '../../lab/postgres.js';
import { startCluster } from '../fixtures/cluster.js';

interface Node { uuid: string; name: string; extra: Record<string, unknown>; properties: Record<string, unknown>;
  reservation: string | null; driver_info: Record<string, unknown> }

test('a write through one PostgreSQL conductor is seen by the next read through another: detail lists, lookups', {
  timeout: 120_000, skip: havePostgres() ? false : 'PostgreSQL 15 is not installed (npm run setup installs it)',
}, async (t) => {
  const pg = await startPostgres({ fast: true });
  t.after(() => pg.stop());
  const cl = await startCluster({ names: ['read-a', 'read-b'],
    config: { database: { url: await pg.createDatabase() }, restrict_lookup: false } });
  t.after(() => cl.close());
  const ok = async (name: string, method: string, path: string, body?: unknown, status = 200): Promise<unknown> => {
    const r = await cl.api(name, method, path, body);
    assert.equal(r.status, status, `${method} ${path} via ${name}: ${JSON.stringify(r.body)}`);
    return r.body;
  };
  const detail = async (name: string): Promise<Node[]> => (await ok(name, 'GET', '/v1/nodes/detail') as { nodes: Node[] }).nodes;

  const nodes: Node[] = [];
  for (let i = 0; i < 5; i++) {
    nodes.push(await ok('read-a', 'POST', '/v1/nodes', { driver: 'fake-hardware', name: `n${i}`,
      driver_info: { ipmi_password: 'secret' } }, 201) as Node);
  }
  const macs = nodes.map((_, i) => `52:54:00:00:aa:0${i}`);
  for (const [i, n] of nodes.entries()) await ok('read-a', 'POST', '/v1/ports', { address: macs[i], node_uuid: n.uuid }, 201);
  const first = nodes[0] as Node;
  const mac0 = macs[0] as string;

  // B renders and keeps the page, and has looked the node up.
  assert.equal((await detail('read-b')).length, 5);
  assert.equal((await detail('read-b')).length, 5);
  const lookup = async (name: string, mac: string): Promise<Node> =>
    (await ok(name, 'GET', `/v1/lookup?addresses=${mac}`) as { node: Node }).node;
  assert.equal((await lookup('read-b', mac0)).uuid, first.uuid);

  for (let round = 0; round < 5; round++) {
    await ok('read-a', 'PATCH', `/v1/nodes/${first.uuid}`, [
      { op: 'add', path: '/extra/round', value: round }, { op: 'add', path: '/properties/round', value: round }]);
    const listed = (await detail('read-b')).find((n) => n.uuid === first.uuid);
    assert.equal(listed?.extra.round, round, 'the detail list through B shows A\'s write at once');
    assert.equal(listed?.driver_info.ipmi_password, '******', 'secrets stay masked in a PostgreSQL-rendered page');
    assert.equal((await lookup('read-b', mac0)).properties.round, round, 'the lookup through B shows A\'s write at once');
  }

  // Concurrent lookups through B (batched into one statement) each get their own node.
  const many = await Promise.all([...macs, ...macs].map((m) => lookup('read-b', m)));
  assert.deepEqual(many.map((n) => n.uuid), [...nodes, ...nodes].map((n) => n.uuid));

  // A node added, one deleted, a port deleted through A: B's next reads know.
  const added = await ok('read-a', 'POST', '/v1/nodes', { driver: 'fake-hardware', name: 'added' }, 201) as Node;
  assert.deepEqual((await detail('read-b')).map((n) => n.name), ['n0', 'n1', 'n2', 'n3', 'n4', 'added']);
  await ok('read-a', 'DELETE', `/v1/nodes/${added.uuid}`, undefined, 204);
  assert.equal((await detail('read-b')).length, 5);
  const port = (await ok('read-a', 'GET', `/v1/ports?address=${mac0}`) as { ports: { uuid: string }[] }).ports[0];
  await ok('read-a', 'DELETE', `/v1/ports/${port?.uuid}`, undefined, 204);
  assert.equal((await cl.api('read-b', 'GET', `/v1/lookup?addresses=${mac0}`)).status, 404);
  // And the other way round: B writes, A reads.
  await ok('read-b', 'PATCH', `/v1/nodes/${first.uuid}`, [{ op: 'replace', path: '/name', value: 'renamed' }]);
  assert.equal((await detail('read-a')).find((n) => n.uuid === first.uuid)?.name, 'renamed');
});
