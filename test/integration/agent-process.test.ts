/**
 * The agent as a real child process (`node --import tsx agent/main.ts --ipa-...`) against the conductor stub on
 * loopback: lookup retries, heartbeats with token and version, forced heartbeat after an async command, auto-TLS,
 * SIGTERM, power_off outside the ramdisk ending only the process, start-up failures and their exit codes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { X509Certificate } from 'node:crypto';
import { spawnLong } from '../../common/exec.js';
import { inRamdisk } from '../../common/ramdisk.js';
import { startConductorStub, freePort, type ConductorStub, type StubOptions } from '../fixtures/conductor-stub.js';
import { httpCall, eventually } from '../fixtures/agent-http.js';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const MAIN = join(ROOT, 'agent/main.ts');

interface AgentProc {
  port: number;
  output(): string;
  exited: Promise<{ code: number | null; signal: string | null }>;
  running(): boolean;
  /** SIGTERM, then SIGKILL after 5 s; resolves when gone. */
  stop(): Promise<{ code: number | null; signal: string | null }>;
}

function spawnAgent(flags: Record<string, string>, port: number): AgentProc {
  const args = ['--import', 'tsx', MAIN, ...Object.entries(flags).map(([k, v]) => `--${k}=${v}`)];
  const child = spawnLong(process.execPath, args, { cwd: ROOT, env: { LOG_LEVEL: 'debug' } });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  child.catch(() => undefined); // its exit is checked where it matters; this only keeps a kill from being an unhandled rejection
  let done = false;
  const exited = new Promise<{ code: number | null; signal: string | null }>((r) =>
    child.once('exit', (code, signal) => {
      done = true;
      r({ code, signal });
    }),
  );
  return {
    port,
    output: () => out,
    exited,
    running: () => !done,
    async stop() {
      if (!done) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(t);
      }
      return exited;
    },
  };
}

async function withAgent(
  t: { after(fn: () => Promise<void>): void },
  stubOpts: StubOptions,
  extra: Record<string, string> = {},
): Promise<{ stub: ConductorStub; agent: AgentProc; dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'agent-proc-'));
  const stub = await startConductorStub(stubOpts);
  const port = await freePort();
  const agent = spawnAgent(
    {
      'ipa-api-url': stub.url,
      'ipa-listen-host': '127.0.0.1',
      'ipa-listen-port': String(port),
      'ipa-advertise-host': '127.0.0.1',
      'ipa-lookup-interval': '0.1',
      'ipa-lookup-timeout': '60',
      'ipa-heartbeat-min-interval': '0.2',
      'ipa-log-file': join(dir, 'agent.log'),
      'ipa-enable-auto-tls': '0',
      ...extra,
    },
    port,
  );
  t.after(async () => {
    await agent.stop();
    await stub.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { stub, agent, dir };
}

const diag = (agent: AgentProc): string => `\n--- agent output ---\n${agent.output().slice(-4000)}`;

test('lookup retries while the conductor answers 404, then heartbeats carry token, version and callback URL', async (t) => {
  const { stub, agent, dir } = await withAgent(t, { lookup404Times: 3 });
  await eventually(() => stub.heartbeats.length >= 1, 'first heartbeat', 30_000).catch((e: Error) => {
    throw new Error(e.message + diag(agent));
  });
  assert.equal(stub.lookups.length, 4, 'three 404s then a success');
  assert.deepEqual(stub.lookups.map((l) => l.status), [404, 404, 404, 200]);
  const first = stub.lookups[0]!;
  assert.ok(first.query.addresses && /^[0-9a-f]{2}(:[0-9a-f]{2}){5}(,|$)/.test(first.query.addresses), first.query.addresses);
  assert.equal(first.headers['x-openstack-ironic-api-version'], '1.62');
  const hb = stub.heartbeats[0]!;
  assert.equal(hb.uuid, stub.nodeUuid);
  assert.equal(hb.headers['x-openstack-ironic-api-version'], '1.68');
  assert.deepEqual(hb.body, {
    callback_url: `http://127.0.0.1:${agent.port}`,
    agent_token: stub.token,
    agent_version: '11.1.0',
  });
  // the token from lookup now guards the command API
  const cmds = await httpCall(`http://127.0.0.1:${agent.port}/v1/commands/?agent_token=${stub.token}`);
  assert.equal(cmds.status, 200);
  assert.deepEqual(cmds.json, { commands: [] });
  const refused = await httpCall(`http://127.0.0.1:${agent.port}/v1/commands/`, {
    method: 'POST',
    body: { name: 'standby.sync', params: {} },
  });
  assert.equal(refused.status, 401);
  // the agent logs to its ipa-log-file as well
  assert.match(await readFile(join(dir, 'agent.log'), 'utf8'), /lookup succeeded/);
});

test('a heartbeat is forced right after an async command finishes', async (t) => {
  // heartbeat_timeout 600 → regular interval 180-360 s: any second heartbeat within the test is a forced one
  const { stub, agent } = await withAgent(t, { heartbeatTimeout: 600 });
  await eventually(() => stub.heartbeats.length >= 1, 'first heartbeat', 30_000).catch((e: Error) => {
    throw new Error(e.message + diag(agent));
  });
  const before = stub.heartbeats.length;
  const r = await httpCall(`http://127.0.0.1:${agent.port}/v1/commands/?agent_token=${stub.token}&wait=true`, {
    method: 'POST',
    body: { name: 'clean.execute_clean_step', params: { step: { step: 'no_such_step_for_test', interface: 'deploy', priority: 0 }, node: {}, ports: [] } },
  });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.command_name, 'execute_clean_step');
  assert.equal(r.json.command_status, 'FAILED');
  assert.equal(typeof r.json.command_error.details, 'string');
  await eventually(() => stub.heartbeats.length > before, 'forced heartbeat', 15_000);
  assert.equal(stub.heartbeats.at(-1)?.body.agent_token, stub.token);
});

