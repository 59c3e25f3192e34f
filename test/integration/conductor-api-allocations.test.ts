/**
 * Allocations (1.52+) and deploy templates (1.55) through the real `baremetal` CLI (allocation create/list/show/
 * delete, deploy template create/list/show/delete) and raw HTTP for the microversion gates, bad input and the
 * concurrency promise: many allocations at once against fewer nodes never give a node twice, and the surplus ends
 * `error` with Ironic's last_error text.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { checkOrphanAllocations } from '../../conductor/services/allocations.js';
import { createAllocation } from '../../conductor/store/allocations.js';
import { haveBaremetalCli, startTestConductor, type TestConductor } from '../fixtures/conductor.js';

type Obj = Record<string, unknown>;
const reason = (await haveBaremetalCli()) ? undefined : 'the baremetal CLI (python3-ironicclient) is not installed';

describe('allocations and deploy templates', { skip: reason ?? false }, () => {
  let fx: TestConductor;
  const v = (minor: number): Record<string, string> => ({ 'X-OpenStack-Ironic-API-Version': `1.${minor}` });
  const cli = async (args: string[]): Promise<string> => {
    const r = await fx.cli(args);
    assert.equal(r.exitCode, 0, `baremetal ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const fault = (body: unknown): string => (JSON.parse((body as { error_message: string }).error_message) as { faultstring: string }).faultstring;

  async function waitNode(id: string, state: string): Promise<Obj> {
    for (let i = 0; i < 500; i++) {
      const n = (await fx.api('GET', `/v1/nodes/${id}`)).body as Obj;
      if (n.provision_state === state && n.reservation === null) return n;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`node ${id} did not reach ${state}`);
  }

  /** A fake-hardware node made available (manage, provide; no automated cleaning). */
  async function availableNode(name: string, resourceClass: string, traits: string[] = []): Promise<string> {
    const r = await fx.api('POST', '/v1/nodes', { driver: 'fake-hardware', name, resource_class: resourceClass });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const id = (r.body as Obj).uuid as string;
    if (traits.length) assert.equal((await fx.api('PUT', `/v1/nodes/${id}/traits`, { traits })).status, 204);
    assert.equal((await fx.api('PUT', `/v1/nodes/${id}/states/provision`, { target: 'manage' })).status, 202);
    await waitNode(id, 'manageable');
    assert.equal((await fx.api('PUT', `/v1/nodes/${id}/states/provision`, { target: 'provide' })).status, 202);
    const n = await waitNode(id, 'available');
    assert.notEqual(n.power_state, null, 'allocation needs a known power state');
    return id;
  }

  async function settled(uuid: string): Promise<Obj> {
    for (let i = 0; i < 500; i++) {
      const a = (await fx.api('GET', `/v1/allocations/${uuid}`)).body as Obj;
      if (a.state !== 'allocating') return a;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`allocation ${uuid} still allocating`);
  }

  before(async () => {
    fx = await startTestConductor({ config: { automated_clean: false } });
  });
  after(async () => { await fx?.close(); });

  test('CLI: allocation create --wait picks the matching node; list, show, node allocation_uuid, delete frees it', async () => {
    const plain = await availableNode('plain-1', 'cli-class');
    const gpu = await availableNode('gpu-1', 'cli-class', ['CUSTOM_GPU']);
    const created = JSON.parse(await cli(['allocation', 'create', '--resource-class', 'cli-class', '--trait', 'CUSTOM_GPU',
      '--name', 'alloc-gpu', '--extra', 'team=a', '--wait', '30', '-f', 'json'])) as Obj;
    assert.equal(created.state, 'active');
    assert.equal(created.node_uuid, gpu);
    assert.deepEqual(created.traits, ['CUSTOM_GPU']);
    assert.deepEqual(created.extra, { team: 'a' });
    const node = (await fx.api('GET', `/v1/nodes/${gpu}`)).body as Obj;
    assert.equal(node.allocation_uuid, created.uuid);
    assert.equal(node.instance_uuid, created.uuid);
    assert.equal(((await fx.api('GET', `/v1/nodes/${gpu}`, undefined, v(51))).body as Obj).allocation_uuid, undefined,
      'allocation_uuid is 1.52');

    const shown = JSON.parse(await cli(['allocation', 'show', 'alloc-gpu', '-f', 'json'])) as Obj;
    assert.equal(shown.uuid, created.uuid);
    const listed = JSON.parse(await cli(['allocation', 'list', '--node', gpu, '-f', 'json'])) as Obj[];
    assert.deepEqual(listed.map((a) => a.UUID), [created.uuid]);
    const viaNode = await fx.api('GET', `/v1/nodes/gpu-1/allocation`);
    assert.equal((viaNode.body as Obj).uuid, created.uuid);

    // Candidates: the only candidate is taken, so a second allocation fails with Ironic's text.
    const second = JSON.parse(await cli(['allocation', 'create', '--resource-class', 'cli-class', '--candidate-node', 'gpu-1',
      '-f', 'json'])) as Obj;
    const failed = await settled(second.uuid as string);
    assert.equal(failed.state, 'error');
    assert.equal(failed.last_error, `Failed to process allocation ${String(second.uuid)}: none of the requested nodes are ` +
      'available and match the resource class cli-class.');
    assert.equal(failed.node_uuid, null);
    assert.deepEqual(failed.candidate_nodes, [gpu], 'candidate names are stored as UUIDs');

    await cli(['allocation', 'delete', 'alloc-gpu', String(second.uuid)]);
    const freed = (await fx.api('GET', `/v1/nodes/${gpu}`)).body as Obj;
    assert.equal(freed.allocation_uuid, null);
    assert.equal(freed.instance_uuid, null);
    assert.equal((await fx.api('GET', `/v1/nodes/${gpu}/allocation`)).status, 404);
    assert.equal((await fx.api('GET', `/v1/allocations/alloc-gpu`)).status, 404);
    assert.notEqual(plain, gpu);
  });

  test('12 concurrent allocations for 4 nodes: 4 active on distinct nodes, 8 error with Ironic\'s last_error', async () => {
    const nodes = new Set<string>();
    for (let i = 0; i < 4; i++) nodes.add(await availableNode(`race-${i}`, 'race-class'));
    const posted = await Promise.all(Array.from({ length: 12 }, () =>
      fx.api('POST', '/v1/allocations', { resource_class: 'race-class' })));
    for (const r of posted) {
      assert.equal(r.status, 201, JSON.stringify(r.body));
      assert.equal((r.body as Obj).state, 'allocating');
      assert.match(r.headers.get('location') ?? '', /\/v1\/allocations\/[0-9a-f-]{36}$/);
    }
    const final = await Promise.all(posted.map((r) => settled((r.body as Obj).uuid as string)));
    const active = final.filter((a) => a.state === 'active');
    const errored = final.filter((a) => a.state === 'error');
    assert.equal(active.length, 4);
    assert.equal(errored.length, 8);
    const given = active.map((a) => a.node_uuid as string);
    assert.equal(new Set(given).size, 4, 'no node given twice');
    for (const n of given) assert.ok(nodes.has(n));
    for (const a of active) {
      assert.equal(((await fx.api('GET', `/v1/nodes/${String(a.node_uuid)}`)).body as Obj).allocation_uuid, a.uuid);
    }
    for (const a of errored) {
      assert.match(a.last_error as string, new RegExp(`^Failed to process allocation ${String(a.uuid)}: (no available nodes ` +
        'match the resource class race-class|all nodes were filtered out during reservation)\\.$'));
      assert.equal(a.node_uuid, null);
    }
    const listed = (await fx.api('GET', '/v1/allocations?resource_class=race-class&state=active')).body as { allocations: Obj[] };
    assert.equal(listed.allocations.length, 4);
    for (const a of active) assert.equal((await fx.api('DELETE', `/v1/allocations/${String(a.uuid)}`)).status, 204);
  });

  test("unfinished allocations of a conductor that is gone are taken over and processed (Ironic's orphan check)", async () => {
    const ctx = fx.ctx;
    assert.ok(ctx, 'in-process conductor');
    const id = await availableNode('orphan-1', 'orphan-class');
    const orphan = await createAllocation(ctx.store.sql, { uuid: '0b7f5c1e-2d4a-4c6b-8e9f-1a2b3c4d5e6f', resource_class: 'orphan-class',
      conductor_affinity: 'a-conductor-that-died' });
    const mine = await createAllocation(ctx.store.sql, { uuid: '1c8a6d2f-3e5b-4d7c-9fa0-2b3c4d5e6f70', resource_class: 'orphan-class',
      conductor_affinity: ctx.host });
    assert.equal(await checkOrphanAllocations(ctx), 1, "only the dead conductor's allocation: this host's own is running");
    const done = await settled(orphan.uuid);
    assert.equal(done.state, 'active');
    assert.equal(done.node_uuid, id);
    assert.equal(((await fx.api('GET', `/v1/allocations/${mine.uuid}`)).body as Obj).state, 'allocating');
    assert.equal(await checkOrphanAllocations(ctx, { own: true }), 1, 'at start-up this host resumes its own');
    const failed = await settled(mine.uuid);
    assert.equal(failed.last_error, `Failed to process allocation ${mine.uuid}: no available nodes match the resource class orphan-class.`);
    for (const a of [orphan.uuid, mine.uuid]) assert.equal((await fx.api('DELETE', `/v1/allocations/${a}`)).status, 204);
  });

  test('allocation gates and errors (Ironic 21.4 statuses and texts)', async () => {
    let r = await fx.api('GET', '/v1/allocations', undefined, v(51));
    assert.equal(r.status, 404);
    r = await fx.api('POST', '/v1/allocations', { resource_class: 'x' }, v(51));
    assert.equal(r.status, 405);
    r = await fx.api('GET', '/v1/nodes/race-0/allocation', undefined, v(51));
    assert.equal(r.status, 404);
    r = await fx.api('POST', '/v1/allocations', {}, v(52));
    assert.equal(r.status, 400);
    assert.equal(fault(r.body), 'The resource_class field is mandatory when not backfilling');
    r = await fx.api('POST', '/v1/allocations', { resource_class: 'x', bogus: 1 });
    assert.equal(r.status, 400);
    assert.match(fault(r.body), /Additional properties are not allowed \('bogus' was unexpected\)/);
    r = await fx.api('POST', '/v1/allocations', { resource_class: 'x', traits: ['lower'] });
    assert.equal(r.status, 400);
    r = await fx.api('POST', '/v1/allocations', { resource_class: 'x', name: 'bad name!' });
    assert.equal(r.status, 400);
    assert.equal(fault(r.body), "Cannot create allocation with invalid name 'bad name!'");
    r = await fx.api('POST', '/v1/allocations', { resource_class: 'x', candidate_nodes: ['no-such-node'] });
    assert.equal(r.status, 400);
    r = await fx.api('POST', '/v1/allocations', { resource_class: 'x', owner: 'p1' }, v(59));
    assert.equal(r.status, 406, 'owner is 1.60');
    r = await fx.api('POST', '/v1/allocations', { node: 'race-0' }, v(57));
    assert.equal(r.status, 400);
    assert.equal(fault(r.body), 'Cannot set node when creating an allocation in this API version');
    r = await fx.api('GET', '/v1/allocations?sort_key=traits');
    assert.equal(r.status, 400);
    r = await fx.api('GET', '/v1/allocations?owner=p1', undefined, v(59));
    assert.equal(r.status, 406);

    const created = await fx.api('POST', '/v1/allocations', { resource_class: 'none-class', name: 'patchme' }, v(60));
    assert.equal((created.body as Obj).owner, null, 'owner shown at 1.60');
    const uuid = (created.body as Obj).uuid as string;
    assert.equal(((await fx.api('GET', `/v1/allocations/${uuid}`, undefined, v(59))).body as Obj).owner, undefined);
    const failed = await settled(uuid);
    assert.equal(failed.last_error, `Failed to process allocation ${uuid}: no available nodes match the resource class none-class.`);
    r = await fx.api('PATCH', `/v1/allocations/${uuid}`, [{ op: 'replace', path: '/name', value: 'patched' }], v(56));
    assert.equal(r.status, 405, 'PATCH is 1.57');
    r = await fx.api('PATCH', `/v1/allocations/${uuid}`, [{ op: 'replace', path: '/resource_class', value: 'y' }], v(57));
    assert.equal(r.status, 400);
    assert.equal(fault(r.body), 'Cannot patch /resource_class. Only the following can be updated: name, extra');
    r = await fx.api('PATCH', `/v1/allocations/${uuid}`, [{ op: 'replace', path: '/name', value: 'patched' },
      { op: 'add', path: '/extra/k', value: 'v' }], v(57));
    assert.equal(r.status, 200);
    assert.equal((r.body as Obj).name, 'patched');
    assert.deepEqual((r.body as Obj).extra, { k: 'v' });
    r = await fx.api('GET', '/v1/allocations?fields=uuid,name&state=error');
    for (const a of (r.body as { allocations: Obj[] }).allocations) assert.deepEqual(Object.keys(a).sort(), ['name', 'uuid']);
    r = await fx.api('GET', '/v1/allocations/does-not-exist');
    assert.equal(r.status, 404);
    assert.equal(fault(r.body), 'Allocation does-not-exist could not be found.');
    assert.equal((await fx.api('DELETE', `/v1/allocations/${uuid}`)).status, 204);
  });

  test('backfill (1.58) of an active node; undeploy, removing instance_uuid and deleting the node remove the allocation', async () => {
    const id = await availableNode('bf-1', 'bf-class');
    const inst = '3b1d0c8e-7f41-4f0e-9a51-6c1c3c7f2a10';
    assert.equal((await fx.api('PATCH', `/v1/nodes/${id}`, [{ op: 'add', path: '/instance_uuid', value: inst }])).status, 200);
    let r = await fx.api('POST', '/v1/allocations', { node: 'bf-1' }, v(58));
    assert.equal(r.status, 400);
    assert.match(fault(r.body), /Cannot backfill an allocation for node .*Node must be in the "active" state, but the current state is "available"/);
    const failed = (await fx.api('GET', `/v1/allocations/${inst}`)).body as Obj;
    assert.equal(failed.state, 'error');
    assert.equal((await fx.api('DELETE', `/v1/allocations/${inst}`)).status, 204);
    assert.equal((await fx.api('PUT', `/v1/nodes/${id}/states/provision`, { target: 'active' })).status, 202);
    await waitNode(id, 'active');
    r = await fx.api('POST', '/v1/allocations', { node: 'bf-1' }, v(58));
    assert.equal(r.status, 201, JSON.stringify(r.body));
    assert.equal((r.body as Obj).uuid, inst, 'the allocation takes the node\'s instance_uuid');
    assert.equal((r.body as Obj).state, 'active');
    assert.equal((r.body as Obj).resource_class, 'bf-class');
    assert.equal(((await fx.api('GET', `/v1/nodes/${id}`)).body as Obj).allocation_uuid, inst);
    r = await fx.api('DELETE', '/v1/nodes/bf-1/allocation');
    assert.equal(r.status, 409);
    assert.match(fault(r.body), /because the node is active \(and maintenance mode is off\)/);

    // Undeploy removes the allocation with the instance, as Ironic's tear down does.
    assert.equal((await fx.api('PUT', `/v1/nodes/${id}/states/provision`, { target: 'deleted' })).status, 202);
    const torn = await waitNode(id, 'available');
    assert.equal(torn.allocation_uuid, null);
    assert.equal(torn.instance_uuid, null);
    assert.equal((await fx.api('GET', `/v1/allocations/${inst}`)).status, 404);

    // Removing instance_uuid by PATCH removes the allocation too; deleting a node (in maintenance) deletes its allocation.
    const a1 = (await fx.api('POST', '/v1/allocations', { resource_class: 'bf-class' })).body as Obj;
    assert.equal((await settled(a1.uuid as string)).node_uuid, id);
    r = await fx.api('PATCH', `/v1/nodes/${id}`, [{ op: 'remove', path: '/instance_uuid' }]);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal((r.body as Obj).allocation_uuid, null);
    assert.equal((await fx.api('GET', `/v1/allocations/${String(a1.uuid)}`)).status, 404);
    const a2 = (await fx.api('POST', '/v1/allocations', { resource_class: 'bf-class' })).body as Obj;
    assert.equal((await settled(a2.uuid as string)).node_uuid, id);
    assert.equal((await fx.api('PUT', `/v1/nodes/${id}/maintenance`, { reason: 'gone' })).status, 202);
    assert.equal((await fx.api('DELETE', `/v1/nodes/${id}`)).status, 204);
    assert.equal((await fx.api('GET', `/v1/allocations/${String(a2.uuid)}`)).status, 404);
  });

  test('CLI: deploy template create/list/show/delete; gates, validation, duplicate names', async () => {
    const steps = JSON.stringify([{ interface: 'bios', step: 'apply_configuration', args: { settings: [] }, priority: 150 }]);
    const t = JSON.parse(await cli(['deploy', 'template', 'create', 'CUSTOM_HYPERTHREADING_ON', '--steps', steps,
      '--extra', 'a=b', '-f', 'json'])) as Obj;
    assert.equal(t.name, 'CUSTOM_HYPERTHREADING_ON');
    assert.deepEqual(t.steps, [{ interface: 'bios', step: 'apply_configuration', args: { settings: [] }, priority: 150 }]);
    const listed = JSON.parse(await cli(['deploy', 'template', 'list', '-f', 'json'])) as Obj[];
    assert.deepEqual(listed.map((x) => x.Name), ['CUSTOM_HYPERTHREADING_ON']);
    const shown = JSON.parse(await cli(['deploy', 'template', 'show', 'CUSTOM_HYPERTHREADING_ON', '-f', 'json'])) as Obj;
    assert.equal(shown.uuid, t.uuid);
    assert.deepEqual(shown.extra, { a: 'b' });
    const list = (await fx.api('GET', '/v1/deploy_templates', undefined, v(55))).body as { deploy_templates: Obj[] };
    assert.deepEqual(Object.keys(list.deploy_templates[0] ?? {}).sort(), ['links', 'name', 'uuid']);

    let r = await fx.api('POST', '/v1/deploy_templates', { name: 'CUSTOM_HYPERTHREADING_ON', steps: JSON.parse(steps) as unknown });
    assert.equal(r.status, 409);
    assert.equal(fault(r.body), 'A deploy template with name CUSTOM_HYPERTHREADING_ON already exists.');
    r = await fx.api('POST', '/v1/deploy_templates', { name: 'NOT_CUSTOM', steps: JSON.parse(steps) as unknown });
    assert.equal(r.status, 400);
    r = await fx.api('POST', '/v1/deploy_templates', { name: 'CUSTOM_Y', steps: [{ interface: 'deploy', step: 'x', args: {}, priority: 1 },
      { interface: 'deploy', step: 'x', args: {}, priority: 2 }] });
    assert.equal(r.status, 400);
    assert.match(fault(r.body), /^Deploy template invalid: Duplicate deploy steps/);
    r = await fx.api('GET', '/v1/deploy_templates', undefined, v(54));
    assert.equal(r.status, 404);
    r = await fx.api('POST', '/v1/deploy_templates', { name: 'CUSTOM_Z', steps: JSON.parse(steps) as unknown }, v(54));
    assert.equal(r.status, 405);
    r = await fx.api('PATCH', '/v1/deploy_templates/CUSTOM_HYPERTHREADING_ON', [{ op: 'replace', path: '/uuid', value: 'x' }]);
    assert.equal(r.status, 400);
    r = await fx.api('PATCH', '/v1/deploy_templates/CUSTOM_HYPERTHREADING_ON', [{ op: 'replace', path: '/steps/0/priority', value: 0 }]);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(((r.body as Obj).steps as Obj[])[0]?.priority, 0);

    await cli(['deploy', 'template', 'delete', 'CUSTOM_HYPERTHREADING_ON']);
    r = await fx.api('GET', '/v1/deploy_templates/CUSTOM_HYPERTHREADING_ON');
    assert.equal(r.status, 404);
    assert.equal(fault(r.body), 'Deploy template CUSTOM_HYPERTHREADING_ON could not be found.');
  });

  test('deploy: the steps of templates named in instance_info.traits are run (enabled with args) or disabled (priority 0)', async (t) => {
    // A stand-in agent: offers one disabled in-band step, records every command, and leaves steps running.
    const commands: { name: string; params: Obj }[] = [];
    const agent = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = (chunks.length ? JSON.parse(Buffer.concat(chunks).toString()) : {}) as { name?: string; params?: Obj };
        const name = String(body.name ?? '');
        if (req.method === 'POST') commands.push({ name, params: body.params ?? {} });
        res.writeHead(200, { 'content-type': 'application/json' });
        if (req.method === 'GET') { res.end(JSON.stringify({ commands: [] })); return; }
        const result = name === 'deploy.get_deploy_steps' ? { deploy_steps: { TestManager: [{ interface: 'deploy',
          step: 'tune_firmware', priority: 0, reboot_requested: false, abortable: false, argsinfo: null }] },
        hardware_manager_version: { TestManager: '1' } } : null;
        res.end(JSON.stringify({ id: `c${commands.length}`, command_name: name, command_error: null, command_result: result,
          command_status: result ? 'SUCCEEDED' : 'RUNNING' }));
      });
    });
    await new Promise<void>((r) => agent.listen(0, '127.0.0.1', () => r()));
    t.after(() => { agent.closeAllConnections(); agent.close(); });
    const agentUrl = `http://127.0.0.1:${(agent.address() as AddressInfo).port}`;

    for (const tpl of [
      { name: 'CUSTOM_TUNED', steps: [{ interface: 'deploy', step: 'tune_firmware', args: { level: 3 }, priority: 95 }] },
      { name: 'CUSTOM_NO_TENANT_NET', steps: [{ interface: 'deploy', step: 'switch_to_tenant_network', args: {}, priority: 0 }] },
      { name: 'CUSTOM_UNUSED', steps: [{ interface: 'deploy', step: 'prepare_instance_boot', args: {}, priority: 0 }] },
    ]) assert.equal((await fx.api('POST', '/v1/deploy_templates', tpl)).status, 201);
    const mac = '52:54:00:dd:00:01';
    const r = await fx.api('POST', '/v1/nodes', { driver: 'fake-hardware', name: 'tpl-node', deploy_interface: 'direct',
      automated_clean: false, instance_info: { image_source: 'http://127.0.0.1:9/image.raw', image_os_hash_algo: 'sha256',
        image_os_hash_value: 'a'.repeat(64), traits: ['CUSTOM_TUNED', 'CUSTOM_NO_TENANT_NET', 'CUSTOM_NOT_A_TEMPLATE'] } });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const id = (r.body as Obj).uuid as string;
    assert.equal((await fx.api('POST', '/v1/ports', { address: mac, node_uuid: id })).status, 201);
    for (const [target, state] of [['manage', 'manageable'], ['provide', 'available'], ['active', 'wait call-back']]) {
      assert.equal((await fx.api('PUT', `/v1/nodes/${id}/states/provision`, { target })).status, 202);
      await waitNode(id, state as string);
    }
    const lk = (await fx.api('GET', `/v1/lookup?addresses=${mac}`)).body as { config: { agent_token: string } };
    const hb = await fx.api('POST', `/v1/heartbeat/${id}`, { callback_url: agentUrl, agent_token: lk.config.agent_token,
      agent_version: '9.0.0' });
    assert.equal(hb.status, 202, JSON.stringify(hb.body));
    let executed: { name: string; params: Obj } | undefined;
    for (let i = 0; i < 500 && !executed; i++) {
      executed = commands.find((c) => c.name === 'deploy.execute_deploy_step');
      if (!executed) await new Promise((res) => setTimeout(res, 20));
    }
    assert.ok(executed, `commands: ${commands.map((c) => c.name).join(', ')}`);
    assert.deepEqual({ ...(executed.params.step as Obj) }, { interface: 'deploy', step: 'tune_firmware', priority: 95,
      args: { level: 3 }, abortable: false, reboot_requested: false },
    "the template's step runs first after deploy.deploy (95), with the template's args");
    const n = (await fx.api('GET', `/v1/nodes/${id}`)).body as { driver_internal_info: { deploy_steps: Obj[] } };
    assert.deepEqual(n.driver_internal_info.deploy_steps.map((s) => `${String(s.step)}:${String(s.priority)}`), [
      'deploy:100', 'tune_firmware:95', 'write_image:80', 'prepare_instance_boot:60', 'tear_down_agent:40', 'boot_instance:20',
    ], 'switch_to_tenant_network disabled by CUSTOM_NO_TENANT_NET; CUSTOM_UNUSED is not an instance trait');
  });
});
