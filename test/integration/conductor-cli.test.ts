/**
 * The real `baremetal` CLI (python-ironicclient 5.0.1) against our conductor on a loopback port. Each step
 * asserts the CLI's exit code and output; the CLI costs ~1-3 s per call, so calls are kept few.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { run } from '../../common/exec.js';
import { havePostgres } from '../../lab/postgres.js';
import { haveBaremetalCli, startTestConductor, type TestConductor } from '../fixtures/conductor.js';

type Obj = Record<string, unknown>;

function json<T = Obj>(stdout: string): T {
  return JSON.parse(stdout) as T;
}

async function ok(c: TestConductor, args: string[]): Promise<string> {
  const r = await c.cli(args);
  assert.equal(r.exitCode, 0, `baremetal ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

// Every step on each store backend, except the two that never reach the store (they run once, on SQLite): the
// CLI is the costliest client, so the PostgreSQL pass keeps only what can differ.
for (const database of ['sqlite', 'postgres'] as const) test(`baremetal CLI against the conductor (${database} store)`, async (t) => {
  if (!(await haveBaremetalCli())) {
    t.skip('baremetal CLI (python3-ironicclient) not installed');
    return;
  }
  if (database === 'postgres' && !havePostgres()) {
    t.skip('PostgreSQL 15 is not installed (scripts/setup-system.sh installs it)');
    return;
  }
  // Not registered at all on PostgreSQL (a skip would fail CI): they never reach the store.
  const once = database !== 'postgres';
  const c = await startTestConductor({ database });
  t.after(() => c.close());

  if (once) await t.test('http_basic over HTTPS: the generated credentials and CA work, no credentials do not', async () => {
    assert.ok(c.url.startsWith('https://') && c.caFile && c.auth, 'the fixture runs the conductor with its defaults');
    const anon = await run('baremetal', ['--os-auth-type', 'none', '--os-endpoint', c.url, '--os-cacert', c.caFile,
      'node', 'list'], { okCodes: [0, 1, 2], quiet: true, env: { OS_CLOUD: '' } });
    assert.notEqual(anon.exitCode, 0);
    assert.match(anon.stderr, /401|Unauthorized|Authentication required/i);
    const unverified = await run('baremetal', ['--os-auth-type', 'http_basic', '--os-username', c.auth.username,
      `--os-password=${c.auth.password}`, '--os-endpoint', c.url, 'node', 'list'],
    { okCodes: [0, 1, 2], quiet: true, env: { OS_CLOUD: '', OS_CACERT: '', REQUESTS_CA_BUNDLE: '' } });
    assert.notEqual(unverified.exitCode, 0, 'without --os-cacert the certificate is not trusted');
    assert.match(unverified.stderr, /certificate|SSL/i);
    // <data_dir>/openrc: `source` it and the CLI needs no flags.
    const viaRc = await run('sh', ['-c', `. '${c.dataDir}/openrc' && baremetal driver list -f value -c 'Supported driver(s)'`],
      { quiet: true, env: { OS_CLOUD: '' } });
    assert.match(viaRc.stdout, /fake-hardware/);
  });

  if (once) await t.test('driver list / show', async () => {
    const drivers = json<Obj[]>(await ok(c, ['driver', 'list', '-f', 'json']));
    const fake = drivers.find((d) => d['Supported driver(s)'] === 'fake-hardware');
    assert.ok(fake, 'fake-hardware is listed');
    assert.equal(fake['Active host(s)'], 'test-conductor');
    const show = json(await ok(c, ['driver', 'show', 'fake-hardware', '-f', 'json']));
    assert.equal(show.default_deploy_interface, 'fake');
    assert.equal(show.default_power_interface, 'fake');
    assert.ok((show.enabled_rescue_interfaces as string[]).includes('no-rescue'));
  });

  let uuid = '';
  await t.test('node create / list / show / set / unset', async () => {
    const created = json(await ok(c, ['node', 'create', '--driver', 'fake-hardware', '--name', 'cli-node',
      '--driver-info', 'deploy_kernel=http://k', '--property', 'cpus=4', '--resource-class', 'baremetal', '-f', 'json']));
    uuid = created.uuid as string;
    assert.match(uuid, /^[0-9a-f-]{36}$/);
    assert.equal(created.provision_state, 'enroll');
    assert.equal(created.power_state, null);
    assert.deepEqual(created.properties, { cpus: 4 });
    assert.equal(created.deploy_interface, 'fake');
    const list = json<Obj[]>(await ok(c, ['node', 'list', '-f', 'json']));
    assert.deepEqual(list.map((n) => [n.Name, n['Provisioning State'], n.Maintenance]), [['cli-node', 'enroll', false]]);
    assert.equal(await ok(c, ['node', 'set', 'cli-node', '--driver-info', 'ipmi_password=secret', '--instance-info',
      'image_source=http://img', '--extra', 'rack=r1', '--description', 'test node']), '');
    await ok(c, ['node', 'unset', 'cli-node', '--property', 'cpus']);
    const shown = json(await ok(c, ['node', 'show', uuid, '-f', 'json']));
    assert.deepEqual(shown.driver_info, { deploy_kernel: 'http://k', ipmi_password: '******' });
    assert.deepEqual(shown.instance_info, { image_source: 'http://img' });
    assert.deepEqual(shown.extra, { rack: 'r1' });
    assert.deepEqual(shown.properties, {});
    assert.equal(shown.description, 'test node');
    assert.equal(shown.name, 'cli-node');
  });

  await t.test('port create / list', async () => {
    const port = json(await ok(c, ['port', 'create', '52:54:00:AB:CD:EF', '--node', uuid, '--pxe-enabled', 'true',
      '--local-link-connection', 'switch_id=00:11:22:33:44:55', '--local-link-connection', 'port_id=Eth1/1', '-f', 'json']));
    assert.equal(port.address, '52:54:00:ab:cd:ef');
    assert.equal(port.node_uuid, uuid);
    assert.equal(port.pxe_enabled, true);
    assert.deepEqual(port.local_link_connection, { switch_id: '00:11:22:33:44:55', port_id: 'Eth1/1' });
    const ports = json<Obj[]>(await ok(c, ['port', 'list', '--node', uuid, '-f', 'json']));
    assert.deepEqual(ports.map((p) => p.Address), ['52:54:00:ab:cd:ef']);
  });

  await t.test('a verb not allowed in the current state fails at once (400, no retries)', async () => {
    const r = await c.cli(['node', 'deploy', uuid]);
    assert.equal(r.exitCode, 1);
    assert.match(r.stderr, /can not be performed on node .* while it is in state "enroll".*\(HTTP 400\)/s);
  });

  await t.test('manage -> provide -> deploy -> undeploy with --wait, power on/off', async () => {
    for (const [verb, expect] of [['manage', 'manageable'], ['provide', 'available'], ['deploy', 'active']] as const) {
      const out = await ok(c, ['node', verb, uuid, '--wait', '60']);
      assert.match(out, new RegExp(`Waiting for provision state ${expect} on node ${uuid}`));
    }
    await ok(c, ['node', 'power', 'on', uuid]);
    let states = (await c.api('GET', `/v1/nodes/${uuid}/states`)).body as Obj;
    assert.equal(states.provision_state, 'active');
    assert.equal(states.power_state, 'power on');
    await ok(c, ['node', 'undeploy', uuid, '--wait', '60']);
    await ok(c, ['node', 'power', 'off', uuid]);
    states = (await c.api('GET', `/v1/nodes/${uuid}/states`)).body as Obj;
    assert.equal(states.provision_state, 'available');
    assert.equal(states.target_provision_state, null);
    assert.equal(states.power_state, 'power off');
    assert.equal(states.last_error, null);
    const node = (await c.api('GET', `/v1/nodes/${uuid}`)).body as Obj;
    assert.deepEqual(node.instance_info, {}, 'undeploy wipes instance_info');
  });

  await t.test('maintenance set / unset, validate', async () => {
    await ok(c, ['node', 'maintenance', 'set', uuid, '--reason', 'disk swap']);
    let n = (await c.api('GET', `/v1/nodes/${uuid}`)).body as Obj;
    assert.equal(n.maintenance, true);
    assert.equal(n.maintenance_reason, 'disk swap');
    await ok(c, ['node', 'maintenance', 'unset', uuid]);
    n = (await c.api('GET', `/v1/nodes/${uuid}`)).body as Obj;
    assert.equal(n.maintenance, false);
    assert.equal(n.maintenance_reason, null);
    const rows = json<Obj[]>(await ok(c, ['node', 'validate', uuid, '-f', 'json']));
    const byIface = Object.fromEntries(rows.map((r) => [r.Interface, r.Result]));
    assert.equal(byIface.power, true);
    assert.equal(byIface.deploy, true);
    assert.equal(rows.length, 11);
  });

  await t.test('node list --fields and --long', async () => {
    const f = json<Obj[]>(await ok(c, ['node', 'list', '--fields', 'uuid', 'name', 'resource_class', '-f', 'json']));
    assert.deepEqual(f, [{ UUID: uuid, Name: 'cli-node', 'Resource Class': 'baremetal' }]);
    const long = json<Obj[]>(await ok(c, ['node', 'list', '--long', '-f', 'json']));
    assert.equal(long.length, 1);
    assert.equal(long[0]?.Driver, 'fake-hardware');
    assert.equal(long[0]?.['Provisioning State'], 'available');
    assert.equal(long[0]?.['Deploy Interface'], 'fake');
  });

  await t.test('node delete', async () => {
    assert.equal(await ok(c, ['node', 'delete', uuid]), 'Deleted node ' + uuid + '\n');
    const r = await c.cli(['node', 'show', uuid]);
    assert.equal(r.exitCode, 1);
    assert.match(r.stderr, /Node .* could not be found/);
  });

  await t.test('sorting and paging past 1,000 nodes', async () => {
    const total = 1050;
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < total) {
        const i = next++;
        const r = await c.api('POST', '/v1/nodes', { driver: 'fake-hardware', name: `pg-${String(i).padStart(4, '0')}` });
        assert.equal(r.status, 201);
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    const firstPage = (await ok(c, ['node', 'list', '-f', 'value', '-c', 'UUID'])).trim().split('\n');
    assert.equal(firstPage.length, 1000, 'without --limit the CLI shows one page of max_limit');
    const all = (await ok(c, ['node', 'list', '--limit', '0', '-f', 'value', '-c', 'Name'])).trim().split('\n');
    assert.equal(all.length, total, 'with --limit 0 the CLI follows next links');
    assert.equal(new Set(all).size, total);
    // The CLI's --sort sorts the fetched items itself (it sends no sort_key); the server pages in id order.
    const sorted = (await ok(c, ['node', 'list', '--sort', 'name:desc', '--limit', '1020', '-f', 'value', '-c', 'Name']))
      .trim().split('\n');
    // The nodes were created by 8 concurrent workers, so id order (the server's paging order, which `all` shows)
    // is only roughly name order: the CLI sorts the first 1020 by id.
    assert.deepEqual(sorted, all.slice(0, 1020).sort().reverse());
    assert.notDeepEqual(sorted, all.slice(0, 1020), 'the CLI reordered what it fetched');
    const uuids = (await ok(c, ['node', 'list', '--limit', '0', '-f', 'value', '-c', 'UUID'])).trim().split('\n');
    const rest = (await ok(c, ['node', 'list', '--marker', uuids[999] ?? '', '-f', 'value', '-c', 'Name'])).trim().split('\n');
    assert.deepEqual(rest, all.slice(1000));
  });
});
