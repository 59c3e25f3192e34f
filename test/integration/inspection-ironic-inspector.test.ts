/**
 * Our agent's inspection payload accepted by the real ironic-inspector 11 (Debian's package), run as one process
 * on 127.0.0.1 in front of our conductor (standing in for Ironic): the inspector caches the node from our API,
 * our agent posts to its POST /v1/continue, the inspector processes the data with its default hooks and
 * PATCHes the node's properties back through our API.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { have, run, spawnLong } from '../../common/exec.js';
import { freePort, startTestConductor } from '../fixtures/conductor.js';
import { createLoopDevices } from '../fixtures/loop.js';
import { hostNic, spawnAgent, waitForNode, type Json } from '../fixtures/inspection.js';

test('ironic-inspector 11 accepts our agent and updates the node through our API', { timeout: 180_000 }, async (t) => {
  const nic = hostNic();
  if (!nic) return t.skip('no physical NIC on this host');
  if (!(await have('ironic-inspector'))) return t.skip('ironic-inspector is not installed (apt install ironic-inspector)');
  const loops = await createLoopDevices(1, 6 * 1024);
  t.after(() => loops.dispose());
  const c = await startTestConductor({ plain: true });
  t.after(() => c.close());

  // A node in manageable with a (non-loopback) BMC address and the host NIC's port, as Ironic would hand over.
  const r = await c.api('POST', '/v1/nodes', { driver: 'fake-hardware', driver_info: { ipmi_address: '192.0.2.44' } });
  const uuid = (r.body as Json).uuid as string;
  assert.equal((await c.api('POST', '/v1/ports', { node_uuid: uuid, address: nic.mac })).status, 201);
  await c.api('PUT', `/v1/nodes/${uuid}/states/provision`, { target: 'manage' });
  await waitForNode(c, uuid, (n) => n.provision_state === 'manageable', 'manageable');

  const T = await mkdtemp(join(tmpdir(), 'bmts-inspector-'));
  t.after(() => rm(T, { recursive: true, force: true }));
  await mkdir(join(T, 'log'));
  await mkdir(join(T, 'locks'));
  await mkdir(join(T, 'policy.d'));
  await writeFile(join(T, 'policy.yaml'), '{}');
  const port = await freePort();
  const conf = join(T, 'inspector.conf');
  await writeFile(conf, [
    '[DEFAULT]', 'standalone = true', 'auth_strategy = noauth', 'listen_address = 127.0.0.1', `listen_port = ${port}`,
    'transport_url = fake://', 'clean_up_period = 0', `log_dir = ${T}/log`,
    '[database]', `connection = sqlite:///${T}/inspector.db`,
    '[pxe_filter]', 'driver = noop',
    '[coordination]', `backend_url = file://${T}/locks`,
    '[oslo_concurrency]', `lock_path = ${T}/locks`,
    '[processing]', 'store_data = database', 'power_off = false',
    '[oslo_policy]', `policy_file = ${T}/policy.yaml`, `policy_dirs = ${T}/policy.d`,
    '[ironic]', 'auth_type = none', `endpoint_override = ${c.url}`, 'max_retries = 1',
    '',
  ].join('\n'));
  await run('ironic-inspector-dbsync', ['--config-file', conf, 'upgrade'], { timeoutMs: 120_000, quiet: true });
  const proc = spawnLong('ironic-inspector', ['--config-file', conf], {});
  let out = '';
  proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  proc.catch(() => undefined); // killed at the end
  t.after(async () => {
    proc.kill('SIGTERM');
    await new Promise((res) => setTimeout(res, 200));
    proc.kill('SIGKILL');
  });
  const base = `http://127.0.0.1:${port}`;
  const call = async (method: string, path: string): Promise<{ status: number; body: Json }> => {
    const res = await fetch(`${base}${path}`, { method, headers: { 'X-OpenStack-Ironic-Inspector-API-Version': '1.12' } });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null };
  };
  const until = Date.now() + 30_000;
  for (;;) {
    try {
      if ((await fetch(`${base}/`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > until) throw new Error(`ironic-inspector did not start:\n${out.slice(-3000)}`);
    await new Promise((res) => setTimeout(res, 250));
  }
  // What Ironic's `inspector` inspect interface does: introspection with the boot managed elsewhere.
  const start = await call('POST', `/v1/introspection/${uuid}?manage_boot=false`);
  assert.equal(start.status, 202, `${JSON.stringify(start.body)}\n${out.slice(-3000)}`);

  const agent = spawnAgent({ 'ipa-inspection-callback-url': `${base}/v1/continue`,
    'ipa-inspection-collectors': 'default,pci-devices', 'ipa-device-allowlist': loops.allowlist, BOOTIF: nic.mac,
    'ipa-listen-host': '127.0.0.1', 'ipa-listen-port': '0' });
  t.after(() => agent.stop());
  const done = Date.now() + 90_000;
  let status: Json;
  while (Date.now() < done) {
    status = (await call('GET', `/v1/introspection/${uuid}`)).body;
    if (status?.finished) break;
    await new Promise((res) => setTimeout(res, 500));
  }
  assert.ok(status?.finished, `not finished: ${JSON.stringify(status)}\nagent:\n${agent.output().slice(-2000)}\ninspector:\n${out.slice(-3000)}`);
  assert.equal(status.error, null, `${status.error}\n${out.slice(-3000)}`);
  // The inspector PATCHed what it found into our node.
  const n = (await c.api('GET', `/v1/nodes/${uuid}`)).body as Json;
  // The inspector PATCHes strings.
  assert.equal(Number(n.properties.local_gb), 5, 'the 6 GiB loop device minus 1 GiB, by the inspector\'s root disk selection');
  assert.ok(Number(n.properties.cpus) >= 1);
  assert.ok(Number(n.properties.memory_mb) > 0);
  assert.equal(n.properties.cpu_arch, 'x86_64');
  // The inspector stored our data as it received it.
  const data = await call('GET', `/v1/introspection/${uuid}/data`);
  assert.equal(data.status, 200);
  assert.equal(data.body.inventory.interfaces.find((i: Json) => i.mac_address === nic.mac)?.name, nic.name);
});
