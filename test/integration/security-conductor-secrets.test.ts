/**
 * Issue 13, conductor secrets: the pinned agent CA cannot be replaced, the agent token dies with its agent,
 * secrets are masked at any depth (and in URL userinfo) in API output, the lookup, last_error and logs, agent
 * answers are size-capped, per-CA clients are released, Redfish credentials stay with the BMC, md5 is opt-in.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { addLogFile, getLogger } from '../../common/logger.js';
import { AgentClient } from '../../conductor/agent-client.js';
import { parseRedfishInfo } from '../../conductor/drivers/redfish.js';
import { RedfishClient } from '../../conductor/drivers/redfish-client.js';
import type { DriverNode } from '../../conductor/drivers/types.js';
import { validateInstanceInfo } from '../../conductor/orchestration/image-info.js';
import { checkCallbackTimeouts } from '../../conductor/periodic.js';
import { isoTime } from '../../conductor/time.js';
import { startTestConductor } from '../fixtures/conductor.js';

type Obj = Record<string, unknown>;
const dir = await mkdtemp(join(tmpdir(), 'bmts-sec-secrets-'));
after(() => rm(dir, { recursive: true, force: true }));
const c = await startTestConductor({ config: { deploy_callback_timeout: 60 } });
after(() => c.close());
const V = { 'X-OpenStack-Ironic-API-Version': '1.82' };
let macN = 0x10;

async function nodeIn(state: string, dii: Obj, extra: Obj = {}): Promise<{ uuid: string; mac: string }> {
  const r = await c.api('POST', '/v1/nodes', { driver: 'fake-hardware', ...extra });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  const uuid = (r.body as { uuid: string }).uuid;
  const mac = `52:54:00:5e:c0:${(macN++).toString(16).padStart(2, '0')}`;
  assert.equal((await c.api('POST', '/v1/ports', { address: mac, node_uuid: uuid })).status, 201);
  await c.ctx!.store.updateNode(uuid, { provision_state: state as never, driver_internal_info: dii });
  return { uuid, mac };
}
const dii = async (uuid: string): Promise<Obj> => (await c.ctx!.store.getNodeByUuid(uuid))!.driver_internal_info;

test('a heartbeat cannot replace the pinned agent_verify_ca', async () => {
  const { uuid } = await nodeIn('wait call-back', { agent_secret_token: 'tok-1', agent_url: 'http://127.0.0.1:9999', agent_verify_ca: 'PEM-A' });
  const r = await c.api('POST', `/v1/heartbeat/${uuid}`, { callback_url: 'http://127.0.0.1:9999', agent_token: 'tok-1',
    agent_version: '9.9.0', agent_verify_ca: 'PEM-EVIL' }, V);
  assert.equal(r.status, 400);
  const fault = (JSON.parse((r.body as { error_message: string }).error_message) as { faultstring: string }).faultstring;
  assert.equal(fault, 'Detected change in ramdisk provided "agent_verify_ca"');
  assert.equal((await dii(uuid)).agent_verify_ca, 'PEM-A');
});

test('the agent token is wiped on a deploy callback timeout and on start-up recovery', async () => {
  const { uuid } = await nodeIn('wait call-back', { agent_secret_token: 'tok-2', agent_url: 'http://127.0.0.1:9' });
  await c.ctx!.store.updateNode(uuid, { provision_updated_at: isoTime(new Date(Date.now() - 3_600_000)) });
  assert.equal(await checkCallbackTimeouts(c.ctx!), 1);
  const n = await c.ctx!.store.getNodeByUuid(uuid);
  assert.equal(n!.provision_state, 'deploy failed');
  assert.equal(n!.driver_internal_info.agent_secret_token, undefined, 'token survived the callback timeout');
  assert.equal(n!.driver_internal_info.agent_url, undefined);

  const stuck = await nodeIn('deploying', { agent_secret_token: 'tok-3', agent_url: 'http://127.0.0.1:9' });
  await c.restart!();
  const after = await c.ctx!.store.getNodeByUuid(stuck.uuid);
  assert.equal(after!.provision_state, 'deploy failed');
  assert.equal(after!.driver_internal_info.agent_secret_token, undefined, 'token survived start-up recovery');
});

test('secrets are masked at any depth and in URL userinfo, in API output and the lookup', async () => {
  const { uuid, mac } = await nodeIn('wait call-back', {}, {
    driver_info: { ipmi_password: 'pw-1', nested: { deeper: { redfish_password: 'pw-2', list: [{ api_key: 'k-3' }] } },
      redfish_address: 'https://admin:pw-4@bmc.example:8000', headers: { Authorization: 'Basic cHctNQ==' } },
    instance_info: { image_source: 'http://user:pw-6@images.example/disk.img', configdrive: 'H4sI-secret',
      image_url: 'https://x.example/i?temp_url_sig=1&token=pw-7' },
  });
  const shown = await c.api('GET', `/v1/nodes/${uuid}`);
  const text = JSON.stringify(shown.body);
  for (const s of ['pw-1', 'pw-2', 'k-3', 'pw-4', 'cHctNQ==', 'pw-6', 'H4sI-secret', 'pw-7']) assert.ok(!text.includes(s), `${s} shown: ${text}`);
  const di = (shown.body as { driver_info: Obj }).driver_info;
  assert.equal(di.redfish_address, 'https://******@bmc.example:8000');
  const list = await c.api('GET', '/v1/nodes/detail');
  for (const s of ['pw-1', 'pw-2', 'k-3', 'pw-4', 'pw-6']) assert.ok(!JSON.stringify(list.body).includes(s), `${s} in the list`);
  const lookup = await c.api('GET', `/v1/lookup?addresses=${mac}`, undefined, { 'X-OpenStack-Ironic-API-Version': '1.68' });
  assert.equal(lookup.status, 200);
  const ii = (lookup.body as { node: { instance_info: Obj } }).node.instance_info;
  assert.equal(ii.image_source, 'http://******@images.example/disk.img');
  assert.equal(ii.configdrive, '******');
  assert.equal((lookup.body as { config: Obj }).config.agent_md5_checksum_enable, false, 'md5 off, and the agent is told');
});

test('last_error never shows the node\'s secrets or URL credentials', async () => {
  const { uuid } = await nodeIn('enroll', {}, { driver_info: { ipmi_password: 'hunter2-secret' } });
  const node = await c.ctx!.tasks.findNode(uuid);
  await c.ctx!.tasks.withNodeTask(node, { exclusive: true, purpose: 'test' }, async (task) => {
    await task.save({ last_error: 'ipmitool -P hunter2-secret failed; image http://u:pw-8@h/x; agent_token=tok-9 rejected' });
  });
  const shown = await c.api('GET', `/v1/nodes/${uuid}`);
  const err = String((shown.body as Obj).last_error);
  assert.match(err, /ipmitool -P \*{6} failed/);
  for (const s of ['hunter2-secret', 'pw-8', 'tok-9']) assert.ok(!err.includes(s), err);
});

test('log lines mask password/token keys at any depth and URL userinfo', async () => {
  const file = join(dir, 'log.jsonl');
  addLogFile(file);
  const log = getLogger('sec-test');
  log.warn({ driver_info: { ipmi_password: 'pw-log-1', deep: { agent_token: 'pw-log-2' } } }, 'fetching http://u:pw-log-3@h/img');
  await sleep(50);
  const text = await readFile(file, 'utf8');
  assert.match(text, /fetching http:\/\/\*{6}@h\/img/);
  for (const s of ['pw-log-1', 'pw-log-2', 'pw-log-3']) assert.ok(!text.includes(s), text);
});

test('kernel_append_params with a newline is a 400 at PATCH', async () => {
  const { uuid } = await nodeIn('enroll', {});
  const r = await c.api('PATCH', `/v1/nodes/${uuid}`, [{ op: 'add', path: '/driver_info/kernel_append_params', value: 'quiet\nshell' }]);
  assert.equal(r.status, 400);
  assert.match(JSON.stringify(r.body), /kernel_append_params must not contain newlines/);
});

async function serve(handler: Parameters<typeof createServer>[1]): Promise<{ server: Server; url: string }> {
  const server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  after(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

test('agent responses are size-capped, and per-CA clients are released', async () => {
  const big = JSON.stringify({ commands: [{ command_name: 'x', command_status: 'SUCCEEDED', command_result: 'a'.repeat(3 * 2 ** 20) }] });
  const { url } = await serve((_req, res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end(big); });
  const client = new AgentClient({ maxResponseBytes: 2 ** 20, maxAttempts: 1 });
  await assert.rejects(client.listCommands({ url, token: 't', verifyCa: 'PEM-1' }), /too large/);
  assert.equal(client.clientCount, 1);
  await client.release('PEM-2');
  assert.equal(client.clientCount, 1, 'another agent\'s client stays');
  await client.release('PEM-1');
  assert.equal(client.clientCount, 0);
  await client.close();
});

test('Redfish: credentials and session tokens never leave the BMC\'s origin', async () => {
  const seen: string[] = [];
  const evil = await serve((req, res) => { seen.push(`${req.method} ${req.url} ${req.headers['x-auth-token'] ?? ''}`); res.end('{}'); });
  const bmc1 = await serve((req, res) => {
    if (req.url === '/redfish/v1/') {
      res.end(JSON.stringify({ SessionService: {}, Links: { Sessions: { '@odata.id': `${evil.url}/steal` } } }));
    } else { res.writeHead(404); res.end(); }
  });
  const conn = (address: string) => ({ address, username: 'admin', password: 'pw-bmc', verifyCa: true, authType: 'session' as const });
  const opts = { requestTimeoutS: 5, connectionAttempts: 1, connectionRetryIntervalS: 0 };
  const c1 = new RedfishClient(conn(bmc1.url), opts);
  await assert.rejects(c1.request('GET', '/redfish/v1/Systems'), /refusing to send/);
  await c1.close();
  const bmc2 = await serve((req, res) => {
    if (req.url === '/redfish/v1/') res.end(JSON.stringify({ SessionService: {}, Links: { Sessions: { '@odata.id': '/redfish/v1/SessionService/Sessions' } } }));
    else if (req.method === 'POST') { res.writeHead(201, { 'x-auth-token': 'session-tok', location: `${evil.url}/redfish/v1/SessionService/Sessions/1` }); res.end('{}'); }
    else { res.writeHead(200); res.end('{}'); }
  });
  const c2 = new RedfishClient(conn(bmc2.url), opts);
  await assert.rejects(c2.request('GET', '/redfish/v1/Systems'), /session at another origin/);
  await c2.close();
  assert.deepEqual(seen, [], 'the other origin got nothing');
});

test('Redfish: redfish_verify_ca must be a regular file', () => {
  const n = (ca: string): DriverNode => ({ uuid: 'u', driver: 'redfish', driver_info: { redfish_address: 'https://127.0.0.1:1',
    redfish_verify_ca: ca }, instance_info: {}, driver_internal_info: {}, properties: {}, ports: [] });
  for (const ca of ['/etc', '/dev/zero', '/dev/urandom', 'relative.pem']) {
    assert.throws(() => parseRedfishInfo(n(ca)), /redfish_verify_ca must be/, ca);
  }
});

test('md5 image checksums are refused unless allowed', () => {
  const ii = { image_source: 'http://h/i', image_checksum: 'd41d8cd98f00b204e9800998ecf8427e' };
  assert.throws(() => validateInstanceInfo(ii), /md5 image checksums are not allowed/);
  assert.throws(() => validateInstanceInfo({ image_source: 'http://h/i', image_os_hash_algo: 'md5', image_os_hash_value: 'd41d8cd98f00b204e9800998ecf8427e' }), /md5/);
  validateInstanceInfo(ii, { allowMd5: true });
  validateInstanceInfo({ ...ii, image_os_hash_algo: 'sha256', image_os_hash_value: 'a'.repeat(64) });
});
