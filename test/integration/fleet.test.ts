/**
 * A fleet of virtual nodes (lab/virtual-nodes.ts: a Redfish BMC each, power-on boots our agent as a process, a
 * loop-device disk each) driven by one conductor through its real redfish power path and the `baremetal` CLI:
 * enroll -> manage -> provide (automated cleaning) -> deploy all at once; the concurrency limit's 503s; fast-track
 * (clean then deploy on the running agent, no power cycle in the BMC's log) and its fallback when the agent died.
 * FLEET_NODES overrides the node count (default 10).
 */
import assert from 'node:assert/strict';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { have } from '../../common/exec.js';
import { startVirtualNodes, type VirtualFleet, type VirtualNode } from '../../lab/virtual-nodes.js';
import { haveBaremetalCli, startTestConductor, type TestConductor } from '../fixtures/conductor.js';
import { buildRawDiskImage, fileDigest, serveImages, type ImageServer } from '../fixtures/images.js';

// 10 by default keeps CI inside its budget while still twice the deploy limit; `npm run bench -- fleet-deploy` and
// FLEET_NODES=50 exercise the larger fleets.
const COUNT = Number(process.env.FLEET_NODES ?? 10);
const IMAGE_MIB = 8;
const LIMIT = Number(process.env.FLEET_LIMIT ?? 5);

interface NodeJson {
  uuid: string;
  name: string;
  provision_state: string;
  power_state: string | null;
  last_error: string | null;
  driver_internal_info: Record<string, unknown>;
}

async function skipReason(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'needs root for loop devices';
  if (!(await haveBaremetalCli())) return 'the baremetal CLI (python3-ironicclient) is not installed';
  for (const p of ['losetup', 'parted', 'mkfs.ext4', 'sgdisk']) if (!(await have(p))) return `${p} missing`;
  return undefined;
}

const reason = await skipReason();

/**
 * SHA-256 of bytes [1 MiB, size) of a disk or image file: the partition's content. The first MiB is left out
 * because writing a GPT image to a bigger disk moves the backup header and so rewrites the primary one.
 */
async function contentDigest(path: string, size: number): Promise<string> {
  const fh = await open(path, 'r');
  try {
    const start = 2 ** 20;
    const bytes = size - start;
    const buf = Buffer.alloc(bytes);
    let off = 0;
    while (off < bytes) {
      const { bytesRead } = await fh.read(buf, off, bytes - off, start + off);
      if (bytesRead === 0) break;
      off += bytesRead;
    }
    return createHash('sha256').update(buf.subarray(0, off)).digest('hex');
  } finally {
    await fh.close();
  }
}

