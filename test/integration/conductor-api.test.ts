/**
 * HTTP-level behaviour of the conductor API: root documents and microversion headers, Ironic's error body,
 * and a table of bad requests, each with its status and message.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { havePostgres } from '../../lab/postgres.js';
import { startTestConductor, type TestConductor } from '../fixtures/conductor.js';

type Obj = Record<string, unknown>;

async function waitState(c: TestConductor, uuid: string, state: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const n = (await c.api('GET', `/v1/nodes/${uuid}`)).body as Obj;
    if (n.provision_state === state && n.reservation === null) return;
    if (Date.now() > deadline) throw new Error(`node ${uuid} stuck in ${String(n.provision_state)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function faultOf(body: unknown): Obj {
  assert.ok(body && typeof body === 'object' && typeof (body as Obj).error_message === 'string',
    `Ironic error body expected, got ${JSON.stringify(body)}`);
  const inner = JSON.parse((body as { error_message: string }).error_message) as Obj;
  assert.deepEqual(Object.keys(inner), ['faultcode', 'faultstring', 'debuginfo']);
  assert.equal(inner.debuginfo, null);
  return inner;
}

// The same API, on each store backend (PostgreSQL: a throw-away cluster for this file, test/fixtures/stores.ts).
for (const database of ['sqlite', 'postgres'] as const) test(`conductor HTTP API (${database} store)`, { skip: database === 'postgres' && !havePostgres() ? 'PostgreSQL 15 is not installed' : false }, async (t) => {
  const c = await startTestConductor({ database, config: { max_body_bytes: 64 * 1024 } });
  t.after(() => c.close());

  await t.test('root documents and microversion headers', async () => {
    const root = await c.fetch('/');
    const doc = await root.json() as Obj;
    assert.equal(root.status, 200);
    assert.equal(root.headers.get('x-openstack-ironic-api-version'), null, 'GET / has no version headers');
    assert.equal((doc.default_version as Obj).version, '1.82');
    assert.equal((doc.default_version as Obj).min_version, '1.1');
    assert.deepEqual((doc.default_version as Obj).links, [{ href: `${c.url}/v1/`, rel: 'self' }]);
    const v1 = await c.fetch('/v1');
    assert.equal(v1.status, 200);
    assert.equal(v1.headers.get('x-openstack-ironic-api-minimum-version'), '1.1');
    assert.equal(v1.headers.get('x-openstack-ironic-api-maximum-version'), '1.82');
    assert.equal(v1.headers.get('x-openstack-ironic-api-version'), '1.1', 'no header means 1.1');
    const v1doc = await v1.json() as Obj;
    assert.equal(v1doc.lookup, undefined, 'lookup links need 1.22');
    const latest = await c.fetch(`/v1/nodes`, { headers: { ...c.headers(), 'X-OpenStack-Ironic-API-Version': 'latest' } });
    assert.equal(latest.headers.get('x-openstack-ironic-api-version'), '1.82');
    const bad = await c.fetch(`/v1/nodes`, { headers: { ...c.headers(), 'X-OpenStack-Ironic-API-Version': '1.99' } });
    assert.equal(bad.status, 406);
    assert.equal(bad.headers.get('x-openstack-ironic-api-maximum-version'), '1.82');
    assert.equal(bad.headers.get('x-openstack-ironic-api-minimum-version'), '1.1');
    const generic = await c.fetch(`/v1/nodes`, { headers: { ...c.headers(), 'OpenStack-API-Version': 'baremetal 1.50' } });
    assert.equal(generic.headers.get('x-openstack-ironic-api-version'), '1.50');
    const unversioned = await c.fetch(`/nodes`, { headers: { ...c.headers(), 'X-OpenStack-Ironic-API-Version': '1.60' } });
    assert.equal(unversioned.status, 200, 'paths without /v1 are routed into v1');
  });

  const n1 = (await c.api('POST', '/v1/nodes', { driver: 'fake-hardware', name: 'n1' })).body as Obj;
  const act = (await c.api('POST', '/v1/nodes', { driver: 'fake-hardware', name: 'act' })).body as Obj;
  for (const [verb, state] of [['manage', 'manageable'], ['provide', 'available'], ['active', 'active']]) {
    const r = await c.api('PUT', `/v1/nodes/${String(act.uuid)}/states/provision`, { target: verb });
    assert.equal(r.status, 202);
    await waitState(c, act.uuid as string, state as string);
  }
  await c.api('POST', '/v1/ports', { address: '52:54:00:00:00:01', node_uuid: n1.uuid });
  const nid = n1.uuid as string;
  const big = JSON.stringify({ driver: 'fake-hardware', extra: { blob: 'x'.repeat(100 * 1024) } });

  /** [name, method, path, body, headers, status, message pattern] */
  const cases: [string, string, string, unknown, Record<string, string>, number, RegExp][] = [
    ['malformed JSON', 'POST', '/v1/nodes', '{"driver": ', {}, 400, /not valid JSON/],
    ['body is a list', 'POST', '/v1/nodes', [], {}, 400, /expected a JSON object/],
    ['missing driver', 'POST', '/v1/nodes', {}, {}, 400, /Mandatory field missing: driver/],
    ['unknown field', 'POST', '/v1/nodes', { driver: 'fake-hardware', colour: 'red' }, {}, 400, /Additional properties are not allowed \('colour' was unexpected\)/],
    ['unknown driver', 'POST', '/v1/nodes', { driver: 'nope' }, {}, 400, /No valid host was found.*nope/],
    ['bad uuid', 'POST', '/v1/nodes', { driver: 'fake-hardware', uuid: 'abc' }, {}, 400, /Expected a UUID/],
    ['bad name', 'POST', '/v1/nodes', { driver: 'fake-hardware', name: 'has space' }, {}, 400, /Expected a logical name/],
    ['duplicate name', 'POST', '/v1/nodes', { driver: 'fake-hardware', name: 'n1' }, {}, 409, /A node with name n1 already exists/],
    ['driver_info not a dict', 'POST', '/v1/nodes', { driver: 'fake-hardware', driver_info: 'x' }, {}, 400, /expected a dict/],
    ['field newer than version', 'POST', '/v1/nodes', { driver: 'fake-hardware', owner: 'me' }, { 'X-OpenStack-Ironic-API-Version': '1.40' }, 406, /not acceptable/i],
    ['oversized body', 'POST', '/v1/nodes', big, {}, 413, /larger than the limit/],
    ['unknown node name', 'GET', '/v1/nodes/no-such-node', undefined, {}, 404, /Node no-such-node could not be found/],
    ['unknown node uuid', 'GET', `/v1/nodes/${randomUUID()}`, undefined, {}, 404, /could not be found/],
    ['limit not a number', 'GET', '/v1/nodes?limit=abc', undefined, {}, 400, /Invalid limit/],
    ['negative limit', 'GET', '/v1/nodes?limit=-1', undefined, {}, 400, /Limit must be positive/],
    ['bad sort_dir', 'GET', '/v1/nodes?sort_dir=up', undefined, {}, 400, /Invalid sort direction/],
    ['JSON sort_key', 'GET', '/v1/nodes?sort_key=driver_info', undefined, {}, 400, /invalid field for sorting/],
    ['unknown field in fields', 'GET', '/v1/nodes?fields=uuid,bogus', undefined, {}, 400, /Field\(s\) "bogus" are not valid/],
    ['fields with detail', 'GET', '/v1/nodes?fields=uuid&detail=true', undefined, {}, 400, /Can not specify \?detail=True and fields/],
    ['bad boolean filter', 'GET', '/v1/nodes?maintenance=maybe', undefined, {}, 400, /Invalid boolean value for maintenance/],
    ['marker not a uuid', 'GET', '/v1/nodes?marker=xyz', undefined, {}, 400, /Expected a UUID for marker/],
    ['unknown marker', 'GET', `/v1/nodes?marker=${randomUUID()}`, undefined, {}, 400, /Marker .* could not be found/],
    ['field newer than version (list)', 'GET', '/v1/nodes?fields=uuid,shard', undefined, { 'X-OpenStack-Ironic-API-Version': '1.78' }, 406, /not acceptable/i],
    ['unknown query parameter', 'GET', '/v1/nodes?colour=red', undefined, {}, 400, /Unknown argument: "colour"/],
    ['patch not a list', 'PATCH', `/v1/nodes/${nid}`, { op: 'add' }, {}, 400, /must be a list/],
    ['patch op move', 'PATCH', `/v1/nodes/${nid}`, [{ op: 'move', from: '/a', path: '/b' }], {}, 400, /unsupported "op"/],
    ['patch internal attribute', 'PATCH', `/v1/nodes/${nid}`, [{ op: 'replace', path: '/uuid', value: randomUUID() }], {}, 400, /'\/uuid' is an internal attribute/],
    ['patch provision_state', 'PATCH', `/v1/nodes/${nid}`, [{ op: 'replace', path: '/provision_state', value: 'active' }], {}, 400, /internal attribute/],
    ['patch remove driver', 'PATCH', `/v1/nodes/${nid}`, [{ op: 'remove', path: '/driver' }], {}, 400, /mandatory attribute/],
    ['patch remove missing key', 'PATCH', `/v1/nodes/${nid}`, [{ op: 'remove', path: '/extra/nope' }], {}, 400, /non-existent object 'nope'/],
    ['patch bad boolean', 'PATCH', `/v1/nodes/${nid}`, [{ op: 'replace', path: '/maintenance', value: 'perhaps' }], {}, 400, /expected a boolean/],
    ['patch bad instance_uuid', 'PATCH', `/v1/nodes/${nid}`, [{ op: 'add', path: '/instance_uuid', value: 'x' }], {}, 400, /Expected a UUID for instance_uuid/],
    ['patch unknown interface', 'PATCH', `/v1/nodes/${nid}`, [{ op: 'replace', path: '/power_interface', value: 'warp' }], {}, 400, /warp/],
    ['patch during transition-free active: interface', 'PATCH', `/v1/nodes/${String(act.uuid)}`, [{ op: 'replace', path: '/deploy_interface', value: 'fake' }], {}, 200, /./],
    ['invalid transition', 'PUT', `/v1/nodes/${nid}/states/provision`, { target: 'deploy' }, {}, 400, /"deploy" can not be performed on node .* while it is in state "enroll"/],
    ['unknown verb', 'PUT', `/v1/nodes/${nid}/states/provision`, { target: 'fly' }, {}, 400, /not a valid provision state/],
    ['verb newer than version', 'PUT', `/v1/nodes/${nid}/states/provision`, { target: 'deploy' }, { 'X-OpenStack-Ironic-API-Version': '1.72' }, 406, /not acceptable/i],
    ['clean without steps', 'PUT', `/v1/nodes/${nid}/states/provision`, { target: 'clean' }, {}, 400, /"clean_steps" is required/],
    ['clean_steps with provide', 'PUT', `/v1/nodes/${nid}/states/provision`, { target: 'provide', clean_steps: [] }, {}, 400, /only valid when setting target provision state to clean/],
    ['bad clean step', 'PUT', `/v1/nodes/${nid}/states/provision`, { target: 'clean', clean_steps: [{ interface: 'warp', step: 'x' }] }, {}, 400, /"interface" must be one of/],
    ['rescue without password', 'PUT', `/v1/nodes/${String(act.uuid)}/states/provision`, { target: 'rescue' }, {}, 400, /rescue_password/],
    ['unknown provision key', 'PUT', `/v1/nodes/${nid}/states/provision`, { target: 'manage', force: true }, {}, 400, /'force' was unexpected/],
    ['bad power target', 'PUT', `/v1/nodes/${nid}/states/power`, { target: 'sideways' }, {}, 400, /Invalid power state sideways/],
    ['zero power timeout', 'PUT', `/v1/nodes/${nid}/states/power`, { target: 'power on', timeout: 0 }, {}, 400, /timeout must be a positive integer/],
    ['soft power below 1.27', 'PUT', `/v1/nodes/${nid}/states/power`, { target: 'soft rebooting' }, { 'X-OpenStack-Ironic-API-Version': '1.20' }, 406, /not acceptable/i],
    ['delete active node', 'DELETE', `/v1/nodes/${String(act.uuid)}`, undefined, {}, 400, /Can not delete node .* while it is in provision state "active"/],
    ['maintenance reason not a string', 'PUT', `/v1/nodes/${nid}/maintenance`, { reason: 5 }, {}, 400, /"reason" must be a string/],
    ['bad boot device', 'PUT', `/v1/nodes/${nid}/management/boot_device`, { boot_device: 'floppy' }, {}, 400, /Invalid boot device floppy/],
    ['major version 2', 'GET', '/v1/nodes', undefined, { 'X-OpenStack-Ironic-API-Version': '2.0' }, 406, /not supported/],
    ['unparseable version', 'GET', '/v1/nodes', undefined, { 'X-OpenStack-Ironic-API-Version': 'one' }, 406, /Invalid value/],
    ['port bad MAC', 'POST', '/v1/ports', { address: 'zz:zz', node_uuid: nid }, {}, 400, /Expected a MAC address but received zz:zz/],
    ['port duplicate MAC', 'POST', '/v1/ports', { address: '52:54:00:00:00:01', node_uuid: nid }, {}, 409, /A port with MAC address 52:54:00:00:00:01 already exists/],
    ['port unknown node', 'POST', '/v1/ports', { address: '52:54:00:00:00:02', node_uuid: randomUUID() }, {}, 400, /could not be found/],
    ['port bad local_link_connection', 'POST', '/v1/ports', { address: '52:54:00:00:00:03', node_uuid: nid, local_link_connection: { vlan: 5 } }, {}, 400, /Invalid local_link_connection keys: vlan/],
    ['port missing address', 'POST', '/v1/ports', { node_uuid: nid }, {}, 400, /Mandatory field missing: address/],
    ['unknown driver show', 'GET', '/v1/drivers/nope', undefined, {}, 404, /nope/],
    ['lookup below 1.22', 'GET', '/v1/lookup?addresses=52:54:00:00:00:01', undefined, { 'X-OpenStack-Ironic-API-Version': '1.21' }, 404, /could not be found/],
    ['lookup without addresses', 'GET', '/v1/lookup', undefined, {}, 400, /"addresses" and "node_uuid"/],
    ['heartbeat without body fields', 'POST', `/v1/heartbeat/${nid}`, {}, {}, 400, /callback_url/],
    ['method not allowed', 'DELETE', '/v1/drivers', undefined, {}, 405, /./],
    ['unknown path', 'GET', '/v1/widgets', undefined, {}, 404, /could not be found/],
  ];

  await t.test(`table of ${cases.length} bad requests`, async () => {
    assert.ok(cases.length >= 30);
    for (const [name, method, path, body, headers, status, pattern] of cases) {
      const r = await c.api(method, path, body, headers);
      assert.equal(r.status, status, `${name}: ${method} ${path} -> ${r.status} ${JSON.stringify(r.body)}`);
      if (status < 400) continue;
      assert.equal(r.headers.get('content-type')?.split(';')[0], 'application/json', name);
      const fault = faultOf(r.body);
      assert.equal(fault.faultcode, 'Client', name);
      assert.match(String(fault.faultstring), pattern, name);
      assert.doesNotMatch(String(fault.faultstring), /\n\s+at /, `${name}: no stack trace`);
    }
  });

  await t.test('202 and 204 answers carry no body and no content type', async () => {
    const r = await c.fetch(`/v1/nodes/${nid}/maintenance`, { method: 'PUT', body: '{}',
      headers: { ...c.headers(), 'Content-Type': 'application/json', 'X-OpenStack-Ironic-API-Version': '1.82' } });
    assert.equal(r.status, 202);
    assert.equal(r.headers.get('content-type'), null);
    assert.equal(await r.text(), '');
    const d = await c.fetch(`/v1/nodes/${nid}/maintenance`, { method: 'DELETE', headers: c.headers() });
    assert.equal(d.status, 202);
  });

  await t.test('a node locked by another host answers 409 NodeLocked', async () => {
    const store = c.ctx?.store;
    assert.ok(store);
    assert.equal((await store.reserveNode(nid, 'other-host')).ok, true);
    try {
      const r = await c.api('PATCH', `/v1/nodes/${nid}`, [{ op: 'add', path: '/extra/a', value: 1 }]);
      assert.equal(r.status, 409);
      assert.match(String(faultOf(r.body).faultstring), /Node .* is locked by host other-host/);
      const p = await c.api('PUT', `/v1/nodes/${nid}/states/provision`, { target: 'provide' });
      assert.equal(p.status, 409, 'an impossible verb on a reserved node is a lock conflict, as in Ironic');
    } finally {
      await store.releaseNode(nid, 'other-host');
    }
  });

  await t.test('list: brief/detail/fields shapes, filters, server-side sort and next links', async () => {
    for (let i = 0; i < 5; i++) await c.api('POST', '/v1/nodes', { driver: 'fake-hardware', name: `s${i}`, owner: i % 2 ? 'odd' : 'even' });
    const brief = (await c.api('GET', '/v1/nodes?limit=2')).body as { nodes: Obj[]; next: string };
    assert.deepEqual(Object.keys(brief.nodes[0] ?? {}), ['uuid', 'name', 'instance_uuid', 'power_state', 'provision_state',
      'maintenance', 'links']);
    assert.match(brief.next, new RegExp(`^${c.url}/v1/nodes\\?limit=2&marker=[0-9a-f-]{36}$`));
    const detail = (await c.api('GET', '/v1/nodes/detail?owner=odd')).body as { nodes: Obj[]; next?: string };
    assert.deepEqual(detail.nodes.map((n) => n.name), ['s1', 's3']);
    assert.equal(detail.next, undefined);
    assert.ok('driver_info' in (detail.nodes[0] ?? {}) && 'states' in (detail.nodes[0] ?? {}));
    const sorted = (await c.api('GET', '/v1/nodes?sort_key=name&sort_dir=desc&fields=name&limit=3&provision_state=enroll'))
      .body as { nodes: Obj[]; next: string };
    assert.deepEqual(sorted.nodes, [{ name: 's4' }, { name: 's3' }, { name: 's2' }]);
    assert.match(sorted.next, /provision_state=enroll&fields=name&sort_key=name&sort_dir=desc&limit=3&marker=/);
    const page2 = (await c.api('GET', sorted.next.slice(c.url.length))).body as { nodes: Obj[] };
    assert.deepEqual(page2.nodes, [{ name: 's1' }, { name: 's0' }, { name: 'n1' }]);
    // The detail list is rendered from raw JSON columns; it must equal the per-node show.
    await c.api('POST', '/v1/nodes', { driver: 'fake-hardware', name: 'secretive', driver_info: { ipmi_password: 'pw',
      ipmi_address: 'a"b\\c' }, instance_info: { configdrive: 'xyz', image_source: 'http://i' }, extra: { 'ünï': [1, { a: null }] } });
    for (const ver of ['1.82', '1.31', '1.1']) {
      const all = (await c.api('GET', '/v1/nodes/detail', undefined, { 'X-OpenStack-Ironic-API-Version': ver })).body as { nodes: Obj[] };
      assert.ok(all.nodes.length >= 8);
      for (const item of all.nodes) {
        const shown = (await c.api('GET', `/v1/nodes/${String(item.uuid)}`, undefined, { 'X-OpenStack-Ironic-API-Version': ver })).body;
        assert.deepEqual(item, shown, `detail item ${String(item.uuid)} at ${ver}`);
      }
    }
    const secret = ((await c.api('GET', '/v1/nodes/detail')).body as { nodes: Obj[] }).nodes.find((n) => n.name === 'secretive');
    assert.deepEqual(secret?.driver_info, { ipmi_password: '******', ipmi_address: 'a"b\\c' });
    assert.deepEqual(secret?.instance_info, { configdrive: '******', image_source: 'http://i' });
    const old = (await c.api('GET', `/v1/nodes/${nid}`, undefined, { 'X-OpenStack-Ironic-API-Version': '1.30' })).body as Obj;
    assert.equal('deploy_interface' in old, false, 'interface fields hidden below 1.31');
    assert.equal('network_interface' in old, true);
  });
});
