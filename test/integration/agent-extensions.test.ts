/**
 * The built-in extensions through the real API of an in-process agent (startAgent, standalone mode):
 * log.collect_system_logs, poll.*, standby.sync, NotImplemented stand-ins, system.lockdown ending the agent
 * outside the ramdisk, and the registry's view of every stock extension.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, readFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../common/exec.js';
import { inRamdisk } from '../../common/ramdisk.js';
import { configFromFlags } from '../../agent/config.js';
import { startAgent, type RunningAgent } from '../../agent/main.js';
import { registry } from '../../agent/commands/registry.js';
import { httpCall, type TestResponse } from '../fixtures/agent-http.js';

let dir: string;
let agent: RunningAgent;
let base: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'agent-ext-'));
  agent = await startAgent(
    configFromFlags({
      'ipa-standalone': true,
      'ipa-listen-host': '127.0.0.1',
      'ipa-listen-port': 0,
      'ipa-log-file': join(dir, 'agent.log'),
      // no disk of this machine is visible to the managers
      'ipa-device-allowlist': '/dev/loop-none-for-this-test',
    }),
  );
  base = `http://127.0.0.1:${agent.port}`;
});

after(async () => {
  await agent.stop();
  await rm(dir, { recursive: true, force: true });
});

const cmd = (name: string, params: Record<string, unknown> = {}): Promise<TestResponse> =>
  httpCall(`${base}/v1/commands/?wait=true`, { method: 'POST', body: { name, params } });

test('every stock extension is registered, standby merged from two modules', () => {
  const d = registry.describe();
  for (const ext of ['standby', 'clean', 'deploy', 'image', 'log', 'system', 'poll']) assert.ok(d[ext], ext);
  for (const c of ['power_off', 'run_image', 'sync', 'get_partition_uuids', 'prepare_image']) {
    assert.ok(d.standby?.includes(c), `standby.${c}`);
  }
  assert.ok(d.clean?.includes('get_clean_steps') && d.deploy?.includes('execute_deploy_step'));
  assert.ok(d.system?.includes('lockdown') && d.log?.includes('collect_system_logs'));
  assert.ok(d.poll?.includes('get_hardware_info') && d.poll.includes('get_node_info'));
});

test('standalone agent serves commands without a token; GET /v1/status works', async () => {
  assert.equal(agent.token(), null);
  assert.equal(agent.callbackUrl, null);
  assert.equal((await httpCall(`${base}/v1/status`)).status, 200);
  const r = await cmd('standby.sync');
  assert.equal(r.status, 200);
  assert.equal(r.json.command_name, 'sync');
  assert.equal(r.json.command_status, 'SUCCEEDED');
  assert.equal(r.json.command_result, null);
});

test('log.collect_system_logs returns a base64 tar.gz with the agent log, dmesg and an index', async () => {
  const r = await cmd('log.collect_system_logs');
  assert.equal(r.json.command_status, 'SUCCEEDED', JSON.stringify(r.json.command_error));
  const b64: string = r.json.command_result.system_logs;
  assert.match(b64, /^[A-Za-z0-9+/]+=*$/);
  const tgz = join(dir, 'logs.tar.gz');
  await writeFile(tgz, Buffer.from(b64, 'base64'));
  const out = join(dir, 'logs');
  await run('mkdir', ['-p', out]);
  await run('tar', ['-xzf', tgz, '-C', out]);
  const names = await readdir(out);
  for (const n of ['INDEX', 'baremetal-agent.log', 'dmesg', 'ip_addr', 'meminfo']) assert.ok(names.includes(n), `${n} in ${names.join(',')}`);
  assert.match(await readFile(join(out, 'baremetal-agent.log'), 'utf8'), /agent starting/);
  assert.match(await readFile(join(out, 'meminfo'), 'utf8'), /MemTotal/);
  assert.match(await readFile(join(out, 'INDEX'), 'utf8'), /dmesg: dmesg/);
});

test('poll.get_node_info without a lookup, set_node_info in standalone mode, token never echoed', async () => {
  const empty = await cmd('poll.get_node_info');
  assert.deepEqual(empty.json.command_result, { node: null, config: null });
  const set = await cmd('poll.set_node_info', {
    node_info: { node: { uuid: 'n-1', properties: {} }, config: { heartbeat_timeout: 60, agent_token: 't'.repeat(32) } },
  });
  assert.equal(set.json.command_status, 'SUCCEEDED', JSON.stringify(set.json));
  const got = await cmd('poll.get_node_info');
  assert.equal(got.json.command_result.node.uuid, 'n-1');
  assert.equal(got.json.command_result.config.agent_token, '******');
  const bad = await cmd('poll.set_node_info', { node_info: { node: {} } });
  assert.equal(bad.status, 400);
  assert.match(bad.json.faultstring, /^Invalid command parameters: /);
});

test('poll.get_hardware_info answers the generic manager\'s inventory of this host', async () => {
  const r = await cmd('poll.get_hardware_info');
  assert.equal(r.status, 200);
  assert.equal(r.json.command_status, 'SUCCEEDED', JSON.stringify(r.json.command_error));
  assert.ok(Array.isArray(r.json.command_result.interfaces), 'inventory has interfaces');
  assert.ok(r.json.command_result.memory, 'inventory has memory');
  assert.ok(r.json.command_result.cpu, 'inventory has cpu');
});

test('rescue.finalize_rescue outside the ramdisk without ipa-rescue-root refuses (the host\'s /etc/shadow is never touched)', async () => {
  const r = await cmd('rescue.finalize_rescue', { rescue_password: 'x' });
  assert.equal(r.json.command_status, 'FAILED');
  assert.match(r.json.command_error.details, /host's \/etc\/shadow: refused/);
  const bad = await cmd('rescue.finalize_rescue', { rescue_password: 'evil:0:0::\nroot::', hashed: true });
  assert.equal(bad.status, 400, 'a "hash" that is no crypt hash never reaches a shadow file');
});

test('system.lockdown outside the ramdisk stops serving and ends the agent (exit code 0), host NICs untouched', async (t) => {
  if (inRamdisk()) {
    t.skip('must not run inside a deploy ramdisk');
    return;
  }
  const r = await cmd('system.lockdown');
  assert.equal(r.json.command_status, 'SUCCEEDED');
  const code = await Promise.race([agent.ended, new Promise<string>((res) => setTimeout(() => res('timeout'), 10_000))]);
  assert.equal(code, 0);
  await assert.rejects(httpCall(`${base}/v1/status`, { timeoutMs: 3000 }));
});