describe(`fleet: ${COUNT} virtual nodes on one conductor`, { skip: reason ?? false }, () => {
  let dir: string;
  let fx: TestConductor;
  let fleet: VirtualFleet;
  let images: ImageServer;
  let imageSha: string;
  let imageContent: string;
  const uuids = new Map<string, string>(); // name -> uuid

  const api = async (method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> =>
    fx.api(method, path, body);
  const nodes = async (): Promise<NodeJson[]> => {
    const r = await api('GET', '/v1/nodes?detail=true&limit=1000');
    assert.equal(r.status, 200);
    return (r.body as { nodes: NodeJson[] }).nodes;
  };
  const show = async (name: string): Promise<NodeJson> => {
    const r = await api('GET', `/v1/nodes/${name}`);
    assert.equal(r.status, 200);
    return r.body as NodeJson;
  };
  const waitAll = async (names: readonly string[], state: string, timeoutMs: number): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const all = (await nodes()).filter((n) => names.includes(n.name));
      const failed = all.filter((n) => /failed|error/.test(n.provision_state));
      assert.deepEqual(failed.map((n) => `${n.name}: ${n.provision_state}: ${n.last_error}`), [], 'no node failed');
      if (all.length === names.length && all.every((n) => n.provision_state === state)) return;
      if (Date.now() > deadline) {
        assert.fail(`timed out waiting for ${state}: ${all.filter((n) => n.provision_state !== state)
          .map((n) => `${n.name}=${n.provision_state}`).join(', ')}`);
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  };
  const provision = (name: string, target: string, extra: Record<string, unknown> = {}) =>
    api('PUT', `/v1/nodes/${name}/states/provision`, { target, ...extra });
  const cliOk = async (args: string[]): Promise<string> => {
    const r = await fx.cli(args, { timeoutMs: 120_000 });
    assert.equal(r.exitCode, 0, `baremetal ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const vnode = (name: string): VirtualNode => fleet.nodes.find((n) => n.name === name)!;
  const setImage = async (name: string): Promise<void> => {
    const r = await api('PATCH', `/v1/nodes/${name}`, [
      { op: 'add', path: '/instance_info/image_source', value: images.url('fleet.raw') },
      { op: 'add', path: '/instance_info/image_os_hash_algo', value: 'sha256' },
      { op: 'add', path: '/instance_info/image_os_hash_value', value: imageSha },
    ]);
    assert.equal(r.status, 200);
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bmts-fleet-'));
    const img = await buildRawDiskImage(dir, { sizeMiB: IMAGE_MIB, name: 'fleet.raw' });
    imageSha = await fileDigest(img.path, 'sha256');
    imageContent = await contentDigest(img.path, IMAGE_MIB * 2 ** 20);
    images = await serveImages(dir);
    fx = await startTestConductor({
      plain: true,
      config: {
        heartbeat_timeout: 8,
        deploy_callback_timeout: 120,
        clean_callback_timeout: 120,
        enabled_hardware_types: ['redfish'],
        power: { state_change_timeout: 10, soft_power_off_timeout: 10, ipmi_command_retry_timeout: 10,
          ipmi_min_command_interval: 0, redfish_connection_attempts: 2, redfish_connection_retry_interval: 0.2 },
        agent: { power_off_poll_attempts: 10, power_off_poll_interval: 0.3, command_wait_interval: 0.5,
          command_timeout: 60, max_command_attempts: 3, command_wait_attempts: 100, deploy_logs_collect: 'never' },
        deploy: { fast_track: false, fast_track_timeout: 8 },
        conductor: { max_concurrent_deploy: 250, max_concurrent_clean: 50, workers_pool_size: 300, max_bmc_calls: 16,
          max_bmc_calls_per_address: 2 },
      },
    });
    fleet = await startVirtualNodes({ count: COUNT, apiUrl: fx.url, logDir: join(dir, 'agents'), diskMiB: 32,
      agentFlags: { 'ipa-heartbeat-min-interval': '0.5' } });
  });

  after(async () => {
    await fleet?.stop();
    await fx?.close();
    await images?.close();
    if (dir && !process.env.FLEET_KEEP) await rm(dir, { recursive: true, force: true }); // FLEET_KEEP=1: keep agent logs
  });

  test('enroll with `baremetal create`, manage, provide: every node cleaned and available', async () => {
    const doc = { nodes: fleet.nodes.map((n) => ({
      name: n.name, driver: 'redfish', driver_info: n.driverInfo, boot_interface: 'fake', deploy_interface: 'direct',
      properties: { root_device: { name: n.disk } }, ports: [{ address: n.mac }],
    })) };
    const file = join(dir, 'fleet.json');
    await writeFile(file, JSON.stringify(doc));
    await cliOk(['create', file]);
    for (const n of await nodes()) uuids.set(n.name, n.uuid);
    assert.equal(uuids.size, COUNT);
    const names = [...uuids.keys()];
    for (const r of await Promise.all(names.map((n) => provision(n, 'manage')))) assert.equal(r.status, 202);
    await waitAll(names, 'manageable', 60_000);
    for (const r of await Promise.all(names.map((n) => provision(n, 'provide')))) assert.equal(r.status, 202);
    await waitAll(names, 'available', 240_000);
    for (const v of fleet.nodes) {
      assert.equal(v.ramdiskBoots(), 1, `${v.name} booted its ramdisk once for cleaning`);
      assert.equal(v.agentRunning(), false, `${v.name}: the agent was powered off after cleaning`);
      assert.equal(v.powerOn(), false, `${v.name} is off`);
    }
  });

  test(`deploy: max_concurrent_deploy=${LIMIT} refuses the surplus with 503, then the rest all at once from the CLI`, async () => {
    const names = [...uuids.keys()];
    for (const n of names) await setImage(n);
    // The option is mutable in Ironic; here the in-process conductor's config is changed for this test.
    const limits = fx.ctx!.config.conductor;
    limits.max_concurrent_deploy = LIMIT;
    // The admitted nodes take their time to boot (held at POST) so the limit stays reached while we look.
    for (const v of fleet.nodes) v.holdBoot(true);
    let refused: string[] = [];
    try {
      const results = await Promise.all(names.map(async (n) => ({ n, r: await provision(n, 'active') })));
      const admitted = results.filter((x) => x.r.status === 202);
      const no = results.filter((x) => x.r.status === 503);
      assert.equal(admitted.length, LIMIT, 'exactly the limit is admitted');
      assert.equal(no.length, names.length - LIMIT, 'every other request is refused');
      const body = no[0]!.r.body as { error_message: string };
      const msg = JSON.parse(body.error_message) as { faultstring: string };
      assert.equal(msg.faultstring, 'Unable to process request at this time. The concurrent action limit for ' +
        'provisioning has been reached. Please contact your administrator and try again later.');
      refused = no.map((x) => x.n);
      for (const n of refused) assert.equal((await show(n)).provision_state, 'available', `${n} was not touched`);
      // The CLI shows the same error to the operator.
      const cli = await fx.cli(['node', 'deploy', refused[0]!]);
      assert.notEqual(cli.exitCode, 0);
      assert.match(cli.stderr, /concurrent action limit for provisioning has been reached/);
    } finally {
      limits.max_concurrent_deploy = 250;
      for (const v of fleet.nodes) v.holdBoot(false);
    }
    // Limit lifted: the refused nodes go all at once from the CLI, while the admitted ones are on their way.
    const runs = await Promise.all(refused.map((n) => fx.cli(['node', 'deploy', n], { timeoutMs: 180_000 })));
    for (const r of runs) assert.equal(r.exitCode, 0, r.stderr);
    await waitAll(names, 'active', 400_000);
    for (const v of fleet.nodes) {
      assert.equal(await contentDigest(v.disk, IMAGE_MIB * 2 ** 20), imageContent, `${v.name}'s disk holds the image`);
      assert.equal(v.agentRunning(), false, `${v.name}: no agent after the deploy`);
      assert.equal(v.instanceBoots(), 1, `${v.name} booted the instance from disk`);
      assert.equal((await show(v.name)).power_state, 'power on');
    }
  });

  test('fast-track: undeploy cleans, the agent stays up, the deploy uses it with no power cycle', async () => {
    const name = fleet.nodes[0]!.name;
    const v = vnode(name);
    const r = await api('PATCH', `/v1/nodes/${name}`, [{ op: 'add', path: '/driver_info/fast_track', value: 'true' }]);
    assert.equal(r.status, 200);
    assert.equal((await provision(name, 'deleted')).status, 202);
    await waitAll([name], 'available', 120_000);
    let n = await show(name);
    assert.equal(n.provision_state, 'available');
    assert.equal(v.agentRunning(), true, 'the agent stays up after cleaning');
    assert.equal(n.power_state, 'power on');
    const pid = v.agentPid();
    // The agent keeps heartbeating while the node is available (the conductor records it).
    const before = String(n.driver_internal_info.agent_last_heartbeat);
    for (let i = 0; i < 50 && String(n.driver_internal_info.agent_last_heartbeat) <= before; i++) {
      await new Promise((res) => setTimeout(res, 200));
      n = await show(name);
    }
    assert.ok(String(n.driver_internal_info.agent_last_heartbeat) > before, 'heartbeats are recorded while available');
    await setImage(name);
    const log0 = v.powerLog().length;
    const boots0 = v.ramdiskBoots();
    assert.equal((await provision(name, 'active')).status, 202);
    await waitAll([name], 'active', 120_000);
    n = await show(name);
    assert.equal(n.provision_state, 'active', String(n.last_error));
    const during = v.powerLog().slice(log0);
    assert.equal(v.ramdiskBoots(), boots0, 'no ramdisk boot for the deploy');
    // The only power action is the instance's boot at the end (the agent powered itself off before it).
    assert.deepEqual(during, ['On'], `BMC log during the deploy: ${during.join(', ')}`);
    assert.notEqual(pid, undefined);
    assert.equal(await contentDigest(v.disk, IMAGE_MIB * 2 ** 20), imageContent);
  });

  test('fast-track fallback: the agent died, so the deploy boots the ramdisk normally', async () => {
    const name = fleet.nodes[1]!.name;
    const v = vnode(name);
    const r = await api('PATCH', `/v1/nodes/${name}`, [{ op: 'add', path: '/driver_info/fast_track', value: 'true' }]);
    assert.equal(r.status, 200);
    assert.equal((await provision(name, 'deleted')).status, 202);
    await waitAll([name], 'available', 120_000);
    assert.equal(v.agentRunning(), true, 'the agent stays up after cleaning');
    await v.crashAgent();
    // Past fast_track_timeout (8 s) without a heartbeat: the agent counts as gone.
    await new Promise((res) => setTimeout(res, 9000));
    await setImage(name);
    const log0 = v.powerLog().length;
    const boots0 = v.ramdiskBoots();
    assert.equal((await provision(name, 'active')).status, 202);
    await waitAll([name], 'active', 120_000);
    const n = await show(name);
    assert.equal(n.provision_state, 'active', String(n.last_error));
    assert.equal(v.ramdiskBoots(), boots0 + 1, 'the ramdisk booted again');
    const during = v.powerLog().slice(log0);
    assert.deepEqual(during.slice(0, 2), ['ForceOff', 'On'], `BMC log during the deploy: ${during.join(', ')}`);
    assert.equal(await contentDigest(v.disk, IMAGE_MIB * 2 ** 20), imageContent);
  });
});
