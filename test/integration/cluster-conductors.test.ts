/**
 * Three conductor processes on one database (a SQLite file, then PostgreSQL): the hash ring spreads 300 nodes, every conductor answers the
 * same, requests and agent heartbeats sent to a non-owner are carried out by the owner, and a conductor killed
 * with -9 while its nodes are mid-deploy and mid-clean is taken over: those nodes fail with a last_error naming
 * it, nodes waiting for their agent go on at the next heartbeat, and the restarted conductor gets its nodes back.
 * The "agents" are tiny HTTP servers here: one answers the first deploy step query then never answers again
 * (work in progress when the conductor dies), one refuses everything (so a continued node ends, failed).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import { havePostgres, startPostgres } from '../../lab/postgres.js';
import { HashRing } from '../../conductor/cluster/hash-ring.js';
import { eventually } from '../fixtures/agent-http.js';
import { startCluster } from '../fixtures/cluster.js';

const NAMES = ['cond-a', 'cond-b', 'cond-c'];
const VICTIM = 'cond-b';
const HB_INTERVAL = 0.5;
const HB_TIMEOUT = 4;

function uuid(i: number): string {
  const h = createHash('sha1').update(`cluster-node-${i}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

interface NodeView { uuid: string; conductor: string | null; provision_state: string; reservation: string | null;
  last_error: string | null }

/** A stand-in agent command API. */
async function fakeAgent(mode: 'stall' | 'refuse'): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let name = '';
      try { name = String((JSON.parse(Buffer.concat(chunks).toString() || '{}') as { name?: unknown }).name ?? ''); } catch { /* none */ }
      const reply = (body: unknown): void => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      if (mode === 'refuse') {
        reply({ id: 'x', command_name: name, command_status: 'FAILED', command_result: null,
          command_error: { type: 'TestRefusal', code: 500, message: 'test agent refuses', details: 'test agent refuses' } });
      } else if (name === 'deploy.get_deploy_steps') {
        reply({ id: 'x', command_name: name, command_status: 'SUCCEEDED', command_error: null,
          command_result: { deploy_steps: {}, hardware_manager_version: {} } });
      }
      // else: the step "runs" until the conductor gives up or dies.
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

