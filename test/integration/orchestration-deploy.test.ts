/**
 * Our conductor drives our agent (a real process on this host; its only disk a loop device) through cleaning
 * and deploys, with the real `baremetal` CLI as the operator: fake-hardware power/boot, `direct` deploy.
 */
import assert from 'node:assert/strict';
import { createReadStream } from 'node:fs';
import { once } from 'node:events';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { have, run } from '../../common/exec.js';
import { haveBaremetalCli, startTestConductor, type TestConductor } from '../fixtures/conductor.js';
import { startFakeNode, type FakeNode } from '../fixtures/fake-node.js';
import { buildRawDiskImage, fileDigest, readFileFromDevice, serveImages, toQcow2, type ImageServer } from '../fixtures/images.js';
import { createLoopDevices, type LoopSet } from '../fixtures/loop.js';

const MAC = '52:54:00:aa:bb:01';

interface NodeJson {
  uuid: string;
  provision_state: string;
  power_state: string | null;
  last_error: string | null;
  deploy_step: Record<string, unknown>;
  driver_internal_info: Record<string, unknown>;
}

async function skipReason(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'needs root for loop devices';
  if (!(await haveBaremetalCli())) return 'the baremetal CLI (python3-ironicclient) is not installed';
  for (const p of ['losetup', 'parted', 'mkfs.ext4', 'qemu-img', 'sgdisk']) if (!(await have(p))) return `${p} missing`;
  return undefined;
}

const reason = await skipReason();

