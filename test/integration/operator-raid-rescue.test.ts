/**
 * RAID and rescue through the agent, over real HTTP with the `baremetal` CLI: our agent runs as a process on this
 * host (test/fixtures/fake-node.ts) with two loop devices as its disks. The `agent` RAID interface: target RAID
 * config validated against Ironic's schema, manual cleaning raid.create_configuration builds a RAID1 on the loop
 * devices and the result lands in raid_config, delete_configuration empties it; raid steps for a node without
 * the agent RAID interface are refused. The agent heartbeats on the legacy vendor_passthru routes here
 * (ipa-legacy-vendor-passthru), so those carry a whole cleaning too.
 *
 * Where the host kernel has no md driver (as on the CI machine), the agent loads a test hardware manager
 * (test/fixtures/raid-host-plugin) that takes the raid steps over and marks the loop devices instead of
 * assembling an array; the md array itself is covered in a VM by test/integration/hm-raid-vm.test.ts.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { open } from 'node:fs/promises';
import { have, run } from '../../common/exec.js';
import { mdAvailable } from '../../hardware-managers/generic/raid.js';
import { haveBaremetalCli, startTestConductor, type TestConductor } from '../fixtures/conductor.js';
import { startFakeNode, type FakeNode } from '../fixtures/fake-node.js';
import { createLoopDevices, type LoopSet } from '../fixtures/loop.js';

const MAC = '52:54:00:19:05:01';
const HOST_RAID_PLUGIN = fileURLToPath(new URL('../fixtures/raid-host-plugin', import.meta.url));
const REAL_MD = mdAvailable();

async function firstSector(dev: string): Promise<string> {
  const fh = await open(dev, 'r');
  try {
    const b = Buffer.alloc(512);
    await fh.read(b, 0, 512, 0);
    return b.toString('latin1').replace(/\0+$/, '');
  } finally {
    await fh.close();
  }
}
const RAID1 = { logical_disks: [{ size_gb: 'MAX', raid_level: '1', is_root_volume: true }] };

interface NodeJson {
  uuid: string;
  provision_state: string;
  last_error: string | null;
  raid_config: Record<string, unknown>;
  target_raid_config: Record<string, unknown>;
  properties: Record<string, unknown>;
  instance_info: Record<string, unknown>;
}

async function skipReason(): Promise<string | false> {
  if (process.getuid?.() !== 0) return 'needs root for loop devices';
  if (!(await haveBaremetalCli())) return 'the baremetal CLI (python3-ironicclient) is not installed';
  for (const p of ['losetup', 'sgdisk', 'mdadm']) if (!(await have(p))) return `${p} missing`;
  if (REAL_MD && existsSync('/dev/md0')) return '/dev/md0 already exists on this machine; not touching it';
  return false;
}
const skip = await skipReason();

describe('agent RAID and rescue through the API', { skip }, () => {
  let dir: string;
  let loops: LoopSet;
  let fx: TestConductor;
  let node: FakeNode;
  let uuid: string;

  const cli = async (args: string[]): Promise<string> => {
    const r = await fx.cli(args, { timeoutMs: 180_000 });
    assert.equal(r.exitCode, 0, `baremetal ${args.join(' ')} failed: ${r.stderr}`);
    return r.stdout;
  };
  const show = async (id = uuid): Promise<NodeJson> => (await fx.api('GET', `/v1/nodes/${id}`)).body as NodeJson;
  const waitState = (state: string, timeoutMs = 120_000): Promise<NodeJson> => waitFor(uuid, state, timeoutMs);
  const waitFor = async (id: string, state: string, timeoutMs = 120_000): Promise<NodeJson> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const n = await show(id).catch(() => null); // a failed poll is retried
      if (n && n.provision_state === state && !(n as unknown as { reservation: string | null }).reservation) return n;
      if (Date.now() > deadline) assert.fail(`timed out waiting for ${state}; node is ${n?.provision_state}, last_error=${n?.last_error}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bmts-op-raid-'));
    loops = await createLoopDevices(2, 64);
    fx = await startTestConductor({ config: {
      automated_clean: false, heartbeat_timeout: 4, clean_callback_timeout: 60, rescue_callback_timeout: 60,
      default_interfaces: { raid: 'agent' },
      periodic: { sync_power_state_interval: 0, check_provision_state_interval: 1, reservation_cleanup_interval: 0 },
      agent: { power_off_poll_attempts: 1, power_off_poll_interval: 0.2, command_wait_interval: 0.5, command_timeout: 60,
        max_command_attempts: 3, command_wait_attempts: 100, deploy_logs_collect: 'never' },
    } });
    // Set-up through the API (each CLI start costs seconds here); the operations under test use the CLI.
    const created = (await fx.api('POST', '/v1/nodes', { driver: 'fake-hardware', deploy_interface: 'direct',
      name: 'raid-node' })).body as { uuid: string; raid_interface: string };
    uuid = created.uuid;
    assert.equal(created.raid_interface, 'agent');
    assert.equal((await fx.api('POST', '/v1/ports', { address: MAC, node_uuid: uuid })).status, 201);
    node = startFakeNode({ conductor: fx, nodeUuid: uuid, mac: MAC, allowlist: loops.allowlist, logDir: dir,
      agentFlags: { 'ipa-legacy-vendor-passthru': '1', 'ipa-driver-name': 'fake-hardware', 'ipa-rescue-root': join(dir, 'rescue-root'),
        ...(REAL_MD ? {} : { 'ipa-hardware-manager-dir': HOST_RAID_PLUGIN }) } });
    await fx.api('PUT', `/v1/nodes/${uuid}/states/provision`, { target: 'manage' });
    await waitState('manageable', 60_000);
  });

  after(async () => {
    await node?.stop();
    await fx?.close();
    if (REAL_MD && existsSync('/dev/md0')) await run('mdadm', ['--stop', '/dev/md0'], { okCodes: [0, 1] });
    await loops?.dispose();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('logical disk properties and target RAID config validation', async () => {
    const props = await fx.api('GET', '/v1/drivers/fake-hardware/raid/logical_disk_properties');
    assert.equal(props.status, 200);
    assert.ok((props.body as Record<string, string>).raid_level?.includes("'1+0'"));
    const ipmi = await fx.api('GET', '/v1/drivers/redfish/raid/logical_disk_properties');
    assert.equal(ipmi.status, 200, 'redfish: agent RAID (the configured default)');
    const cliProps = await cli(['driver', 'raid', 'property', 'list', 'fake-hardware', '-f', 'json']);
    assert.ok((JSON.parse(cliProps) as { Property: string }[]).some((p) => p.Property === 'size_gb'));

    const bad = await fx.api('PUT', `/v1/nodes/${uuid}/states/raid`, { logical_disks: [{ size_gb: 'MAX', raid_level: '7' }] });
    assert.equal(bad.status, 400);
    assert.match(JSON.stringify(bad.body), /raid_level/);
    const twoRoots = await fx.api('PUT', `/v1/nodes/${uuid}/states/raid`,
      { logical_disks: [{ size_gb: 1, raid_level: '1', is_root_volume: true }, { size_gb: 'MAX', raid_level: '0', is_root_volume: true }] });
    assert.equal(twoRoots.status, 400);
    const extra = await fx.api('PUT', `/v1/nodes/${uuid}/states/raid`, { logical_disks: [{ size_gb: 1, raid_level: '1', colour: 'red' }] });
    assert.equal(extra.status, 400);

    await cli(['node', 'set', uuid, '--target-raid-config', JSON.stringify(RAID1)]);
    assert.deepEqual((await show()).target_raid_config, RAID1);
  });

  test('manual cleaning raid.create_configuration builds RAID1 on the loop devices and records raid_config', async () => {
    await cli(['node', 'clean', uuid, '--clean-steps', JSON.stringify([{ interface: 'raid', step: 'create_configuration' }])]);
    const n = await waitState('manageable');
    assert.equal(n.last_error, null);
    const lds = n.raid_config.logical_disks as Record<string, unknown>[];
    assert.equal(lds?.length, 1);
    assert.equal(lds[0]?.raid_level, '1');
    assert.equal(typeof n.raid_config.last_updated, 'string');
    assert.match(String(n.properties.capabilities), /raid_level:1/);
    if (REAL_MD) {
      const mdstat = readFileSync('/proc/mdstat', 'utf8');
      const loopNames = loops.devices.map((d) => d.path.replace('/dev/', ''));
      assert.ok(loopNames.every((l) => mdstat.includes(l)), `both loop devices are md members:\n${mdstat}`);
    } else {
      const marks = await Promise.all(loops.devices.map((d) => firstSector(d.path)));
      assert.deepEqual(marks.map((m) => m.trim()).sort(), ['BMTS-TEST-RAID level=1 member=1/2', 'BMTS-TEST-RAID level=1 member=2/2']);
    }
    assert.ok(node.boots() >= 1);
  });

  test('raid.delete_configuration empties raid_config and removes the array', async () => {
    assert.equal((await fx.api('PUT', `/v1/nodes/${uuid}/states/provision`,
      { target: 'clean', clean_steps: [{ interface: 'raid', step: 'delete_configuration' }] })).status, 202);
    const n = await waitState('manageable');
    assert.equal(n.last_error, null);
    assert.deepEqual(n.raid_config, {});
    if (REAL_MD) {
      const mdstat = readFileSync('/proc/mdstat', 'utf8');
      assert.ok(loops.devices.every((d) => !mdstat.includes(d.path.replace('/dev/', ''))), mdstat);
    } else {
      for (const d of loops.devices) assert.equal(await firstSector(d.path), '', `${d.path} member marker removed`);
    }
  });

  test('raid steps for a node without the agent RAID interface are refused before anything runs', async () => {
    // API calls here (each CLI start costs seconds); the CLI paths are covered above.
    const other = (await fx.api('POST', '/v1/nodes', { driver: 'fake-hardware', raid_interface: 'no-raid' })).body as { uuid: string };
    await fx.api('PUT', `/v1/nodes/${other.uuid}/states/provision`, { target: 'manage' });
    await waitFor(other.uuid, 'manageable');
    const r = await fx.api('PUT', `/v1/nodes/${other.uuid}/states/provision`,
      { target: 'clean', clean_steps: [{ interface: 'raid', step: 'create_configuration' }] });
    assert.equal(r.status, 400);
    assert.match(JSON.parse((r.body as { error_message: string }).error_message).faultstring, /has no raid interface/);
    assert.equal((await show(other.uuid)).provision_state, 'manageable');
    const noTarget = (await fx.api('POST', '/v1/nodes', { driver: 'fake-hardware' })).body as { uuid: string };
    await fx.api('PUT', `/v1/nodes/${noTarget.uuid}/states/provision`, { target: 'manage' });
    await waitFor(noTarget.uuid, 'manageable');
    const r2 = await fx.api('PUT', `/v1/nodes/${noTarget.uuid}/states/provision`,
      { target: 'clean', clean_steps: [{ interface: 'raid', step: 'create_configuration' }] });
    assert.equal(r2.status, 400);
    assert.match(JSON.parse((r2.body as { error_message: string }).error_message).faultstring, /no target_raid_config/);
  });

  test('rescue with a password: hashed by the conductor, set in the ramdisk root by finalize_rescue; unrescue to active', async () => {
    const hostShadow = readFileSync('/etc/shadow', 'utf8');
    await fx.api('PATCH', `/v1/nodes/${uuid}`, [{ op: 'replace', path: '/deploy_interface', value: 'fake' },
      { op: 'replace', path: '/rescue_interface', value: 'agent' }]);
    for (const [verb, st] of [['provide', 'available'], ['active', 'active']]) {
      assert.equal((await fx.api('PUT', `/v1/nodes/${uuid}/states/provision`, { target: verb })).status, 202);
      await waitState(st as string, 60_000);
    }
    const boots = node.boots();
    await cli(['node', 'rescue', uuid, '--rescue-password', 'S3cret-Rescue']);
    const n = await waitState('rescue');
    assert.equal(n.last_error, null);
    assert.ok(node.boots() > boots, 'the agent ramdisk booted for the rescue');
    assert.equal(n.instance_info.rescue_password, undefined, 'no plain-text password on the node');
    assert.equal(n.instance_info.hashed_rescue_password, undefined, 'the hash leaves the node once the agent has it');

    const shadow = readFileSync(join(dir, 'rescue-root', 'etc', 'shadow'), 'utf8');
    const m = /^rescue:(\$5\$([^$]+)\$[^:]+):/m.exec(shadow);
    assert.ok(m, `a sha256-crypt hash for the rescue user: ${shadow}`);
    const again = await run('openssl', ['passwd', '-5', '-salt', m[2] as string, '-stdin'], { input: 'S3cret-Rescue\n' });
    assert.equal(again.stdout.trim(), m[1], 'the stored hash verifies the rescue password');
    assert.equal(readFileSync(join(dir, 'rescue-root', 'etc/ipa-rescue-config/ipa-rescue-password'), 'utf8'), m[1]);
    assert.equal(readFileSync('/etc/shadow', 'utf8'), hostShadow, 'the host\'s /etc/shadow is untouched');

    await cli(['node', 'unrescue', uuid]);
    const back = await waitState('active');
    assert.equal(back.last_error, null);
    assert.equal(back.instance_info.hashed_rescue_password, undefined);
  });

  test('rescue needs a password; a rescue without the agent interface is refused', async () => {
    const r = await fx.api('PUT', `/v1/nodes/${uuid}/states/provision`, { target: 'rescue' });
    assert.equal(r.status, 400);
    const other = (await fx.api('POST', '/v1/nodes', { driver: 'fake-hardware', rescue_interface: 'no-rescue' })).body as { uuid: string };
    await fx.api('PATCH', `/v1/nodes/${other.uuid}`, [{ op: 'replace', path: '/deploy_interface', value: 'fake' }]);
    for (const [verb, st] of [['manage', 'manageable'], ['provide', 'available'], ['active', 'active']]) {
      await fx.api('PUT', `/v1/nodes/${other.uuid}/states/provision`, { target: verb });
      await waitFor(other.uuid, st as string, 30_000);
    }
    const no = await fx.api('PUT', `/v1/nodes/${other.uuid}/states/provision`, { target: 'rescue', rescue_password: 'x' });
    assert.equal(no.status, 400);
    assert.match(JSON.stringify(no.body), /does not support rescue/);
  });
});
