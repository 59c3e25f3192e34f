/**
 * Issue 21, config drive given as a dictionary (API 1.56, vendor_data 1.59): the conductor builds the ISO9660
 * `config-2` image the way Ironic (build_configdrive) and openstacksdk (configdrive.build) lay it out, gzipped and
 * base64-encoded as Ironic stores it. Each image is read back with isoinfo (genisoimage's own reader, no mount);
 * the API refuses bad dictionaries with Ironic's 400s before anything changes.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { have, run } from '../../common/exec.js';
import { buildConfigDrive, checkConfigDriveRequest } from '../../conductor/services/configdrive.js';
import { startTestConductor, type TestConductor } from '../fixtures/conductor.js';

type Obj = Record<string, unknown>;

/** The files of a gzip+base64 config drive as isoinfo reads them (Rock Ridge names), plus its volume id. */
async function readIso(b64: string): Promise<{ volume: string; files: Map<string, string> }> {
  const dir = await mkdtemp(join(tmpdir(), 'bmts-cd-read-'));
  try {
    const iso = join(dir, 'cd.iso');
    await writeFile(iso, gunzipSync(Buffer.from(b64, 'base64')));
    const pvd = (await run('isoinfo', ['-d', '-i', iso], { quiet: true })).stdout;
    const volume = /^Volume id:\s*(.*)$/m.exec(pvd)?.[1]?.trim() ?? '';
    const listing = (await run('isoinfo', ['-R', '-f', '-i', iso], { quiet: true })).stdout.split('\n').filter(Boolean);
    const files = new Map<string, string>();
    for (const path of listing) {
      if (!/(\.json|user_data)$/.test(path)) continue;
      files.set(path, (await run('isoinfo', ['-R', '-i', iso, '-x', path], { quiet: true })).stdout);
    }
    return { volume, files };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function until(c: TestConductor, id: string, state: string): Promise<Obj> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const n = (await c.api('GET', `/v1/nodes/${id}`)).body as Obj;
    if (n.provision_state === state && n.reservation === null) return n;
    if (Date.now() > deadline) throw new Error(`node ${id} did not reach ${state} (is ${String(n.provision_state)})`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('config drive dictionaries', { timeout: 120_000 }, async (t) => {
  if (!(await have('genisoimage')) || !(await have('isoinfo'))) {
    t.skip('genisoimage/isoinfo not installed (apt-get install genisoimage)');
    return;
  }

  await t.test('built into config-2 with openstacksdk\'s layout, read back with isoinfo', async () => {
    const b64 = await buildConfigDrive({
      meta_data: { hostname: 'cd-host', public_keys: { k: 'ssh-ed25519 AAAA' } },
      user_data: '#cloud-config\nruncmd: [echo hi]\n',
      network_data: { links: [{ id: 'eth0', type: 'phy', ethernet_mac_address: '52:54:00:12:34:56' }], networks: [], services: [] },
      vendor_data: { vendor: { x: 1 } },
    }, { uuid: '11111111-2222-3333-4444-555555555555', name: 'node-a' });
    assert.match(b64, /^[A-Za-z0-9+/=]+$/, 'base64');
    const { volume, files } = await readIso(b64);
    assert.equal(volume, 'config-2');
    for (const version of ['2012-08-10', 'latest']) {
      const meta = JSON.parse(files.get(`/openstack/${version}/meta_data.json`) ?? 'null') as Obj;
      assert.deepEqual(meta, { hostname: 'cd-host', public_keys: { k: 'ssh-ed25519 AAAA' },
        uuid: '11111111-2222-3333-4444-555555555555', name: 'node-a' }, 'the node\'s uuid and name filled in');
      assert.equal(files.get(`/openstack/${version}/user_data`), '#cloud-config\nruncmd: [echo hi]\n');
      assert.equal((JSON.parse(files.get(`/openstack/${version}/network_data.json`) ?? '{}') as { links: Obj[] }).links[0]?.id, 'eth0');
      assert.deepEqual(JSON.parse(files.get(`/openstack/${version}/vendor_data2.json`) ?? 'null'), { vendor: { x: 1 } });
    }
  });

  await t.test('the caller\'s uuid/name win; dict user_data becomes JSON; empty parts are left out', async () => {
    const b64 = await buildConfigDrive({ meta_data: { uuid: 'mine', name: 'own' }, user_data: { ignition: { version: '3.0.0' } },
      network_data: {} }, { uuid: 'aaaaaaaa-2222-3333-4444-555555555555', name: null });
    const { files } = await readIso(b64);
    assert.deepEqual(JSON.parse(files.get('/openstack/latest/meta_data.json') ?? 'null'), { uuid: 'mine', name: 'own' });
    assert.deepEqual(JSON.parse(files.get('/openstack/latest/user_data') ?? 'null'), { ignition: { version: '3.0.0' } });
    assert.ok(!files.has('/openstack/latest/network_data.json'), 'an empty network_data is not written');
    assert.ok(!files.has('/openstack/latest/vendor_data2.json'));
    const bare = await readIso(await buildConfigDrive({ user_data: '' }, { uuid: 'bbbbbbbb-2222-3333-4444-555555555555', name: 'n' }));
    assert.deepEqual([...bare.files.keys()].sort(), ['/openstack/2012-08-10/meta_data.json', '/openstack/latest/meta_data.json']);
  });

  await t.test('Ironic\'s request checks', () => {
    const refused = (target: string, cd: unknown, minor: number, re: RegExp): void => {
      assert.throws(() => checkConfigDriveRequest(target, cd, minor), (e: Error & { status?: number }) => {
        assert.equal(e.status, 400, `${JSON.stringify(cd)} at 1.${minor}`);
        assert.match(e.message, re);
        return true;
      });
    };
    refused('active', { meta_data: {} }, 55, /JSON object for configdrive is only supported starting with API version 1\.56/);
    refused('active', { vendor_data: {} }, 58, /vendor_data in configdrive is only supported starting with API version 1\.59/);
    refused('rebuild', 'H4sI', 34, /only supported when setting provision state to active$/);
    refused('manage', { meta_data: {} }, 82, /active, rebuild/);
    refused('active', { meta_data: 'x' }, 82, /Invalid configdrive format/);
    refused('active', { meta_data: null }, 82, /Invalid configdrive format/);
    refused('active', { user_data: 5 }, 82, /Invalid configdrive format/);
    refused('active', { bogus: {} }, 82, /Additional properties are not allowed \('bogus' was unexpected\)/);
    refused('active', ['x'], 82, /Invalid configdrive format/);
    refused('active', 5, 82, /Invalid configdrive format/);
    refused('active', 'not base64 {json}', 82, /neither a JSON, nor a URL, nor a base64 string/);
    for (const ok of ['http://example.com/cd.iso', 'H4sIAAAA\nAAAA==', '', null, undefined, { user_data: null }]) {
      assert.doesNotThrow(() => checkConfigDriveRequest('active', ok, 82), JSON.stringify(ok));
    }
    assert.doesNotThrow(() => checkConfigDriveRequest('rebuild', { vendor_data: {} }, 59));
    assert.doesNotThrow(() => checkConfigDriveRequest('manage', '', 82), 'empty is no config drive');
  });

  await t.test('through the API: bad dictionaries are 400 with no change; a good one is deployed and stored built', async () => {
    const c = await startTestConductor({ plain: true, config: { automated_clean: false } });
    t.after(() => c.close());
    const id = String(((await c.api('POST', '/v1/nodes', { driver: 'fake-hardware', name: 'cd-api' })).body as Obj).uuid);
    for (const [verb, state] of [['manage', 'manageable'], ['provide', 'available']] as const) {
      assert.equal((await c.api('PUT', `/v1/nodes/${id}/states/provision`, { target: verb })).status, 202);
      await until(c, id, state);
    }
    const put = (configdrive: unknown, version = '1.82') => c.api('PUT', `/v1/nodes/${id}/states/provision`,
      { target: 'active', configdrive }, { 'X-OpenStack-Ironic-API-Version': version });
    for (const [bad, version] of [[{ meta_data: [] }, '1.82'], [{ network_data: 'x' }, '1.82'], [{ extra: 1 }, '1.82'],
      [{ meta_data: {} }, '1.55'], [{ vendor_data: { a: 1 } }, '1.58']] as const) {
      const r = await put(bad, version);
      assert.equal(r.status, 400, `${JSON.stringify(bad)} at ${version}: ${JSON.stringify(r.body)}`);
      const inner = JSON.parse(String((r.body as Obj).error_message)) as Obj;
      assert.match(String(inner.faultstring), /configdrive/);
    }
    assert.equal(((await c.api('GET', `/v1/nodes/${id}`)).body as Obj).provision_state, 'available', 'nothing changed');
    const r = await put({ meta_data: { hostname: 'api-host' }, user_data: '#!/bin/sh\necho ok\n', vendor_data: { v: 2 } });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const node = await until(c, id, 'active');
    assert.equal((node.instance_info as Obj).configdrive, '******', 'masked in the API');
    const stored = (await c.ctx?.store.getNodeByUuid(id))?.instance_info.configdrive;
    assert.equal(typeof stored, 'string', 'the conductor stores the built image, not the dictionary');
    const { volume, files } = await readIso(stored as string);
    assert.equal(volume, 'config-2');
    assert.deepEqual(JSON.parse(files.get('/openstack/latest/meta_data.json') ?? 'null'), { hostname: 'api-host', uuid: id, name: 'cd-api' });
    assert.equal(files.get('/openstack/latest/user_data'), '#!/bin/sh\necho ok\n');
    assert.deepEqual(JSON.parse(files.get('/openstack/latest/vendor_data2.json') ?? 'null'), { v: 2 });
  });
});
