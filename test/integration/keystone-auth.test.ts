/**
 * Issue 21, Keystone authentication: a real Keystone 22 (Debian's package, one process, lab/keystone.ts) issues
 * tokens; our conductor runs with auth.strategy keystone and validates them with its own service user. Shown with
 * the `baremetal` CLI (password auth through Keystone, the conductor found by --os-endpoint-override and by the
 * catalog) and
 * raw API calls: admin sees every node, the lessee1 project's member only its nodes (others are 404), its reader
 * cannot write, a lessee member cannot change the provision state (Ironic's default needs a lessee admin), a bad
 * token is 401. One Keystone for the whole file (its set-up is the slow part).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { run } from '../../common/exec.js';
import { KeystoneValidator } from '../../conductor/api/keystone.js';
import { keystoneAuthSchema } from '../../conductor/keystone-config.js';
import { haveKeystone, type LabKeystone, startKeystone } from '../../lab/keystone.js';
import { haveBaremetalCli, startTestConductor, type TestConductor } from '../fixtures/conductor.js';

type Obj = Record<string, unknown>;

test('Keystone tokens and Ironic default policy', { timeout: 600_000 }, async (t) => {
  if (!(await haveKeystone()) || !(await haveBaremetalCli())) {
    t.skip('keystone or the baremetal CLI not installed (apt-get install keystone python3-ironicclient)');
    return;
  }
  const ks: LabKeystone = await startKeystone();
  // Registered before anything else can fail, so the Keystone process ends by its pid whatever happens next.
  t.after(() => ks.stop());
  const exitHandler = (): void => ks.stopSync();
  process.once('exit', exitHandler);
  t.after(() => { process.off('exit', exitHandler); });

  const service = await ks.createProject('service');
  await ks.createUser('ironic', 'ironic-pw', service.id, ['service']);
  const lessee = await ks.createProject('lessee1');
  const other = await ks.createProject('other1');
  await ks.createUser('lessee-member', 'member-pw', lessee.id, ['member']);
  await ks.createUser('lessee-reader', 'reader-pw', lessee.id, ['reader']);
  await ks.createUser('lessee-admin', 'ladmin-pw', lessee.id, ['admin']);

  const keystone = { auth_url: ks.url, username: 'ironic', password: 'ironic-pw', project_name: 'service' };
  const c: TestConductor = await startTestConductor({ plain: true,
    config: { automated_clean: false, auth: { strategy: 'keystone', keystone } } });
  t.after(() => c.close());
  await ks.addEndpoint('baremetal', 'ironic', c.url);

  const adminToken = await ks.adminToken();
  const memberToken = await ks.token({ user: 'lessee-member', password: 'member-pw', project: 'lessee1' });
  const readerToken = await ks.token({ user: 'lessee-reader', password: 'reader-pw', project: 'lessee1' });
  const as = (token: string) => (method: string, path: string, body?: unknown) =>
    c.api(method, path, body, { 'X-Auth-Token': token });
  const admin = as(adminToken);
  const member = as(memberToken);
  const reader = as(readerToken);

  const mk = async (name: string, extra: Obj): Promise<string> => {
    const r = await admin('POST', '/v1/nodes', { driver: 'fake-hardware', name, driver_info: { secret_thing: 'x' }, ...extra });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return String((r.body as Obj).uuid);
  };
  const leased = await mk('leased', { lessee: lessee.id });
  const owned = await mk('owned', { owner: lessee.id });
  const free = await mk('free', {});
  const foreign = await mk('foreign', { owner: other.id });

  const cliEnv = (user: string, password: string, project: string): Record<string, string> => ({
    OS_CLOUD: '', OS_AUTH_TYPE: 'password', OS_AUTH_URL: ks.url, OS_USERNAME: user, OS_PASSWORD: password,
    OS_PROJECT_NAME: project, OS_USER_DOMAIN_ID: 'default', OS_PROJECT_DOMAIN_ID: 'default', OS_IDENTITY_API_VERSION: '3',
    OS_BAREMETAL_API_VERSION: '1.82',
  });
  const cli = (env: Record<string, string>, args: string[], endpoint = true) =>
    run('baremetal', [...(endpoint ? ['--os-endpoint-override', c.url] : []), ...args], {
      env, okCodes: Array.from({ length: 256 }, (_, i) => i), timeoutMs: 120_000, quiet: true,
    });
  const names = (stdout: string): string[] => (JSON.parse(stdout) as { Name: string }[]).map((n) => n.Name).sort();

  await t.test('the CLI as admin (password auth through Keystone) lists every node', async () => {
    const r = await cli(cliEnv('admin', ks.adminPassword, 'admin'), ['node', 'list', '-f', 'json']);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.deepEqual(names(r.stdout), ['foreign', 'free', 'leased', 'owned']);
  });

  await t.test('the CLI as the lessee1 member, the conductor found in the catalog, lists only its nodes', async () => {
    const r = await cli(cliEnv('lessee-member', 'member-pw', 'lessee1'), ['node', 'list', '-f', 'json'], false);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.deepEqual(names(r.stdout), ['leased', 'owned']);
    const shown = await cli(cliEnv('lessee-member', 'member-pw', 'lessee1'), ['node', 'show', 'free', '-f', 'json']);
    assert.notEqual(shown.exitCode, 0, 'another project\'s node is not shown');
    assert.match(shown.stderr, /could not be found/i);
  });

  await t.test('the CLI with a bad token gets 401', async () => {
    const r = await run('baremetal', ['--os-auth-type', 'admin_token', '--os-token', 'not-a-valid-token',
      '--os-endpoint', c.url, 'node', 'list'], {
      env: { OS_CLOUD: '' }, okCodes: Array.from({ length: 256 }, (_, i) => i), timeoutMs: 120_000, quiet: true,
    });
    assert.notEqual(r.exitCode, 0);
    assert.match(r.stderr, /401|requires authentication|Unauthorized/i, r.stderr);
  });

  await t.test('401 bodies in Ironic\'s shape, with a Keystone challenge', async () => {
    for (const headers of [{}, { 'X-Auth-Token': 'bogus' }] as Record<string, string>[]) {
      const r = await c.api('GET', '/v1/nodes', undefined, headers);
      assert.equal(r.status, 401);
      const inner = JSON.parse(String((r.body as Obj).error_message)) as Obj;
      assert.match(String(inner.faultstring), /requires authentication/);
      assert.equal(r.headers.get('www-authenticate'), `Keystone uri="${ks.url}"`);
    }
    assert.equal((await c.api('GET', '/v1')).status, 200, 'the version document stays public');
  });

  await t.test('project scope: list filtered, others\' nodes 404, asking for another project 403', async () => {
    const list = await member('GET', '/v1/nodes');
    assert.equal(list.status, 200);
    assert.deepEqual(((list.body as { nodes: Obj[] }).nodes).map((n) => n.uuid).sort(), [leased, owned].sort());
    assert.equal((await member('GET', `/v1/nodes/${free}`)).status, 404);
    assert.equal((await member('GET', `/v1/nodes/foreign`)).status, 404, 'by name too');
    assert.equal((await member('PATCH', `/v1/nodes/${foreign}`, [{ op: 'add', path: '/extra/x', value: 1 }])).status, 404);
    const asked = await member('GET', `/v1/nodes?project=${other.id}`);
    assert.equal(asked.status, 403);
    assert.match(String((asked.body as Obj).error_message), /baremetal:node:list_all/);
    const all = await admin('GET', '/v1/nodes');
    assert.equal(((all.body as { nodes: Obj[] }).nodes).length, 4);
  });

  await t.test('a lessee sees its node with infrastructure details redacted; the owner does not', async () => {
    const asLessee = (await member('GET', `/v1/nodes/${leased}`)).body as Obj;
    assert.match(JSON.stringify(asLessee.driver_info), /Redacted/);
    assert.match(JSON.stringify(asLessee.driver_internal_info), /Redacted/);
    const asOwner = (await member('GET', `/v1/nodes/${owned}`)).body as Obj;
    assert.doesNotMatch(JSON.stringify(asOwner.driver_info), /Redacted/);
    const asAdmin = (await admin('GET', `/v1/nodes/${leased}`)).body as Obj;
    assert.doesNotMatch(JSON.stringify(asAdmin.driver_info), /Redacted/);
  });

  await t.test('member writes as Ironic allows; readers cannot write; lessee members cannot deploy', async () => {
    assert.equal((await member('PATCH', `/v1/nodes/${leased}`, [{ op: 'add', path: '/extra/tag', value: 'm' }])).status, 200,
      'update_extra: project member (owner or lessee)');
    const drv = await member('PATCH', `/v1/nodes/${leased}`, [{ op: 'add', path: '/driver_info/x', value: 1 }]);
    assert.equal(drv.status, 403, 'update:driver_info is for owner members only');
    assert.match(String((drv.body as Obj).error_message), /baremetal:node:update:driver_info/);
    assert.equal((await member('PATCH', `/v1/nodes/${owned}`, [{ op: 'add', path: '/driver_info/x', value: 1 }])).status, 200,
      'the owner member may');
    const wrote = await reader('PATCH', `/v1/nodes/${owned}`, [{ op: 'add', path: '/extra/tag', value: 'r' }]);
    assert.equal(wrote.status, 403, 'a reader cannot write');
    assert.equal((await reader('GET', `/v1/nodes/${owned}`)).status, 200, 'but reads');
    const prov = await member('PUT', `/v1/nodes/${leased}/states/provision`, { target: 'manage' });
    assert.equal(prov.status, 403, 'set_provision_state needs a lessee admin');
    assert.equal((await member('PUT', `/v1/nodes/${owned}/states/provision`, { target: 'manage' })).status, 202,
      'an owner member may');
    assert.equal((await member('POST', '/v1/nodes', { driver: 'fake-hardware' })).status, 403, 'creating nodes is admin work');
    assert.equal((await member('DELETE', `/v1/nodes/${owned}`)).status, 403);
    const big = await member('PATCH', `/v1/nodes/${owned}`, [{ op: 'add', path: '/extra/big', value: 'x'.repeat(2 * 1024 * 1024) }]);
    assert.equal(big.status, 413, 'a body read for the policy still has the size limit');
    assert.equal((await member('GET', '/v1/drivers')).status, 403, 'drivers are for system readers');
    assert.equal((await admin('GET', '/v1/drivers')).status, 200);
  });

  await t.test('ports follow their node\'s visibility', async () => {
    for (const [node, mac] of [[leased, '52:54:00:aa:00:01'], [free, '52:54:00:aa:00:02']] as const) {
      assert.equal((await admin('POST', '/v1/ports', { node_uuid: node, address: mac })).status, 201);
    }
    const mine = (await member('GET', '/v1/ports?fields=address')).body as { ports: Obj[] };
    assert.deepEqual(mine.ports.map((p) => p.address), ['52:54:00:aa:00:01']);
    const brief = (await member('GET', '/v1/ports')).body as { ports: Obj[] };
    assert.deepEqual(brief.ports.map((p) => p.address), ['52:54:00:aa:00:01'], 'brief items too');
    assert.ok(!('node_uuid' in (mine.ports[0] ?? {})), 'only the asked-for fields');
    const all = (await admin('GET', '/v1/ports')).body as { ports: Obj[] };
    assert.equal(all.ports.length, 2);
    const foreignPort = all.ports.find((p) => p.node_uuid === free);
    assert.equal((await member('GET', `/v1/ports/${String(foreignPort?.uuid)}`)).status, 404);
    assert.equal((await member('POST', '/v1/ports', { node_uuid: leased, address: '52:54:00:aa:00:03' })).status, 403,
      'port:create needs an owner admin');
  });

  await t.test('port groups by their node, allocations by their owner', async () => {
    const pgMine = await admin('POST', '/v1/portgroups', { node_uuid: leased, name: 'pg-mine' });
    assert.equal(pgMine.status, 201, JSON.stringify(pgMine.body));
    assert.equal((await admin('POST', '/v1/portgroups', { node_uuid: free, name: 'pg-free' })).status, 201);
    assert.equal((await member('GET', '/v1/portgroups/pg-mine')).status, 200);
    assert.equal((await member('GET', '/v1/portgroups/pg-free')).status, 404);
    const pgs = (await member('GET', '/v1/portgroups')).body as { portgroups: Obj[] };
    assert.deepEqual(pgs.portgroups.map((p) => p.name), ['pg-mine']);
    for (const [name, owner] of [['alloc-mine', lessee.id], ['alloc-other', other.id]] as const) {
      const r = await admin('POST', '/v1/allocations', { name, resource_class: 'no-such-class', owner });
      assert.equal(r.status, 201, JSON.stringify(r.body));
    }
    assert.equal((await member('GET', '/v1/allocations/alloc-mine')).status, 200);
    assert.equal((await member('GET', '/v1/allocations/alloc-other')).status, 404);
    assert.equal((await reader('DELETE', '/v1/allocations/alloc-mine')).status, 403, 'readers cannot delete');
    const allocs = (await member('GET', '/v1/allocations')).body as { allocations: Obj[] };
    assert.deepEqual(allocs.allocations.map((a) => a.name), ['alloc-mine']);
    assert.equal(((await admin('GET', '/v1/allocations')).body as { allocations: Obj[] }).allocations.length, 2);
  });

  await t.test('volume connectors and targets follow their node (baremetal:volume:*)', async () => {
    const ids: Record<string, string> = {};
    for (const [node, cid] of [[leased, 'iqn.vol-mine'], [free, 'iqn.vol-free']] as const) {
      const r = await admin('POST', '/v1/volume/connectors', { node_uuid: node, type: 'iqn', connector_id: cid });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      ids[cid] = String((r.body as Obj).uuid);
    }
    const tgt = await admin('POST', '/v1/volume/targets', { node_uuid: free, volume_type: 'iscsi', boot_index: 0, volume_id: 'v-free' });
    assert.equal(tgt.status, 201, JSON.stringify(tgt.body));
    const mine = (await member('GET', '/v1/volume/connectors')).body as { connectors: Obj[] };
    assert.deepEqual(mine.connectors.map((x) => x.connector_id), ['iqn.vol-mine']);
    assert.deepEqual(((await member('GET', '/v1/volume/targets')).body as { targets: Obj[] }).targets, []);
    assert.equal(((await admin('GET', '/v1/volume/connectors')).body as { connectors: Obj[] }).connectors.length, 2);
    assert.equal((await member('GET', `/v1/nodes/${leased}/volume/connectors`)).status, 200);
    const hiddenNode = await member('GET', `/v1/nodes/${free}/volume/connectors`);
    assert.equal(hiddenNode.status, 404, 'a node the project cannot see is concealed');
    assert.equal((await member('GET', `/v1/volume/connectors/${ids['iqn.vol-mine']!}`)).status, 200);
    const hidden = await member('GET', `/v1/volume/connectors/${ids['iqn.vol-free']!}`);
    assert.equal(hidden.status, 404);
    assert.match(JSON.stringify(hidden.body), new RegExp(`Volume connector ${ids['iqn.vol-free']!} could not be found`));
    assert.equal((await member('GET', `/v1/volume/targets/${String((tgt.body as Obj).uuid)}`)).status, 404);
    assert.equal((await member('POST', '/v1/volume/connectors', { node_uuid: leased, type: 'iqn', connector_id: 'iqn.x' })).status, 403,
      'volume:create needs a system member or the owner/lessee admin');
    assert.equal((await reader('DELETE', `/v1/volume/connectors/${ids['iqn.vol-mine']!}`)).status, 403, 'readers cannot delete');
  });

  await t.test('openstacksdk through Keystone as the owner member: fields, instance_info, deploy with a config drive dict, undeploy', async () => {
    // Debian's python3-openstacksdk (needs /usr/bin/python3: the python3 on PATH may be another one). The conductor
    // comes from the Keystone catalog. `owned` (owner lessee1) was made manageable above.
    const script = String.raw`
import json, sys
import openstack
a = json.loads(sys.argv[1])
conn = openstack.connect(auth_url=a['auth_url'], username=a['user'], password=a['password'], project_name=a['project'],
    user_domain_id='default', project_domain_id='default', region_name='RegionOne', baremetal_api_version='1.82')
out = {}
out['listed'] = sorted([n.name, n.provision_state] for n in conn.baremetal.nodes(fields=['uuid', 'name', 'provision_state']))
node = conn.baremetal.find_node('owned', ignore_missing=False)
conn.baremetal.set_node_provision_state(node, 'provide', wait=True, timeout=60)
conn.baremetal.patch_node(node, [{'op': 'add', 'path': '/instance_info/image_source', 'value': 'http://127.0.0.1:1/img.qcow2'}])
out['instance_info'] = conn.baremetal.get_node(node).instance_info
node = conn.baremetal.set_node_provision_state(node, 'active', wait=True, timeout=60,
    config_drive={'meta_data': {'hostname': 'sdk-host'}, 'user_data': '#cloud-config\n'})
out['deployed'] = node.provision_state
node = conn.baremetal.set_node_provision_state(node, 'deleted', wait=True, timeout=60)
out['undeployed'] = node.provision_state
try:
    conn.baremetal.set_node_provision_state(conn.baremetal.find_node('leased', ignore_missing=False), 'manage')
    out['lessee_manage'] = 'allowed'
except openstack.exceptions.HttpException as e:
    out['lessee_manage'] = e.status_code
print(json.dumps(out))
`;
    const r = await run('/usr/bin/python3', ['-c', script, JSON.stringify({ auth_url: ks.url, user: 'lessee-member',
      password: 'member-pw', project: 'lessee1' })], { timeoutMs: 180_000, quiet: true, okCodes: [0, 1] });
    assert.equal(r.exitCode, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as Obj;
    assert.deepEqual(out.listed, [['leased', 'enroll'], ['owned', 'manageable']], 'only its nodes, fields honoured');
    assert.equal((out.instance_info as Obj).image_source, 'http://127.0.0.1:1/img.qcow2');
    assert.equal(out.deployed, 'active');
    assert.equal(out.undeployed, 'available');
    assert.equal(out.lessee_manage, 403, 'a lessee member may not change the provision state');
  });

  await t.test('a project admin: everything under 21.4\'s defaults; its own nodes only with enforce_new_defaults', async () => {
    const token = await ks.token({ user: 'lessee-admin', password: 'ladmin-pw', project: 'lessee1' });
    const legacy = await c.api('GET', '/v1/nodes', undefined, { 'X-Auth-Token': token });
    assert.equal(((legacy.body as { nodes: Obj[] }).nodes).length, 4, 'the deprecated rule:is_admin still applies by default');
    const strict = await startTestConductor({ plain: true,
      config: { automated_clean: false, auth: { strategy: 'keystone', keystone: { ...keystone, enforce_new_defaults: true } } } });
    try {
      const api = (method: string, path: string, body?: unknown) => strict.api(method, path, body, { 'X-Auth-Token': token });
      const sysAdmin = await ks.token({ user: 'admin', password: ks.adminPassword, system: true });
      const r0 = await strict.api('POST', '/v1/nodes', { driver: 'fake-hardware', name: 'sys-made' }, { 'X-Auth-Token': sysAdmin });
      assert.equal(r0.status, 201, JSON.stringify(r0.body));
      assert.equal((r0.body as Obj).owner, null, 'a system admin\'s node has no owner forced on it');
      const made = await api('POST', '/v1/nodes', { driver: 'fake-hardware', name: 'self-made' });
      assert.equal(made.status, 201, JSON.stringify(made.body));
      assert.equal((made.body as Obj).owner, lessee.id, 'create:self_owned_node: owned by the caller\'s project');
      const foreignOwner = await api('POST', '/v1/nodes', { driver: 'fake-hardware', owner: other.id });
      assert.equal(foreignOwner.status, 400);
      const seen = ((await api('GET', '/v1/nodes')).body as { nodes: Obj[] }).nodes.map((n) => n.name);
      assert.deepEqual(seen, ['self-made'], 'new defaults: a project admin sees its project\'s nodes only');
      assert.equal((await api('GET', `/v1/nodes/sys-made`)).status, 404);
      assert.equal((await api('DELETE', `/v1/nodes/self-made`)).status, 204, 'delete:self_owned_node');
      // allocation:create_restricted (system member) is needed to name another owner; otherwise it is the caller's.
      const own = await api('POST', '/v1/allocations', { name: 'own-alloc', resource_class: 'no-such-class' });
      assert.equal(own.status, 201, JSON.stringify(own.body));
      assert.equal((own.body as Obj).owner, lessee.id);
      const same = await api('POST', '/v1/allocations', { name: 'same-alloc', resource_class: 'no-such-class', owner: lessee.id });
      assert.equal(same.status, 201, JSON.stringify(same.body));
      const foreignAlloc = await api('POST', '/v1/allocations', { resource_class: 'no-such-class', owner: other.id });
      assert.equal(foreignAlloc.status, 403);
      assert.match(JSON.stringify(foreignAlloc.body), new RegExp(`Cannot create allocation with an owner Project ID value ${other.id} ` +
        `not matching the requestor Project ID ${lessee.id}\\. Policy baremetal:allocation:create_restricted is required`));
      const sysAlloc = await strict.api('POST', '/v1/allocations', { resource_class: 'no-such-class', owner: other.id },
        { 'X-Auth-Token': sysAdmin });
      assert.equal(sysAlloc.status, 201, 'a system member may name any owner');
      assert.equal((sysAlloc.body as Obj).owner, other.id);
      // Let the allocation process finish (no such resource class: error) before this conductor closes.
      for (const a of [own, same, sysAlloc]) {
        const id = String((a.body as Obj).uuid);
        for (let i = 0; i < 200; i++) {
          const st = ((await strict.api('GET', `/v1/allocations/${id}`, undefined, { 'X-Auth-Token': sysAdmin })).body as Obj).state;
          if (st !== 'allocating') break;
          await new Promise((res) => setTimeout(res, 25));
        }
      }
    } finally {
      await strict.close();
    }
  });

  await t.test('openstacksdk as a Nova-like service: allocate by resource class + trait, VIF attach, deploy with a config drive dict, VIF detach, undeploy', async () => {
    // The flow Nova's ironic driver runs, through Debian's openstacksdk and Keystone (admin, the catalog endpoint).
    const r0 = await admin('POST', '/v1/nodes', { driver: 'fake-hardware', name: 'nova-node', network_interface: 'flat',
      resource_class: 'baremetal-gold' });
    assert.equal(r0.status, 201, JSON.stringify(r0.body));
    const uuid = String((r0.body as Obj).uuid);
    try {
      assert.equal((await admin('POST', '/v1/ports', { node_uuid: uuid, address: '52:54:00:aa:0e:01' })).status, 201);
      assert.equal((await admin('PUT', `/v1/nodes/${uuid}/traits/CUSTOM_GOLD`)).status, 204);
      for (const target of ['manage', 'provide']) {
        assert.equal((await admin('PUT', `/v1/nodes/${uuid}/states/provision`, { target })).status, 202);
        for (let i = 0; i < 100; i++) {
          const n = (await admin('GET', `/v1/nodes/${uuid}`)).body as Obj;
          if (n.provision_state === (target === 'manage' ? 'manageable' : 'available') && !n.target_provision_state) break;
          await new Promise((res) => setTimeout(res, 200));
        }
      }
      const script = String.raw`
import json, sys
import openstack
a = json.loads(sys.argv[1])
conn = openstack.connect(auth_url=a['auth_url'], username='admin', password=a['password'], project_name='admin',
    user_domain_id='default', project_domain_id='default', region_name='RegionOne', baremetal_api_version='1.82')
out = {}
out['listed'] = [n.name for n in conn.baremetal.nodes(fields=['uuid', 'name', 'resource_class'], resource_class='baremetal-gold')]
alloc = conn.baremetal.create_allocation(resource_class='baremetal-gold', traits=['CUSTOM_GOLD'], name='nova-alloc')
alloc = conn.baremetal.wait_for_allocation(alloc, timeout=60)
out['allocation'] = [alloc.state, alloc.node_id]
node = conn.baremetal.get_node(alloc.node_id)
out['instance_uuid'] = node.instance_id
conn.baremetal.attach_vif_to_node(node, 'vif-nova-1')
out['vifs'] = list(conn.baremetal.list_node_vifs(node))
conn.baremetal.patch_node(node, [{'op': 'add', 'path': '/instance_info/image_source', 'value': 'http://127.0.0.1:1/img.qcow2'}])
node = conn.baremetal.set_node_provision_state(node, 'active', wait=True, timeout=60,
    config_drive={'meta_data': {'hostname': 'nova-host'}, 'user_data': '#cloud-config\n'})
out['deployed'] = node.provision_state
out['configdrive_kept'] = 'configdrive' in (conn.baremetal.get_node(node).instance_info or {})
conn.baremetal.detach_vif_from_node(node, 'vif-nova-1')
out['vifs_after'] = list(conn.baremetal.list_node_vifs(node))
node = conn.baremetal.set_node_provision_state(node, 'deleted', wait=True, timeout=60)
out['undeployed'] = node.provision_state
try:
    conn.baremetal.get_allocation('nova-alloc')
    out['allocation_after'] = False
except openstack.exceptions.NotFoundException:
    out['allocation_after'] = True
print(json.dumps(out))
`;
      const r = await run('/usr/bin/python3', ['-c', script, JSON.stringify({ auth_url: ks.url, password: ks.adminPassword })],
        { timeoutMs: 180_000, quiet: true, okCodes: [0, 1] });
      assert.equal(r.exitCode, 0, r.stderr);
      const out = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as Obj;
      assert.deepEqual(out.listed, ['nova-node'], 'fields and the resource_class filter');
      assert.deepEqual(out.allocation, ['active', uuid], 'the only node with the class and the trait');
      assert.ok(typeof out.instance_uuid === 'string' && out.instance_uuid !== '', 'the allocation set instance_uuid');
      assert.deepEqual(out.vifs, ['vif-nova-1']);
      assert.equal(out.deployed, 'active');
      assert.equal(out.configdrive_kept, true, 'the dict was built into a config drive');
      assert.deepEqual(out.vifs_after, []);
      assert.equal(out.undeployed, 'available');
      assert.equal(out.allocation_after, true, 'undeploy removed the allocation');
    } finally {
      await admin('DELETE', `/v1/nodes/${uuid}`);
    }
  });

  await t.test('the validator: cache by token, bounded, invalid tokens cached as invalid', async () => {
    const v = new KeystoneValidator(keystoneAuthSchema.parse({ ...keystone, token_cache_size: 2 }));
    const creds = await v.validate(memberToken);
    assert.equal(creds?.projectId, lessee.id);
    assert.ok(creds?.roles.includes('member') && creds.roles.includes('reader'), 'implied roles are in the token');
    assert.equal(creds?.system, false);
    const calls = v.validations;
    assert.equal((await v.validate(memberToken))?.userName, 'lessee-member');
    assert.equal(v.validations, calls, 'the second look-up came from the cache');
    assert.equal(await v.validate('bogus'), null);
    assert.equal(await v.validate('bogus'), null);
    assert.equal(v.validations, calls + 1, 'an invalid token is asked once');
    await v.validate(readerToken);
    assert.equal(v.cacheSize, 2, 'bounded to token_cache_size');
    const sys = await v.validate(await ks.token({ user: 'admin', password: ks.adminPassword, system: true }));
    assert.equal(sys?.system, true);
    assert.equal(sys?.projectId, null);
  });
});