describe('conductor + agent: cleaning and deploys on a loop device', { skip: reason ?? false }, () => {
  let dir: string;
  let loops: LoopSet;
  let conductor: TestConductor;
  let images: ImageServer;
  let node: FakeNode;
  let uuid: string;
  let rawSha: string;
  let qcowSha: string;
  let dev: string;

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
    // A restarted conductor drops pooled connections: a failed poll is retried, not fatal.
    const poll = (): Promise<NodeJson | null> => show().catch(() => null); // null: absent / not reachable (checked by the caller)
    let n = await poll();
    while (!n || !pred(n)) {
      if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}; node is ${n?.provision_state}, last_error=${n?.last_error}`);
      await new Promise((r) => setTimeout(r, 200));
      n = await poll();
    }
    return n;
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bmts-orch-'));
    loops = await createLoopDevices(1, 128);
    dev = loops.devices[0]!.path;
    const raw = await buildRawDiskImage(dir, { sizeMiB: 48, label: 'gpt', file: { name: 'hello.txt', content: 'raw deploy\n' } });
    const q = await buildRawDiskImage(dir, { sizeMiB: 48, label: 'msdos', name: 'q.raw', file: { name: 'hello.txt', content: 'qcow2 deploy\n' } });
    await toQcow2(q.path, join(dir, 'q.qcow2'));
    rawSha = await fileDigest(raw.path, 'sha256');
    qcowSha = await fileDigest(join(dir, 'q.qcow2'), 'sha256');
    images = await serveImages(dir);
    conductor = await startTestConductor({
      config: {
        heartbeat_timeout: 4,
        deploy_callback_timeout: 8,
        clean_callback_timeout: 60,
        periodic: { sync_power_state_interval: 0, check_provision_state_interval: 1, reservation_cleanup_interval: 0 },
        agent: { power_off_poll_attempts: 1, power_off_poll_interval: 0.2, command_wait_interval: 0.5,
          command_timeout: 60, max_command_attempts: 3, command_wait_attempts: 100, deploy_logs_collect: 'on_failure' },
      },
    });
    const created = JSON.parse(await cli(['node', 'create', '--driver', 'fake-hardware', '--deploy-interface', 'direct',
      '--name', 'loop-node', '-f', 'json'])) as { uuid: string };
    uuid = created.uuid;
    await cli(['port', 'create', MAC, '--node', uuid]);
    await cli(['node', 'set', uuid, '--property', `root_device={"name": "${dev}"}`]);
    node = startFakeNode({ conductor, nodeUuid: uuid, mac: MAC, allowlist: loops.allowlist, logDir: dir });
  });

  after(async () => {
    await node?.stop();
    await conductor?.close();
    await images?.close();
    await loops?.dispose();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('manage and provide run automated cleaning through the agent', async () => {
    // Something for erase_devices_metadata to wipe.
    await run('sgdisk', ['-o', '-n', '1:2048:+8M', dev]);
    await cli(['node', 'manage', uuid, '--wait', '60']);
    await cli(['node', 'provide', uuid, '--wait', '120']);
    const n = await show();
    assert.equal(n.provision_state, 'available');
    assert.equal(n.last_error, null);
    assert.ok(node.boots() >= 1, 'the agent booted for cleaning');
    const pt = await run('sgdisk', ['-p', dev], { okCodes: [0, 1, 2, 3, 4] });
    assert.doesNotMatch(pt.stdout, /^\s+1\s+2048/m, 'erase_devices_metadata removed the partition table');
    assert.equal(node.agent()?.running() ?? false, false, 'the agent was powered off after cleaning');
  });

  test('deploy of a raw whole-disk image reaches active and the disk holds the image', async () => {
    await cli(['node', 'set', uuid, '--instance-info', `image_source=${images.url('disk-gpt-ext4.raw')}`,
      '--instance-info', 'image_os_hash_algo=sha256', '--instance-info', `image_os_hash_value=${rawSha}`]);
    await cli(['node', 'deploy', uuid, '--wait', '180']);
    const n = await show();
    assert.equal(n.provision_state, 'active');
    assert.equal(n.power_state, 'power on', 'boot_instance powered the node on');
    assert.equal(n.driver_internal_info.agent_secret_token, undefined, 'the agent token is wiped after the deploy');
    await run('partprobe', [dev]).catch(() => run('blockdev', ['--rereadpt', dev]));
    assert.equal(await readFileFromDevice(`${dev}p1`, 'hello.txt', dir), 'raw deploy\n');
  });

  test('undeploy cleans the disk and returns the node to available', async () => {
    await cli(['node', 'undeploy', uuid, '--wait', '180']);
    const n = await show();
    assert.equal(n.provision_state, 'available');
    const blk = await run('blkid', ['-p', dev], { okCodes: [0, 2] });
    assert.equal(blk.exitCode, 2, `no signature left on ${dev}: ${blk.stdout}`);
  });

  test('manual cleaning runs exactly the requested steps and ends in manageable', async () => {
    await cli(['node', 'manage', uuid, '--wait', '60']);
    await run('sgdisk', ['-o', '-n', '1:2048:+8M', dev]);
    await cli(['node', 'clean', uuid, '--clean-steps', '[{"interface": "deploy", "step": "erase_devices_metadata"}]',
      '--wait', '120']);
    const n = await show();
    assert.equal(n.provision_state, 'manageable', `last_error: ${n.last_error}`);
    const blk = await run('blkid', ['-p', dev], { okCodes: [0, 2] });
    assert.equal(blk.exitCode, 2, 'the requested erase_devices_metadata ran');
    // A step the agent does not offer fails cleaning with a message naming it.
    await cli(['node', 'clean', uuid, '--clean-steps', '[{"interface": "deploy", "step": "no_such_step"}]']);
    const failed = await waitFor((x) => x.provision_state === 'clean failed', 'clean failed');
    assert.match(failed.last_error ?? '', /no_such_step/);
    await cli(['node', 'maintenance', 'unset', uuid]);
    await cli(['node', 'manage', uuid, '--wait', '60']);
  });

  test('abort while waiting for the ramdisk ends cleaning in clean failed', async () => {
    node.pause(true);
    try {
      await cli(['node', 'provide', uuid]);
      await waitFor((x) => x.provision_state === 'clean wait', 'clean wait');
      await cli(['node', 'abort', uuid]);
      const n = await waitFor((x) => x.provision_state === 'clean failed', 'clean failed');
      assert.match(n.last_error ?? '', /aborted/i);
      assert.equal(n.power_state, 'power off', 'an aborted cleaning powers the node off');
    } finally {
      node.pause(false);
    }
    await cli(['node', 'manage', uuid, '--wait', '60']);
    await cli(['node', 'provide', uuid, '--wait', '120']);
    assert.equal((await show()).provision_state, 'available');
  });

  test('deploy of a qcow2 image over an auto-TLS agent', async () => {
    node.setAgentFlags({ 'ipa-enable-auto-tls': '1' });
    await cli(['node', 'set', uuid, '--instance-info', `image_source=${images.url('q.qcow2')}`,
      '--instance-info', 'image_os_hash_algo=sha256', '--instance-info', `image_os_hash_value=${qcowSha}`,
      '--instance-info', 'image_disk_format=qcow2']);
    await cli(['node', 'deploy', uuid]);
    const during = await waitFor((x) => typeof x.driver_internal_info.agent_url === 'string', 'the agent to call back');
    assert.match(String(during.driver_internal_info.agent_url), /^https:\/\/127\.0\.0\.1:/);
    assert.match(String(during.driver_internal_info.agent_verify_ca), /BEGIN CERTIFICATE/, 'the agent sent its certificate');
    const n = await waitFor((x) => x.provision_state === 'active' || x.provision_state === 'deploy failed', 'deploy end', 180_000);
    node.setAgentFlags({});
    assert.equal(n.provision_state, 'active', `last_error: ${n.last_error}`);
    await run('partprobe', [dev]).catch(() => run('blockdev', ['--rereadpt', dev]));
    assert.equal(await readFileFromDevice(`${dev}p1`, 'hello.txt', dir), 'qcow2 deploy\n');
    await cli(['node', 'undeploy', uuid, '--wait', '180']);
  });

  test('a wrong checksum ends in deploy failed with a clear last_error and the node powered off', async () => {
    await cli(['node', 'set', uuid, '--instance-info', `image_source=${images.url('disk-gpt-ext4.raw')}`,
      '--instance-info', 'image_os_hash_algo=sha256', '--instance-info', `image_os_hash_value=${'0'.repeat(64)}`,
      '--instance-info', 'image_disk_format=raw']);
    await cli(['node', 'deploy', uuid]);
    // As in Ironic (deploy_utils.set_failed_state) the state is saved before the power-off, so wait for both.
    const n = await waitFor((x) => x.provision_state === 'deploy failed' && x.power_state === 'power off', 'deploy failed and powered off');
    assert.match(n.last_error ?? '', /write_image/);
    assert.match(n.last_error ?? '', /checksum/i);
    const blk = await run('blkid', ['-p', dev], { okCodes: [0, 2] });
    assert.equal(blk.exitCode, 2, 'a failed write leaves no usable partition table');
  });

  test('heartbeats with a wrong token are refused with 400', async () => {
    // The URL the node has on file (if any): a changed callback_url is refused before the token is looked at, as in Ironic.
    const known = (await show()).driver_internal_info.agent_url;
    const { status, body } = await conductor.api('POST', `/v1/heartbeat/${uuid}`,
      { callback_url: typeof known === 'string' ? known : 'http://127.0.0.1:1', agent_token: 'x'.repeat(43), agent_version: '11.1.0' });
    assert.equal(status, 400);
    assert.match(JSON.stringify(body), /token/i);
  });

  test('a conductor restarted mid-write finds the running command and completes the deploy', async () => {
    // The image server sends half the image, then holds the rest until the conductor has restarted: the write
    // cannot have finished (or failed on a short body) before that, so the restart really happens mid-write.
    const file = join(dir, 'disk-gpt-ext4.raw');
    const total = (await stat(file)).size;
    let sent = 0;
    let finished = false;
    let requests = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => { release = r; });
    let halfSent!: () => void;
    const half = new Promise<void>((r) => { halfSent = r; });
    const slow = http.createServer((_req, res) => {
      requests++;
      res.writeHead(200, { 'content-length': String(total) });
      void (async () => {
        for await (const chunk of createReadStream(file, { highWaterMark: 1024 * 1024 })) {
          if (sent >= total / 2) {
            halfSent();
            await gate;
          }
          sent += (chunk as Buffer).length;
          if (!res.write(chunk)) await once(res, 'drain');
        }
        res.end(() => { finished = true; });
      })().catch(() => res.destroy());
    });
    await new Promise<void>((r) => slow.listen(0, '127.0.0.1', r));
    try {
      const port = (slow.address() as AddressInfo).port;
      await cli(['node', 'set', uuid, '--instance-info', `image_source=http://127.0.0.1:${port}/slow.raw`,
        '--instance-info', 'image_os_hash_algo=sha256', '--instance-info', `image_os_hash_value=${rawSha}`]);
      await cli(['node', 'deploy', uuid]);
      await waitFor((x) => x.provision_state === 'wait call-back' && (x.deploy_step as { step?: string }).step === 'write_image',
        'write_image running');
      await half;
      assert.ok(sent < total && !finished, `the write is still running before the restart (${sent} of ${total} bytes sent)`);
      await conductor.restart!();
      assert.ok(sent < total && !finished, `the write was still running when the conductor came back (${sent} of ${total} bytes sent)`);
      release();
      const n = await waitFor((x) => x.provision_state === 'active' || x.provision_state === 'deploy failed', 'deploy end', 180_000);
      assert.equal(n.provision_state, 'active', `last_error: ${n.last_error}`);
      assert.equal(requests, 1, 'one download, not restarted');
      assert.equal(finished, true);
      await run('partprobe', [dev]).catch(() => run('blockdev', ['--rereadpt', dev]));
      assert.equal(await readFileFromDevice(`${dev}p1`, 'hello.txt', dir), 'raw deploy\n');
      await cli(['node', 'undeploy', uuid, '--wait', '180']);
    } finally {
      release();
      slow.closeAllConnections();
      slow.close();
    }
  });

  test('an agent that dies mid-write leads to deploy failed after the callback timeout', async () => {
    // An image server that sends a little and then stalls: write_image is surely running when we kill the agent.
    const stall = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-length': String(64 * 1024 * 1024) });
      res.write(Buffer.alloc(1024 * 1024));
    });
    await new Promise<void>((r) => stall.listen(0, '127.0.0.1', r));
    try {
      const port = (stall.address() as AddressInfo).port;
      await cli(['node', 'set', uuid, '--instance-info', `image_source=http://127.0.0.1:${port}/stall.raw`,
        '--instance-info', 'image_os_hash_algo=sha256', '--instance-info', `image_os_hash_value=${rawSha}`]);
      await cli(['node', 'deploy', uuid]);
      await waitFor((x) => x.provision_state === 'wait call-back' && (x.deploy_step as { step?: string }).step === 'write_image',
        'write_image running');
      node.pause(true);
      await node.crashAgent();
      const n = await waitFor((x) => x.provision_state === 'deploy failed', 'callback timeout', 60_000);
      assert.match(n.last_error ?? '', /[Tt]imeout/);
    } finally {
      stall.closeAllConnections();
      stall.close();
      node.pause(false);
    }
  });
});
