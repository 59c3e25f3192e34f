/**
 * The `iscsi` deploy interface end to end on this host: our conductor, our agent as a real process whose only disk
 * is a loop device (allow-listed), tgtd started by the agent on 127.0.0.1, the image written by the conductor with
 * qemu-img's libiscsi driver. The same image is then deployed with `direct` for a time comparison (printed, not
 * asserted). Failures: a bad image checksum and a target that cannot start end in deploy failed with clear texts.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { have, run } from '../../common/exec.js';
import { fileDigest } from '../../conductor/iscsi/initiator.js';
import { freePort, haveBaremetalCli, startTestConductor, type TestConductor } from '../fixtures/conductor.js';
import { startFakeNode, type FakeNode } from '../fixtures/fake-node.js';
import { buildRawDiskImage, readFileFromDevice, serveImages, type ImageServer } from '../fixtures/images.js';
import { createLoopDevices, type LoopSet } from '../fixtures/loop.js';
import { readAt } from '../fixtures/device-bytes.js';

const MAC = '52:54:00:aa:bb:51';

/** sha256 of bytes [start, end) of a file or device. */
async function regionDigest(path: string, start: number, end: number): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { start, end: end - 1 })) h.update(chunk as Buffer);
  return h.digest('hex');
}


interface NodeJson {
  uuid: string;
  provision_state: string;
  power_state: string | null;
  last_error: string | null;
  driver_internal_info: Record<string, unknown>;
}

async function skipReason(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'needs root for loop devices and tgtd';
  if (!(await haveBaremetalCli())) return 'the baremetal CLI (python3-ironicclient) is not installed';
  for (const p of ['losetup', 'parted', 'mkfs.ext4', 'qemu-img', 'tgtd', 'tgtadm', 'sgdisk']) if (!(await have(p))) return `${p} missing`;
  return undefined;
}

const reason = await skipReason();

