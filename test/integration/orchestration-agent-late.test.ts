/**
 * An agent whose API is unreachable for a few seconds after its first heartbeat (each boot) still gets cleaned
 * and deployed: the conductor retries connection failures ([agent]max_command_attempts 3,
 * command_retry_interval 2 s) instead of failing the step. The agent is a real process on a loop device; a gate
 * in front of its API drops connections until 3 s after the first attempt of each boot.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { have, run } from '../../common/exec.js';
import { freePort, haveBaremetalCli, startTestConductor, type TestConductor } from '../fixtures/conductor.js';
import { startFakeNode, type FakeNode } from '../fixtures/fake-node.js';
import { buildRawDiskImage, fileDigest, readFileFromDevice, serveImages, type ImageServer } from '../fixtures/images.js';
import { startLateGate, type LateGate } from '../fixtures/late-gate.js';
import { createLoopDevices, type LoopSet } from '../fixtures/loop.js';

const MAC = '52:54:00:aa:bb:22';

async function skipReason(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'needs root for loop devices';
  if (!(await haveBaremetalCli())) return 'the baremetal CLI (python3-ironicclient) is not installed';
  for (const p of ['losetup', 'parted', 'mkfs.ext4', 'sgdisk']) if (!(await have(p))) return `${p} missing`;
  return undefined;
}
const reason = await skipReason();

describe('an agent API that comes up late still cleans and deploys', { skip: reason ?? false }, () => {
  let dir: string;
  let loops: LoopSet;
  let conductor: TestConductor;
  let images: ImageServer;
  let node: FakeNode;
  let gate: LateGate;
  let uuid: string;
  let dev: string;
  let sha: string;
  let lastBoots = 0;
  let rearmTimer: NodeJS.Timeout | undefined;

  const cli = async (args: string[]): Promise<string> => {
    const r = await conductor.cli(args, { timeoutMs: 180_000 });
    assert.equal(r.exitCode, 0, `baremetal ${args.join(' ')} failed: ${r.stderr}`);
    return r.stdout;
  };
  const show = async (): Promise<{ provision_state: string; last_error: string | null }> => {
    const { status, body } = await conductor.api('GET', `/v1/nodes/${uuid}`);
    assert.equal(status, 200);
    return body as { provision_state: string; last_error: string | null };
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bmts-late-'));
    loops = await createLoopDevices(1, 96);
    dev = loops.devices[0]!.path;
    const img = await buildRawDiskImage(dir, { sizeMiB: 32, label: 'gpt', file: { name: 'hello.txt', content: 'late agent\n' } });
    sha = await fileDigest(img.path, 'sha256');
    images = await serveImages(dir);
    conductor = await startTestConductor({
      config: {
        heartbeat_timeout: 4,
        deploy_callback_timeout: 60,
        clean_callback_timeout: 60,
        periodic: { sync_power_state_interval: 0, check_provision_state_interval: 1, reservation_cleanup_interval: 0 },
        // The defaults that matter here: 3 attempts, 2 s apart.
        agent: { power_off_poll_attempts: 1, power_off_poll_interval: 0.2, command_wait_interval: 0.5,
          max_command_attempts: 3, command_retry_interval: 2 },
      },
    });
    const listenPort = await freePort();
    gate = await startLateGate(listenPort, 3000);
    const created = JSON.parse(await cli(['node', 'create', '--driver', 'fake-hardware', '--deploy-interface', 'direct',
      '--name', 'late-node', '-f', 'json'])) as { uuid: string };
    uuid = created.uuid;
    await cli(['port', 'create', MAC, '--node', uuid]);
    await cli(['node', 'set', uuid, '--property', `root_device={"name": "${dev}"}`]);
    node = startFakeNode({ conductor, nodeUuid: uuid, mac: MAC, allowlist: loops.allowlist, logDir: dir,
      agentFlags: { 'ipa-listen-port': String(listenPort), 'ipa-advertise-port': String(gate.port) } });
    // Each ramdisk boot starts with the API "not up yet".
    rearmTimer = setInterval(() => {
      if (node.boots() !== lastBoots) { lastBoots = node.boots(); gate.rearm(); }
    }, 50);
  });

  after(async () => {
    if (rearmTimer) clearInterval(rearmTimer);
    await node?.stop();
    await conductor?.close();
    await gate?.close();
    await images?.close();
    await loops?.dispose();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('automated cleaning succeeds although the first calls to the agent found nobody', async () => {
    await run('sgdisk', ['-o', '-n', '1:2048:+8M', dev]);
    await cli(['node', 'manage', uuid, '--wait', '60']);
    await cli(['node', 'provide', uuid, '--wait', '150']);
    const n = await show();
    assert.equal(n.provision_state, 'available', `last_error: ${n.last_error}`);
    assert.ok(gate.dropped() >= 1, 'the conductor met the unreachable agent API');
    assert.ok(gate.forwarded() >= 1, 'and reached it after retrying');
    const blk = await run('blkid', ['-p', dev], { okCodes: [0, 2] });
    assert.equal(blk.exitCode, 2, 'erase_devices_metadata ran on the disk');
  });

  test('the deploy succeeds the same way and the disk holds the image', async () => {
    await cli(['node', 'set', uuid, '--instance-info', `image_source=${images.url('disk-gpt-ext4.raw')}`,
      '--instance-info', 'image_os_hash_algo=sha256', '--instance-info', `image_os_hash_value=${sha}`]);
    await cli(['node', 'deploy', uuid, '--wait', '180']);
    const n = await show();
    assert.equal(n.provision_state, 'active', `last_error: ${n.last_error}`);
    assert.ok(gate.dropped() >= 1, 'the deploy boot met the unreachable agent API too');
    await run('partprobe', [dev]).catch(() => run('blockdev', ['--rereadpt', dev]));
    assert.equal(await readFileFromDevice(`${dev}p1`, 'hello.txt', dir), 'late agent\n');
  });
});
