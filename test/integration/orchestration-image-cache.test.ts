/**
 * Two nodes (our agent as a real process, each with its own loop device) deploy one qcow2 image at once with
 * image_download_source=local (one set in instance_info, one in driver_info): the conductor fetches it from the
 * origin once, converts it to raw, and each agent downloads and verifies it from its own URL on the conductor,
 * which answers 404 once the node is active.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { have, run } from '../../common/exec.js';
import type { ConductorImageCache } from '../../conductor/image-cache/node-images.js';
import { startTestConductor, type TestConductor } from '../fixtures/conductor.js';
import { startFakeNode, type FakeNode } from '../fixtures/fake-node.js';
import { buildRawDiskImage, fileDigest, readFileFromDevice, serveImages, toQcow2, type ImageServer } from '../fixtures/images.js';
import { createLoopDevices, type LoopSet } from '../fixtures/loop.js';

interface NodeJson { uuid: string; provision_state: string; last_error: string | null }

async function skipReason(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'needs root for loop devices';
  for (const p of ['losetup', 'parted', 'mkfs.ext4', 'qemu-img', 'sgdisk']) if (!(await have(p))) return `${p} missing`;
  return undefined;
}

const reason = await skipReason();

describe('image_download_source=local: two nodes deploy from the conductor image cache', { skip: reason ?? false }, () => {
  let dir: string;
  let loops: LoopSet;
  let conductor: TestConductor;
  let images: ImageServer;
  const nodes: FakeNode[] = [];
  const uuids: string[] = [];
  const urls = new Map<string, string>();
  let qcowSha: string;

  const api = async (method: string, path: string, body?: unknown): Promise<unknown> => {
    const r = await conductor.api(method, path, body);
    assert.ok(r.status < 300, `${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  };
  const waitAll = async (pred: (n: NodeJson) => boolean, what: string, timeoutMs = 150_000): Promise<NodeJson[]> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const all = await Promise.all(uuids.map((u) => api('GET', `/v1/nodes/${u}`) as Promise<NodeJson>));
      if (all.every(pred)) return all;
      if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}: ${JSON.stringify(all.map((n) => [n.provision_state, n.last_error]))}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  };

  const setImage = (u: string, sha: string): Promise<unknown> => api('PATCH', `/v1/nodes/${u}`, [
    { op: 'add', path: '/instance_info/image_source', value: images.url('q.qcow2') },
    { op: 'add', path: '/instance_info/image_os_hash_algo', value: 'sha256' },
    { op: 'add', path: '/instance_info/image_os_hash_value', value: sha },
    { op: 'add', path: '/instance_info/image_disk_format', value: 'qcow2' },
  ]);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bmts-imgdeploy-'));
    loops = await createLoopDevices(2, 64);
    const q = await buildRawDiskImage(dir, { sizeMiB: 40, label: 'gpt', name: 'q.raw', file: { name: 'hello.txt', content: 'from the cache\n' } });
    await toQcow2(q.path, join(dir, 'q.qcow2'));
    await rm(q.path);
    qcowSha = await fileDigest(join(dir, 'q.qcow2'), 'sha256');
    images = await serveImages(dir);
    conductor = await startTestConductor({
      config: {
        heartbeat_timeout: 4,
        deploy_callback_timeout: 30,
        automated_clean: false,
        force_raw_images: true,
        deploy: { image_cache_allow_loopback: true },
        periodic: { sync_power_state_interval: 0, check_provision_state_interval: 1, reservation_cleanup_interval: 0 },
        agent: { power_off_poll_attempts: 1, power_off_poll_interval: 0.2, command_wait_interval: 0.5,
          command_timeout: 60, max_command_attempts: 3, command_wait_attempts: 100, deploy_logs_collect: 'never' },
      },
    });
    const cache = conductor.ctx?.imageCache as ConductorImageCache;
    // Record each node's URL as the cache hands it out (to check it is dead after the deploy).
    const acquire = cache.acquireForNode.bind(cache);
    cache.acquireForNode = async (node, req) => {
      const img = await acquire(node, req);
      urls.set(node, img.url);
      return img;
    };
    for (let i = 0; i < 2; i++) {
      const mac = `52:54:00:cc:00:0${i + 1}`;
      const where = i === 0 ? 'instance_info' : 'driver_info';
      const created = await api('POST', '/v1/nodes', {
        driver: 'fake-hardware', deploy_interface: 'direct', name: `cache-node-${i}`,
        properties: { root_device: { name: loops.devices[i]!.path } },
        [where]: { image_download_source: 'local' },
      }) as { uuid: string };
      uuids.push(created.uuid);
      await api('POST', '/v1/ports', { address: mac, node_uuid: created.uuid });
      nodes.push(startFakeNode({ conductor, nodeUuid: created.uuid, mac, allowlist: loops.devices[i]!.path, logDir: dir }));
    }
  });

  after(async () => {
    for (const n of nodes) await n.stop();
    await conductor?.close();
    await images?.close();
    await loops?.dispose();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('both nodes go active, the origin served the image once, node URLs are dead afterwards', async () => {
    for (const u of uuids) {
      await setImage(u, qcowSha);
      await api('PUT', `/v1/nodes/${u}/states/provision`, { target: 'manage' });
    }
    await waitAll((n) => n.provision_state === 'manageable', 'manageable');
    for (const u of uuids) await api('PUT', `/v1/nodes/${u}/states/provision`, { target: 'provide' });
    await waitAll((n) => n.provision_state === 'available', 'available');
    await Promise.all(uuids.map((u) => api('PUT', `/v1/nodes/${u}/states/provision`, { target: 'active' })));
    const done = await waitAll((n) => n.provision_state === 'active' || n.provision_state === 'deploy failed', 'deploy end');
    for (const n of done) assert.equal(n.provision_state, 'active', `last_error: ${n.last_error}`);

    assert.equal(images.requests.filter((r) => r.path === '/q.qcow2').length, 1, 'one origin download for two nodes');
    const cache = conductor.ctx?.imageCache as ConductorImageCache;
    const [entry] = cache.master.list();
    assert.equal(entry?.diskFormat, 'raw', 'the cache converted the qcow2');
    assert.ok(cache.served.bytes >= 2 * (entry?.size ?? 0) - 2 * 2 ** 20 && cache.served.bytes > 0,
      `the agents downloaded from the conductor (${cache.served.bytes} bytes served)`);
    for (let i = 0; i < 2; i++) {
      const dev = loops.devices[i]!.path;
      await run('partprobe', [dev]).catch(() => run('blockdev', ['--rereadpt', dev]));
      assert.equal(await readFileFromDevice(`${dev}p1`, 'hello.txt', dir), 'from the cache\n');
      const url = urls.get(uuids[i]!);
      assert.match(url ?? '', /\/agent_images\/[0-9a-f-]{36}\/[A-Za-z0-9_-]{43}\/q\.raw$/);
      assert.equal((await fetch(url!)).status, 404, 'the node URL is dead once the node is active');
    }
  });

  test('a checksum mismatch at the origin fails both nodes with a clear last_error and caches nothing', async () => {
    for (const u of uuids) await api('PUT', `/v1/nodes/${u}/states/provision`, { target: 'deleted' });
    await waitAll((n) => n.provision_state === 'available', 'available after undeploy');
    const cache = conductor.ctx?.imageCache as ConductorImageCache;
    const entriesBefore = cache.master.list().length;
    const before = images.requests.filter((r) => r.path === '/q.qcow2').length;
    const wrong = 'f'.repeat(64);
    // Undeploy cleared instance_info (as Ironic); node 0 had its image_download_source there.
    await api('PATCH', `/v1/nodes/${uuids[0]}`, [{ op: 'add', path: '/instance_info/image_download_source', value: 'local' }]);
    for (const u of uuids) await setImage(u, wrong);
    await Promise.all(uuids.map((u) => api('PUT', `/v1/nodes/${u}/states/provision`, { target: 'active' })));
    const failed = await waitAll((n) => n.provision_state === 'deploy failed' || n.provision_state === 'active', 'deploy end');
    for (const n of failed) {
      assert.equal(n.provision_state, 'deploy failed');
      assert.match(n.last_error ?? '', new RegExp(`write_image.*Image checksum mismatch for http://127\\.0\\.0\\.1:\\d+/q\\.qcow2: expected sha256 ${wrong}`));
    }
    // Nodes reach write_image at their own pace, so each may have its own failed download (nodes waiting on the
    // same download at once share it: test/integration/image-cache.test.ts); a failure is never cached.
    assert.ok(images.requests.filter((r) => r.path === '/q.qcow2').length > before, 'the origin was asked again');
    assert.equal(cache.master.list().length, entriesBefore, 'nothing new in the cache');
  });
});