describe('iscsi deploy: conductor writes the image over iSCSI to the agent\'s loop device', { skip: reason ?? false }, () => {
  let dir: string;
  let loops: LoopSet;
  let conductor: TestConductor;
  let images: ImageServer;
  let node: FakeNode;
  let uuid: string;
  let dev: string;
  let imageSha: string;
  let imageSize: number;
  let imagePath: string;
  let portalPort: number;
  const timings: Record<string, number> = {};

  const cli = async (args: string[]): Promise<string> => {
    const r = await conductor.cli(args, { timeoutMs: 180_000 });
    assert.equal(r.exitCode, 0, `baremetal ${args.join(' ')} failed: ${r.stderr}`);
    return r.stdout;
  };
  const show = async (): Promise<NodeJson> => {
    const { status, body } = await conductor.api('GET', `/v1/nodes/${uuid}`);
    assert.equal(status, 200);
    return body as NodeJson;
  };
  const waitFor = async (pred: (n: NodeJson) => boolean, what: string, timeoutMs = 120_000): Promise<NodeJson> => {
    const deadline = Date.now() + timeoutMs;
    let n = await show();
    while (!pred(n)) {
      if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}; node is ${n.provision_state}, last_error=${n.last_error}`);
      await new Promise((r) => setTimeout(r, 200));
      n = await show();
    }
    return n;
  };
  /** Zeroes the image's span and the device's last MiB (where a moved GPT backup header lands). */
  const zeroDisk = async (): Promise<void> => {
    await run('dd', ['if=/dev/zero', `of=${dev}`, 'bs=1M', 'count=64', 'conv=fsync', 'status=none']);
    await run('dd', ['if=/dev/zero', `of=${dev}`, 'bs=1M', 'seek=127', 'count=1', 'conv=fsync', 'status=none']);
  };
  const tgtdOnPortal = async (): Promise<string> =>
    (await run('pgrep', ['-f', `tgtd -f -C 0 --iscsi portal=127\\.0\\.0\\.1:${portalPort}$`], { okCodes: [0, 1] })).stdout.trim();
  const agentLogs = async (): Promise<string> => {
    let all = '';
    for (const f of await readdir(dir)) if (f.startsWith('agent-boot-')) all += await readFile(join(dir, f), 'utf8');
    return all;
  };
  /** instance_info goes with an undeploy (as in Ironic): set before each deploy. */
  const setImage = (sha = imageSha): Promise<string> => cli(['node', 'set', uuid,
    '--instance-info', `image_source=${images.url('disk-gpt-ext4.raw')}`,
    '--instance-info', 'image_os_hash_algo=sha256', '--instance-info', `image_os_hash_value=${sha}`]);
  /** Deploy and return seconds from the request to active. */
  const timedDeploy = async (): Promise<number> => {
    await setImage();
    const t0 = Date.now();
    await cli(['node', 'deploy', uuid]);
    const n = await waitFor((x) => x.provision_state === 'active' || x.provision_state === 'deploy failed', 'deploy end', 180_000);
    assert.equal(n.provision_state, 'active', `last_error: ${n.last_error}`);
    return (Date.now() - t0) / 1000;
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bmts-iscsi-deploy-'));
    loops = await createLoopDevices(1, 128);
    dev = loops.devices[0]!.path;
    const raw = await buildRawDiskImage(dir, { sizeMiB: 48, label: 'gpt', file: { name: 'hello.txt', content: 'iscsi deploy\n' } });
    imageSha = await fileDigest(raw.path, 'sha256');
    imageSize = raw.size;
    imagePath = raw.path;
    images = await serveImages(dir);
    portalPort = await freePort();
    conductor = await startTestConductor({
      config: {
        automated_clean: false,
        heartbeat_timeout: 4,
        deploy_callback_timeout: 60,
        deploy: { image_cache_allow_loopback: true },
        periodic: { sync_power_state_interval: 0, check_provision_state_interval: 1, reservation_cleanup_interval: 0 },
        agent: { power_off_poll_attempts: 1, power_off_poll_interval: 0.2, command_wait_interval: 0.5,
          command_timeout: 60, max_command_attempts: 3, command_wait_attempts: 100, deploy_logs_collect: 'never' },
      },
    });
    const created = JSON.parse(await cli(['node', 'create', '--driver', 'fake-hardware', '--deploy-interface', 'iscsi',
      '--name', 'iscsi-node', '--driver-info', `iscsi_portal_port=${portalPort}`, '-f', 'json'])) as { uuid: string };
    uuid = created.uuid;
    await cli(['port', 'create', MAC, '--node', uuid]);
    await cli(['node', 'set', uuid, '--property', `root_device={"name": "${dev}"}`]);
    node = startFakeNode({ conductor, nodeUuid: uuid, mac: MAC, allowlist: loops.allowlist, logDir: dir });
    await cli(['node', 'manage', uuid, '--wait', '60']);
    await cli(['node', 'provide', uuid, '--wait', '60']);
  });

  after(async () => {
    await node?.stop();
    await conductor?.close();
    await images?.close();
    await loops?.dispose();
    if (dir) await rm(dir, { recursive: true, force: true });
    if (Object.keys(timings).length > 0) {
      console.log(`iscsi-vs-direct ${Object.entries(timings).map(([k, v]) => `${k}=${v.toFixed(2)}`).join(' ')}`);
    }
  });

  test('a node with deploy_interface iscsi is deployed: the loop device holds the image, the target is gone', async () => {
    await zeroDisk();
    timings.iscsi_deploy_s = await timedDeploy();
    const n = await show();
    assert.equal(n.power_state, 'power on');
    // Byte for byte past the primary GPT (LBA 34 on) up to the image's own backup table: the agent moved the backup
    // header to the end of the 128 MiB device when the target stopped, which rewrites the primary header's pointer.
    assert.equal(await regionDigest(dev, 34 * 512, imageSize - 33 * 512), await regionDigest(imagePath, 34 * 512, imageSize - 33 * 512),
      'the device holds the image');
    assert.equal((await readAt(dev, 128 * 1024 * 1024 - 512, 8)).toString('latin1'), 'EFI PART', 'the backup GPT header is at the end of the device');
    const v = await run('sgdisk', ['-v', dev], { quiet: true, okCodes: [0, 1, 2, 3, 4] });
    assert.match(v.stdout, /No problems found/, `sgdisk -v: ${v.stdout}`);
    await run('partprobe', [dev]).catch(() => run('blockdev', ['--rereadpt', dev]));
    assert.equal(await readFileFromDevice(`${dev}p1`, 'hello.txt', dir), 'iscsi deploy\n');
    const dii = n.driver_internal_info;
    assert.match(String(dii.iscsi_target_iqn), new RegExp(`^iqn\\.2008-10\\.org\\.openstack:${uuid}\\.[0-9a-f]{8}$`));
    assert.equal(dii.iscsi_chap_username, `bmts-${uuid.slice(0, 8)}`);
    assert.equal('iscsi_chap_password' in dii, false, 'the CHAP secret is wiped (API view)');
    const stored = (await conductor.ctx?.store.getNodeByUuid(uuid))?.driver_internal_info ?? {};
    assert.equal('iscsi_chap_password' in stored, false, 'the CHAP secret is wiped (stored record)');
    assert.equal(await tgtdOnPortal(), '', 'no tgtd serves the portal any more');
    const logs = await agentLogs();
    assert.match(logs, /iSCSI target started/);
    assert.match(logs, /iSCSI target stopped/);
    assert.match(logs, /--password \*\*\*/, 'the tgtadm line is logged with the secret masked');
    assert.doesNotMatch(logs, /--password (?!\*\*\*)/, 'the secret itself is never logged');
  });

  test('the same image deployed with direct, for the time comparison', async () => {
    await cli(['node', 'undeploy', uuid, '--wait', '120']);
    await cli(['node', 'set', uuid, '--deploy-interface', 'direct']);
    await zeroDisk();
    try {
      timings.direct_deploy_s = await timedDeploy();
      // Not byte for byte: the agent moves a GPT's backup header to the end of the (bigger) disk.
      await run('partprobe', [dev]).catch(() => run('blockdev', ['--rereadpt', dev]));
      assert.equal(await readFileFromDevice(`${dev}p1`, 'hello.txt', dir), 'iscsi deploy\n');
    } finally {
      await cli(['node', 'undeploy', uuid, '--wait', '120']);
      await cli(['node', 'set', uuid, '--deploy-interface', 'iscsi']);
    }
  });

  test('a wrong image checksum ends in deploy failed, no target is started', async () => {
    await setImage('0'.repeat(64));
    await cli(['node', 'deploy', uuid]);
    const n = await waitFor((x) => x.provision_state === 'deploy failed', 'deploy failed');
    assert.match(n.last_error ?? '', /deploy\.write_image failed .*failed to verify against checksum: expected sha256 0{64}, got [0-9a-f]{64}/);
    assert.equal('iscsi_chap_password' in (await show()).driver_internal_info, false);
    assert.equal(await tgtdOnPortal(), '');
    await cli(['node', 'undeploy', uuid, '--wait', '120']);
  });

  test('a target that cannot start (portal port taken) ends in deploy failed with that reason', async () => {
    const srv: Server = createServer();
    await new Promise<void>((r) => srv.listen(portalPort, '127.0.0.1', r));
    try {
      await setImage();
      await cli(['node', 'deploy', uuid]);
      const n = await waitFor((x) => x.provision_state === 'deploy failed', 'deploy failed', 120_000);
      assert.match(n.last_error ?? '', /The agent could not start the iSCSI target: .*tgtd did not listen on 127\.0\.0\.1:\d+ in time \(port taken\?\)/);
      assert.equal('iscsi_chap_password' in n.driver_internal_info, false, 'the secret is wiped after a failure too');
    } finally {
      await new Promise((r) => srv.close(r));
    }
    assert.equal(await tgtdOnPortal(), '', 'the failed tgtd was stopped');
  });
});