test('SIGTERM: the agent logs, closes its server and exits 0', async (t) => {
  const { stub, agent } = await withAgent(t, {});
  await eventually(() => stub.heartbeats.length >= 1, 'first heartbeat', 30_000).catch((e: Error) => {
    throw new Error(e.message + diag(agent));
  });
  const r = await agent.stop();
  assert.deepEqual(r, { code: 0, signal: null }, diag(agent));
  assert.match(agent.output(), /signal received, shutting down/);
  await assert.rejects(httpCall(`http://127.0.0.1:${agent.port}/v1/status`, { timeoutMs: 3000 }));
});

test('standby.power_off outside the ramdisk ends the agent process (exit 0), not the machine', async (t) => {
  if (inRamdisk()) {
    t.skip('this test must not run inside a deploy ramdisk');
    return;
  }
  const { stub, agent } = await withAgent(t, {});
  await eventually(() => stub.heartbeats.length >= 1, 'first heartbeat', 30_000).catch((e: Error) => {
    throw new Error(e.message + diag(agent));
  });
  const r = await httpCall(`http://127.0.0.1:${agent.port}/v1/commands/?agent_token=${stub.token}`, {
    method: 'POST',
    body: { name: 'standby.power_off', params: {} },
  });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.command_name, 'power_off');
  const exit = await Promise.race([
    agent.exited,
    new Promise<null>((res) => setTimeout(() => res(null), 20_000)),
  ]);
  assert.deepEqual(exit, { code: 0, signal: null }, `agent did not end by itself${diag(agent)}`);
  assert.match(agent.output(), /ending the agent process instead of the machine/);
});

test('auto-TLS: https callback URL, agent_verify_ca PEM that verifies the served certificate', async (t) => {
  const { stub, agent } = await withAgent(t, { apiVersion: '1.68' }, { 'ipa-enable-auto-tls': '1' });
  await eventually(() => stub.heartbeats.length >= 1, 'first heartbeat', 30_000).catch((e: Error) => {
    throw new Error(e.message + diag(agent));
  });
  const body = stub.heartbeats[0]!.body;
  assert.equal(body.callback_url, `https://127.0.0.1:${agent.port}`);
  const pem = body.agent_verify_ca;
  assert.equal(typeof pem, 'string');
  const cert = new X509Certificate(pem as string);
  assert.match(cert.subjectAltName ?? '', /IP Address:127\.0\.0\.1/);
  // pinned to that PEM, the agent's API answers over HTTPS; without it the handshake is refused
  const st = await httpCall(`https://127.0.0.1:${agent.port}/v1/status`, { ca: pem as string });
  assert.equal(st.status, 200);
  assert.equal(st.json.version, '11.1.0');
  await assert.rejects(httpCall(`https://127.0.0.1:${agent.port}/v1/status`));
});

test('auto-TLS stays off with ipa-enable-auto-tls=0 and with a conductor older than 1.68', async (t) => {
  for (const [opts, extra] of [
    [{ apiVersion: '1.68' }, { 'ipa-enable-auto-tls': '0' }],
    [{ apiVersion: '1.67' }, { 'ipa-enable-auto-tls': '1' }],
  ] as [StubOptions, Record<string, string>][]) {
    const { stub, agent } = await withAgent(t, opts, extra);
    await eventually(() => stub.heartbeats.length >= 1, 'first heartbeat', 30_000).catch((e: Error) => {
      throw new Error(e.message + diag(agent));
    });
    const body = stub.heartbeats[0]!.body;
    assert.equal(body.callback_url, `http://127.0.0.1:${agent.port}`);
    assert.equal('agent_verify_ca' in body, false);
    assert.equal((await httpCall(`http://127.0.0.1:${agent.port}/v1/status`)).status, 200);
    await agent.stop();
  }
});

test('start-up failures: bad config exits 2 in one line; lookup timeout and an already-issued token exit 1', async (t) => {
  const bad = spawnAgent({ 'ipa-listen-port': 'not-a-port' }, 0);
  t.after(async () => void (await bad.stop()));
  assert.deepEqual(await bad.exited, { code: 2, signal: null });
  assert.equal(bad.output().trim(), 'baremetal-agent: invalid ipa-listen-port="not-a-port": expected a TCP port (0-65535)');

  const { agent: timedOut } = await withAgent(t, { lookup404Times: 1000 }, { 'ipa-lookup-timeout': '1' });
  assert.deepEqual(await timedOut.exited, { code: 1, signal: null });
  assert.match(timedOut.output(), /Could not look up node info/);

  // A second lookup of the same node gets '******' (Ironic hands the token out once): fatal without ipa-agent-token.
  const stub = await startConductorStub({});
  t.after(() => stub.close());
  const port = await freePort();
  const flags = {
    'ipa-api-url': stub.url,
    'ipa-listen-host': '127.0.0.1',
    'ipa-listen-port': String(port),
    'ipa-advertise-host': '127.0.0.1',
    'ipa-enable-auto-tls': '0',
    'ipa-log-file': join(tmpdir(), `agent-proc-masked-${process.pid}.log`),
  };
  t.after(() => rm(flags['ipa-log-file'], { force: true }));
  const firstAgent = spawnAgent(flags, port);
  t.after(async () => void (await firstAgent.stop()));
  await eventually(() => stub.heartbeats.length >= 1, 'first heartbeat', 30_000);
  await firstAgent.stop();
  const second = spawnAgent(flags, port);
  t.after(async () => void (await second.stop()));
  assert.deepEqual(await second.exited, { code: 1, signal: null });
  assert.match(second.output(), /already issued an agent token/);
});