async function scenario(t: TestContext, databaseUrl?: string): Promise<void> {
    const cl = await startCluster({ names: NAMES, heartbeatInterval: HB_INTERVAL, heartbeatTimeout: HB_TIMEOUT,
      config: { agent: { command_timeout: 60, max_command_attempts: 1, deploy_logs_collect: 'never' },
        ...(databaseUrl ? { database: { url: databaseUrl } } : {}) } });
    t.after(() => cl.close());
    const stall = await fakeAgent('stall');
    const refuse = await fakeAgent('refuse');
    t.after(() => {
      for (const s of [stall.server, refuse.server]) { s.closeAllConnections(); s.close(); }
    });
    const api = async (name: string, method: string, path: string, body?: unknown): Promise<unknown> => {
      const r = await cl.api(name, method, path, body);
      assert.ok(r.status < 300, `${method} ${path} via ${name}: ${r.status} ${JSON.stringify(r.body)}`);
      return r.body;
    };
    const aliveSet = async (via: string): Promise<string[]> =>
      ((await api(via, 'GET', '/v1/conductors')) as { conductors: { hostname: string; alive: boolean }[] }).conductors
        .filter((c) => c.alive).map((c) => c.hostname).sort();
    for (const n of NAMES) await eventually(async () => (await aliveSet(n)).join() === NAMES.join(), `${n} sees all three`);

    // ---- 300 nodes, created through all three conductors -------------------------------------------------
    const fleet = Array.from({ length: 300 }, (_, i) => uuid(i));
    for (let i = 0; i < fleet.length; i += 30) {
      await Promise.all(fleet.slice(i, i + 30).map((u, j) =>
        api(NAMES[(i + j) % 3] as string, 'POST', '/v1/nodes', { uuid: u, driver: 'fake-hardware' })));
    }
    const owners = async (via: string): Promise<Map<string, string | null>> => {
      const body = await api(via, 'GET', '/v1/nodes?fields=uuid,conductor&limit=1000') as { nodes: NodeView[] };
      return new Map(body.nodes.map((n) => [n.uuid, n.conductor]));
    };
    // The test's own ring (same code, same names) says who owns what. Rings are rebuilt at each conductor's own
    // beat, so one that has not yet seen all three shows other owners for a while: wait until every conductor
    // shows the ring's owner for every node (a view captured from one conductor too early never matched again).
    const ring = new HashRing(NAMES);
    const original = new Map(fleet.map((u) => [u, ring.primary(u)]));
    const count = new Map<string, number>();
    for (const u of fleet) count.set(String(original.get(u)), (count.get(String(original.get(u))) ?? 0) + 1);
    assert.deepEqual([...count.keys()].sort(), NAMES);
    for (const [host, n] of count) assert.ok(n >= 80 && n <= 120, `${host} owns ${n} of 300 nodes`);
    await eventually(async () => {
      for (const n of NAMES) {
        const shown = await owners(n);
        const wrong = fleet.filter((u) => shown.get(u) !== original.get(u));
        if (wrong.length) throw new Error(`${n} shows ${wrong.length} nodes with another owner, e.g. ${wrong[0]} on ${shown.get(wrong[0] as string)}`);
      }
      return true;
    }, 'the ring\'s owners through every conductor', 60_000);

    // Same bodies, but for the links, which name the conductor asked.
    const via = async (n: string, path: string): Promise<string> =>
      JSON.stringify(await api(n, 'GET', path)).replaceAll(cl.member(n).url, 'BASE');
    const detailA = await via('cond-a', '/v1/nodes/detail?limit=1000');
    assert.ok(detailA.length > 300 * 500);
    for (const n of ['cond-b', 'cond-c']) assert.equal(await via(n, '/v1/nodes/detail?limit=1000'), detailA);
    const one = fleet[7] as string;
    const shown = await Promise.all(NAMES.map((n) => via(n, `/v1/nodes/${one}`)));
    for (const s of shown) assert.equal(s, shown[0]);
    const cond = await api('cond-c', 'GET', '/v1/conductors/cond-a') as Record<string, unknown>;
    assert.equal(cond.hostname, 'cond-a');
    assert.equal(cond.alive, true);
    assert.ok((cond.drivers as string[]).includes('fake-hardware'));
    assert.equal((await cl.api('cond-a', 'GET', '/v1/conductors/nope')).status, 404);

    // ---- agent-driven nodes owned by the victim ----------------------------------------------------------
    const victims: string[] = [];
    for (let i = 1000; victims.length < 8; i++) if (ring.primary(uuid(i)) === VICTIM) victims.push(uuid(i));
    const cleaning = victims.slice(0, 3);
    const deploying = victims.slice(3, 6);
    const waitClean = victims[6] as string;
    const waitDeploy = victims[7] as string;
    const token = new Map<string, string>();
    const mac = (u: string): string => `52:54:00:cc:00:${(victims.indexOf(u) + 16).toString(16)}`;
    for (const u of victims) {
      const isDeploy = deploying.includes(u) || u === waitDeploy;
      await api('cond-a', 'POST', '/v1/nodes', { uuid: u, driver: 'fake-hardware', deploy_interface: 'direct',
        ...(isDeploy ? { automated_clean: false, instance_info: { image_source: 'http://127.0.0.1:9/image.raw',
          image_os_hash_algo: 'sha256', image_os_hash_value: 'a'.repeat(64) } } : {}) });
      await api('cond-a', 'POST', '/v1/ports', { address: mac(u), node_uuid: u });
      // Sent to cond-c, carried out by the owner (cond-b): the provision API forwards.
      for (const target of isDeploy ? ['manage', 'provide', 'active'] : ['manage', 'provide']) {
        const before = ((await api('cond-a', 'GET', `/v1/nodes/${u}`)) as NodeView).provision_state;
        await api('cond-c', 'PUT', `/v1/nodes/${u}/states/provision`, { target });
        await eventually(async () => {
          const n = await api('cond-a', 'GET', `/v1/nodes/${u}`) as NodeView;
          return n.provision_state !== before && !n.provision_state.endsWith('ing') && n.reservation === null;
        }, `${u} after ${target}`);
      }
      const n = await api('cond-a', 'GET', `/v1/nodes/${u}`) as NodeView;
      assert.equal(n.provision_state, isDeploy ? 'wait call-back' : 'clean wait', JSON.stringify(n));
      const lk = await api('cond-c', 'GET', `/v1/lookup?addresses=${mac(u)}`) as { config: { agent_token: string } };
      token.set(u, lk.config.agent_token);
    }
    // Heartbeats to a non-owner: the owner picks the work up (its reservation, its state change).
    for (const u of [...cleaning, ...deploying]) {
      const r = await cl.api('cond-a', 'POST', `/v1/heartbeat/${u}`, { callback_url: stall.url, agent_token: token.get(u),
        agent_version: '9.0.0' });
      assert.equal(r.status, 202, JSON.stringify(r.body));
    }
    for (const u of [...cleaning, ...deploying]) {
      await eventually(async () => {
        const n = await api('cond-c', 'GET', `/v1/nodes/${u}`) as NodeView;
        return n.reservation === VICTIM && n.provision_state === (cleaning.includes(u) ? 'cleaning' : 'deploying');
      }, `${u} mid-operation on ${VICTIM}`);
    }

    // ---- kill -9 the owner mid-operation -------------------------------------------------------------------
    const killedAt = Date.now();
    await cl.kill(VICTIM);
    const survivors = NAMES.filter((n) => n !== VICTIM);
    const midOp = [...cleaning, ...deploying];
    const settled = async (): Promise<boolean> => {
      for (const u of midOp) {
        const n = await api('cond-a', 'GET', `/v1/nodes/${u}`) as NodeView;
        if (n.provision_state !== (cleaning.includes(u) ? 'clean failed' : 'deploy failed')) return false;
      }
      const all = await api('cond-c', 'GET', '/v1/nodes?fields=uuid,reservation&limit=1000') as { nodes: NodeView[] };
      return all.nodes.every((n) => n.reservation !== VICTIM);
    };
    await eventually(settled, 'the dead conductor\'s nodes taken over', 2 * HB_TIMEOUT * 1000);
    const takeoverS = (Date.now() - killedAt) / 1000;
    t.diagnostic(`takeover_s=${takeoverS.toFixed(2)} (heartbeat_timeout ${HB_TIMEOUT}s, interval ${HB_INTERVAL}s)`);
    const after = new HashRing(survivors);
    for (const u of midOp) {
      const n = await api('cond-c', 'GET', `/v1/nodes/${u}`) as NodeView;
      assert.match(String(n.last_error), new RegExp(`Conductor ${VICTIM} went offline while the node was in state ` +
        `"(cleaning|deploying)".*taken over by conductor ${after.primary(u)}`), JSON.stringify(n));
      assert.equal(n.conductor, after.primary(u));
    }
    for (const n of survivors) assert.deepEqual(await aliveSet(n), survivors);
    const down = await api('cond-a', 'GET', `/v1/conductors/${VICTIM}`) as { alive: boolean };
    assert.equal(down.alive, false);
    const moved = await owners('cond-c');
    for (const u of fleet) {
      assert.notEqual(moved.get(u), VICTIM);
      if (original.get(u) !== VICTIM) assert.equal(moved.get(u), original.get(u), 'only the dead conductor\'s nodes move');
    }

    // Nodes waiting for their agent go on at its next heartbeat, on the new owner (here: the agent refuses, so
    // the step that runs there fails the node, and the failure is recorded by the new owner).
    for (const u of [waitClean, waitDeploy]) {
      const r = await cl.api('cond-c', 'POST', `/v1/heartbeat/${u}`, { callback_url: refuse.url, agent_token: token.get(u),
        agent_version: '9.0.0' });
      assert.equal(r.status, 202, JSON.stringify(r.body));
    }
    for (const u of [waitClean, waitDeploy]) {
      const n = await eventually(async () => {
        const v = await api('cond-a', 'GET', `/v1/nodes/${u}`) as NodeView;
        return v.provision_state.endsWith('failed') && v.reservation === null ? v : undefined;
      }, `${u} continued on its new owner`);
      assert.match(String(n?.last_error), /test agent refuses/);
      const hist = await api('cond-a', 'GET', `/v1/nodes/${u}/history?detail=true`) as
        { history: { severity: string; conductor: string }[] };
      const err = hist.history.filter((h) => h.severity === 'ERROR').at(-1);
      assert.equal(err?.conductor, after.primary(u), 'the new owner ran the step');
    }

    // ---- the dead conductor comes back and gets its nodes back --------------------------------------------
    await cl.start(VICTIM);
    for (const n of NAMES) await eventually(async () => (await aliveSet(n)).join() === NAMES.join(), `${n} sees ${VICTIM} again`);
    await eventually(async () => {
      for (const n of NAMES) {
        const o = await owners(n);
        if (fleet.some((u) => o.get(u) !== original.get(u))) return false;
      }
      return true;
    }, `${VICTIM} owns its nodes again, as seen by all`);
    // And a request for one of them, sent elsewhere, is carried out there.
    const back = fleet.find((u) => original.get(u) === VICTIM) as string;
    await api('cond-a', 'PUT', `/v1/nodes/${back}/states/power`, { target: 'power on' });
    await eventually(async () => ((await api('cond-c', 'GET', `/v1/nodes/${back}`)) as { power_state: string }).power_state
      === 'power on', 'forwarded power on');
  }

test('three conductor processes on one SQLite file: ring, same answers, forwarding, kill -9 takeover, rejoin',
  { timeout: 240_000 }, (t) => scenario(t));

test('three conductor processes on one PostgreSQL database: the same', { timeout: 240_000,
  skip: havePostgres() ? false : 'PostgreSQL 15 is not installed (npm run setup installs it)' }, async (t) => {
  const pg = await startPostgres({ fast: true });
  t.after(() => pg.stop());
  await scenario(t, await pg.createDatabase());
});
