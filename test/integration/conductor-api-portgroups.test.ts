/**
 * Chassis, portgroups and VIFs (issue 21): the real `baremetal` CLI (chassis, port group, node vif) and raw HTTP
 * for Ironic 21.4's microversion gates, error classes and texts. One conductor for the file (SQLite; the store
 * functions are tested on both databases in test/unit/conductor-store-portgroups.test.ts).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { haveBaremetalCli, startTestConductor, type TestConductor } from '../fixtures/conductor.js';

type Obj = Record<string, unknown>;
const reason = (await haveBaremetalCli()) ? undefined : 'the baremetal CLI (python3-ironicclient) is not installed';

/** The faultstring of Ironic's error body. */
function fault(body: unknown): string {
  const inner = (body as { error_message?: string }).error_message;
  return inner ? (JSON.parse(inner) as { faultstring: string }).faultstring : '';
}

describe('chassis, portgroups and VIFs', { skip: reason ?? false }, () => {
  let fx: TestConductor;
  const v = (minor: number): Record<string, string> => ({ 'X-OpenStack-Ironic-API-Version': `1.${minor}` });
  const cli = async (args: string[]): Promise<string> => {
    const r = await fx.cli(args);
    assert.equal(r.exitCode, 0, `baremetal ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const api = async (method: string, path: string, body?: unknown, minor = 82): Promise<{ status: number; body: Obj }> => {
    const r = await fx.api(method, path, body, v(minor));
    return { status: r.status, body: r.body as Obj };
  };
  const node = async (extra: Obj = {}): Promise<string> => {
    const r = await api('POST', '/v1/nodes', { driver: 'fake-hardware', network_interface: 'flat', ...extra });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body.uuid as string;
  };
  let mac = 0x10;
  const nextMac = (): string => `52:54:00:12:34:${(mac++).toString(16).padStart(2, '0')}`;

  before(async () => { fx = await startTestConductor(); });
  after(async () => { await fx?.close(); });

  test('CLI: chassis create / list / show / delete; a chassis with a node is not deleted', async () => {
    const ch = JSON.parse(await cli(['chassis', 'create', '--description', 'rack 1', '--extra', 'row=a', '-f', 'json'])) as Obj;
    const id = ch.uuid as string;
    assert.equal(ch.description, 'rack 1');
    assert.deepEqual(ch.extra, { row: 'a' });
    const listed = JSON.parse(await cli(['chassis', 'list', '-f', 'json'])) as Obj[];
    assert.ok(listed.some((c) => c.UUID === id && c.Description === 'rack 1'), JSON.stringify(listed));
    const shown = JSON.parse(await cli(['chassis', 'show', id, '-f', 'json'])) as Obj;
    assert.equal(shown.uuid, id);
    // The CLI costs seconds a call: what is not a chassis command goes over HTTP.
    const n = (await api('POST', '/v1/nodes', { driver: 'fake-hardware', chassis_uuid: id })).body;
    assert.equal(n.chassis_uuid, id);
    const refused = await fx.cli(['chassis', 'delete', id]);
    assert.notEqual(refused.exitCode, 0);
    assert.match(refused.stderr, /chassis \d+ contains nodes/);
    const nodes = await api('GET', `/v1/chassis/${id}/nodes`);
    assert.deepEqual((nodes.body.nodes as Obj[]).map((x) => x.uuid), [n.uuid]);
    const unset = await api('PATCH', `/v1/nodes/${String(n.uuid)}`, [{ op: 'remove', path: '/chassis_uuid' }]);
    assert.equal(unset.status, 200, JSON.stringify(unset.body));
    await cli(['chassis', 'delete', id]);
    assert.equal((await api('GET', `/v1/chassis/${id}`)).status, 404);
  });

  test('CLI: port group create / list / show / delete; a port group with ports is not deleted', async () => {
    const n = await node();
    const address = nextMac();
    const pg = JSON.parse(await cli(['port', 'group', 'create', '--node', n, '--name', 'bond0', '--address', address,
      '--mode', '802.3ad', '--property', 'miimon=100', '--unsupport-standalone-ports', '-f', 'json'])) as Obj;
    assert.equal(pg.mode, '802.3ad');
    assert.deepEqual(pg.properties, { miimon: 100 }, 'the CLI sends JSON-looking values as JSON');
    assert.equal(pg.standalone_ports_supported, false);
    const listed = JSON.parse(await cli(['port', 'group', 'list', '--node', n, '-f', 'json'])) as Obj[];
    assert.deepEqual(listed.map((x) => [x.Name, x.Address]), [['bond0', address]]);
    const shown = JSON.parse(await cli(['port', 'group', 'show', 'bond0', '-f', 'json'])) as Obj;
    assert.equal(shown.uuid, pg.uuid);
    assert.equal(shown.node_uuid, n);
    // Ironic validates portgroup_uuid as a UUID (a name is refused), so the CLI is given the UUID.
    const port = JSON.parse(await cli(['port', 'create', nextMac(), '--node', n, '--port-group', pg.uuid as string,
      '--pxe-enabled', 'false', '-f', 'json'])) as Obj;
    assert.equal(port.portgroup_uuid, pg.uuid);
    const refused = await fx.cli(['port', 'group', 'delete', 'bond0']);
    assert.notEqual(refused.exitCode, 0);
    assert.match(refused.stderr, /portgroup \d+ contains ports/);
    assert.equal((await api('DELETE', `/v1/ports/${String(port.uuid)}`)).status, 204);
    await cli(['port', 'group', 'delete', 'bond0']);
    assert.equal((await api('GET', `/v1/portgroups/${String(pg.uuid)}`)).status, 404);
  });

  test('CLI: node vif attach / list / detach on a flat node', async () => {
    const n = await node();
    const port = await api('POST', '/v1/ports', { node_uuid: n, address: nextMac() });
    assert.equal(port.status, 201);
    await cli(['node', 'vif', 'attach', n, 'vif-cli']);
    const listed = JSON.parse(await cli(['node', 'vif', 'list', n, '-f', 'json'])) as Obj[];
    assert.deepEqual(listed.map((x) => x.ID), ['vif-cli']);
    const stored = await api('GET', `/v1/ports/${String(port.body.uuid)}`);
    assert.deepEqual(stored.body.internal_info, { tenant_vif_port_id: 'vif-cli' });
    await cli(['node', 'vif', 'detach', n, 'vif-cli']);
    assert.deepEqual((await api('GET', `/v1/nodes/${n}/vifs`)).body, { vifs: [] });
  });

  test('chassis API: fields, nodes link as Ironic renders it, validation, unknown chassis on a node', async () => {
    const created = await api('POST', '/v1/chassis', { description: 'r2', extra: { a: 1 } });
    assert.equal(created.status, 201);
    const id = created.body.uuid as string;
    // Ironic 21.4 nests the nodes link pair in a second list.
    assert.deepEqual(created.body.nodes, [[{ href: `${fx.url}/v1/chassis/${id}/nodes`, rel: 'self' },
      { href: `${fx.url}/chassis/${id}/nodes`, rel: 'bookmark' }]]);
    const brief = await api('GET', '/v1/chassis');
    const item = (brief.body.chassis as Obj[]).find((c) => c.uuid === id) as Obj;
    assert.deepEqual(Object.keys(item).sort(), ['description', 'links', 'uuid']);
    const picked = await api('GET', `/v1/chassis/${id}?fields=extra`);
    assert.deepEqual(Object.keys(picked.body).sort(), ['extra', 'links']);
    assert.equal((await api('GET', `/v1/chassis/${id}?fields=extra`, undefined, 7)).status, 406);
    assert.equal((await api('GET', '/v1/chassis?detail=true', undefined, 42)).status, 400);
    const gone = await api('GET', '/v1/chassis?marker=6bd4e8c3-4b4d-4a55-9a0f-1b3c3e3a4a13');
    assert.equal(gone.status, 404, "Ironic looks the marker up as a chassis");
    assert.equal(fault(gone.body), 'Chassis 6bd4e8c3-4b4d-4a55-9a0f-1b3c3e3a4a13 could not be found.');
    const bad = await api('POST', '/v1/chassis', { description: 'x', name: 'nope' });
    assert.equal(bad.status, 400);
    assert.match(fault(bad.body), /Additional properties are not allowed \('name' was unexpected\)/);
    assert.equal((await api('POST', '/v1/chassis', { description: 'x'.repeat(256) })).status, 400);
    const dup = await api('POST', '/v1/chassis', { uuid: id });
    assert.equal(dup.status, 409);
    assert.equal(fault(dup.body), `A chassis with UUID ${id} already exists.`);
    const patched = await api('PATCH', `/v1/chassis/${id}`, [{ op: 'replace', path: '/description', value: 'r3' }]);
    assert.equal(patched.body.description, 'r3');
    const internal = await api('PATCH', `/v1/chassis/${id}`, [{ op: 'replace', path: '/created_at', value: 'x' }]);
    assert.equal(internal.status, 400);
    assert.match(fault(internal.body), /Cannot patch \/created_at\. Only the following can be updated: uuid, extra, description/);
    assert.equal((await api('GET', '/v1/chassis/not-a-uuid')).status, 400);
    const write = await api('POST', `/v1/chassis/${id}/nodes`, { driver: 'fake-hardware' });
    assert.equal(write.status, 403);
    assert.equal(fault(write.body), 'Operation not permitted.');

    const missing = '6bd4e8c3-4b4d-4a55-9a0f-1b3c3e3a4a10';
    const orphan = await api('POST', '/v1/nodes', { driver: 'fake-hardware', chassis_uuid: missing });
    assert.equal(orphan.status, 400);
    assert.equal(fault(orphan.body), `Chassis ${missing} could not be found.`);
    const n = await node({ chassis_uuid: id });
    const early = await api('PATCH', `/v1/nodes/${n}`, [{ op: 'remove', path: '/chassis_uuid' }], 24);
    assert.equal(early.status, 406, 'unsetting chassis_uuid needs 1.25');
    const del = await api('DELETE', `/v1/chassis/${id}`);
    assert.equal(del.status, 400);
    assert.match(fault(del.body), /^Cannot complete the requested action because chassis \d+ contains nodes\.$/);
  });

  test('portgroup API: microversion gates (404 below 1.23 / 1.24, 406 for mode below 1.26), links, errors', async () => {
    const n = await node();
    const gone = await api('GET', '/v1/portgroups', undefined, 22);
    assert.equal(gone.status, 404);
    assert.equal(fault(gone.body), 'Resource could not be found.');
    assert.equal((await api('POST', '/v1/portgroups', { node_uuid: n }, 22)).status, 404);
    assert.equal((await api('GET', `/v1/nodes/${n}/portgroups`, undefined, 23)).status, 404);
    assert.equal((await api('POST', '/v1/portgroups', { node_uuid: n, mode: 'balance-rr' }, 25)).status, 406);
    assert.equal((await api('GET', '/v1/portgroups?fields=mode', undefined, 25)).status, 406);
    const old = await api('POST', '/v1/portgroups', { node_uuid: n, name: 'pg-old' }, 23);
    assert.equal(old.status, 201);
    assert.equal(old.body.mode, 'active-backup', "Ironic's default_portgroup_mode");
    const root = await api('GET', '/v1', undefined, 22);
    assert.equal(root.body.portgroups, undefined);
    assert.ok(Array.isArray((await api('GET', '/v1', undefined, 23)).body.portgroups));
    assert.equal((await api('GET', `/v1/nodes/${n}`, undefined, 23)).body.portgroups, undefined);
    assert.ok(Array.isArray((await api('GET', `/v1/nodes/${n}`, undefined, 24)).body.portgroups));

    const address = nextMac();
    const pg = await api('POST', '/v1/portgroups', { node_uuid: n, address, name: 'pg-a' });
    assert.equal(pg.status, 201);
    const dupMac = await api('POST', '/v1/portgroups', { node_uuid: n, address });
    assert.equal(dupMac.status, 409);
    assert.equal(fault(dupMac.body), `A portgroup with MAC address ${address} already exists.`);
    const dupName = await api('POST', '/v1/portgroups', { node_uuid: n, name: 'pg-a' });
    assert.equal(fault(dupName.body), 'A portgroup with name pg-a already exists.');
    const badName = await api('POST', '/v1/portgroups', { node_uuid: n, name: 'a b' });
    assert.equal(badName.status, 400);
    assert.equal(fault(badName.body), "Cannot create portgroup with invalid name 'a b'");
    const noNode = await api('POST', '/v1/portgroups', { node_uuid: '6bd4e8c3-4b4d-4a55-9a0f-1b3c3e3a4a11' });
    assert.equal(noNode.status, 400);
    assert.match(fault(noNode.body), /Node .* could not be found/);
    const removeMode = await api('PATCH', '/v1/portgroups/pg-a', [{ op: 'remove', path: '/mode' }]);
    assert.equal(removeMode.status, 400);
    assert.equal(fault(removeMode.body), "'mode' is a mandatory attribute and can not be removed");

    // Ports: portgroup_uuid must exist (400), be on the same node (400); PXE-enabled members need standalone ports.
    const other = await node();
    const wrongNode = await api('POST', '/v1/ports', { node_uuid: other, address: nextMac(), portgroup_uuid: pg.body.uuid });
    assert.equal(wrongNode.status, 400);
    assert.equal(fault(wrongNode.body), 'Port can not be added to a portgroup belonging to a different node.');
    const ghost = await api('POST', '/v1/ports', { node_uuid: n, address: nextMac(), portgroup_uuid: '6bd4e8c3-4b4d-4a55-9a0f-1b3c3e3a4a12' });
    assert.equal(ghost.status, 400);
    assert.match(fault(ghost.body), /^Portgroup .* could not be found\.$/);
    const strict = await api('POST', '/v1/portgroups', { node_uuid: n, standalone_ports_supported: false });
    const pxe = await api('POST', '/v1/ports', { node_uuid: n, address: nextMac(), portgroup_uuid: strict.body.uuid });
    assert.equal(pxe.status, 409);
    assert.match(fault(pxe.body), /doesn't support standalone ports/);
    assert.equal((await api('POST', '/v1/ports', { node_uuid: n, address: nextMac(), portgroup_uuid: pg.body.uuid }, 23)).status, 406);
    const empty = await api('POST', '/v1/ports', { node_uuid: n, address: nextMac(), physical_network: '' });
    assert.equal(fault(empty.body), 'A non-empty value is required when setting physical_network');
    const member = await api('POST', '/v1/ports', { node_uuid: n, address: nextMac(), portgroup_uuid: pg.body.uuid, physical_network: 'p1' });
    assert.equal(member.status, 201);
    const otherNet = await api('POST', '/v1/ports', { node_uuid: n, address: nextMac(), portgroup_uuid: pg.body.uuid, physical_network: 'p2' });
    assert.equal(otherNet.status, 409);
    assert.match(fault(otherNet.body), /cannot become a member of port group .* which has ports in physical network p1/);
    const members = await api('GET', `/v1/portgroups/pg-a/ports`);
    assert.deepEqual((members.body.ports as Obj[]).map((p) => p.uuid), [member.body.uuid]);
    assert.equal((await api('GET', `/v1/portgroups/pg-a/ports`, undefined, 23)).status, 404);
    const filtered = await api('GET', `/v1/ports?portgroup=pg-a`);
    assert.deepEqual((filtered.body.ports as Obj[]).map((p) => p.uuid), [member.body.uuid]);
    const loose = await api('POST', '/v1/ports', { node_uuid: n, address: nextMac() });
    const join = [{ op: 'replace', path: '/portgroup_uuid', value: strict.body.uuid }];
    assert.equal((await api('PATCH', `/v1/ports/${String(loose.body.uuid)}`, join, 23)).status, 406);
    const joined = await api('PATCH', `/v1/ports/${String(loose.body.uuid)}`, join);
    assert.equal(joined.status, 409, 'a PXE-enabled port cannot join a portgroup without standalone ports');
    assert.match(fault(joined.body), /because of: 'pxe_enabled' was set to True/);
    assert.equal((await api('GET', `/v1/nodes/${n}/portgroups/pg-a`)).status, 403);
    assert.equal((await api('POST', `/v1/nodes/${n}/portgroups`, { node_uuid: n })).status, 403);
    assert.equal((await api('DELETE', `/v1/nodes/${n}/portgroups/no-such-pg`)).status, 404);
    const move = await api('PATCH', '/v1/portgroups/pg-a', [{ op: 'replace', path: '/node_uuid', value: other }]);
    assert.equal(move.status, 400, 'a portgroup with ports stays on its node');
    const paged = await api('GET', `/v1/nodes/${n}/portgroups?limit=1`);
    assert.equal((paged.body.portgroups as Obj[]).length, 1);
    assert.match(paged.body.next as string, /\/v1\/portgroups\?sort_key=id&sort_dir=asc&fields=uuid,address,name&limit=1&marker=/);
  });

  test('VIF API: 404 below 1.28, picks a portgroup first, 409 attached twice, 400 without a free port or not attached, noop ignores', async () => {
    const n = await node();
    assert.equal((await api('GET', `/v1/nodes/${n}/vifs`, undefined, 27)).status, 404);
    assert.equal((await api('POST', `/v1/nodes/${n}/vifs`, { id: 'x' }, 27)).status, 404);
    const none = await api('POST', `/v1/nodes/${n}/vifs`, { id: 'vif-0' });
    assert.equal(none.status, 400);
    assert.equal(fault(none.body), 'Unable to attach VIF vif-0, not enough free physical ports.');

    const lone = await api('POST', '/v1/ports', { node_uuid: n, address: nextMac() });
    const pg = await api('POST', '/v1/portgroups', { node_uuid: n, address: nextMac() });
    const m1 = await api('POST', '/v1/ports', { node_uuid: n, address: nextMac(), portgroup_uuid: pg.body.uuid });
    assert.equal(m1.status, 201);
    assert.equal((await api('POST', `/v1/nodes/${n}/vifs`, { id: 'vif-1' })).status, 204);
    const group = await api('GET', `/v1/portgroups/${String(pg.body.uuid)}`);
    assert.deepEqual(group.body.internal_info, { tenant_vif_port_id: 'vif-1' }, 'a portgroup is preferred to a port');
    const twice = await api('POST', `/v1/nodes/${n}/vifs`, { id: 'vif-1' });
    assert.equal(twice.status, 409);
    assert.equal(fault(twice.body), `Unable to attach VIF because VIF vif-1 is already attached to Ironic Portgroup ${String(pg.body.uuid)}`);
    const both = await api('POST', `/v1/nodes/${n}/vifs`, { id: 'vif-2', port_uuid: lone.body.uuid, portgroup_uuid: pg.body.uuid });
    assert.equal(both.status, 400);
    assert.equal(fault(both.body), 'Cannot specify both port_uuid and portgroup_uuid');
    assert.equal((await api('POST', `/v1/nodes/${n}/vifs`, { id: 'vif-2', port_uuid: lone.body.uuid })).status, 204);
    const bound = await api('DELETE', `/v1/ports/${String(lone.body.uuid)}`);
    assert.equal(bound.status, 400);
    assert.equal(fault(bound.body), `Cannot delete the port ${String(lone.body.uuid)} as it is bound to VIF vif-2 for tenant use.`);
    const full = await api('POST', `/v1/nodes/${n}/vifs`, { id: 'vif-3' });
    assert.equal(full.status, 400, 'the only port left is a member of a portgroup with a VIF');
    const vifs = await api('GET', `/v1/nodes/${n}/vifs`);
    assert.deepEqual(vifs.body, { vifs: [{ id: 'vif-2' }, { id: 'vif-1' }] }, 'ports first, then portgroups');
    const missing = await api('DELETE', `/v1/nodes/${n}/vifs/vif-9`);
    assert.equal(missing.status, 400);
    assert.equal(fault(missing.body), `Unable to detach VIF vif-9 from node ${n} because it is not attached to it.`);
    assert.equal((await api('DELETE', `/v1/nodes/${n}/vifs/vif-1`)).status, 204);
    assert.equal((await api('POST', `/v1/nodes/${n}/vifs`, { id: 'bad id' })).status, 400);
    assert.equal((await api('POST', `/v1/nodes/${n}/vifs`, {})).status, 400);

    const quiet = await node({ network_interface: 'noop' });
    assert.equal((await api('POST', `/v1/nodes/${quiet}/vifs`, { id: 'vif-n' })).status, 204);
    assert.deepEqual((await api('GET', `/v1/nodes/${quiet}/vifs`)).body, { vifs: [] });
    assert.equal((await api('DELETE', `/v1/nodes/${quiet}/vifs/vif-n`)).status, 204);
  });
});
