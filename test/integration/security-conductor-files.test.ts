/**
 * Issue 13, local files: the conductor reads local files (deploy_kernel, deploy_ramdisk, file:// image_source)
 * only from file_url_allowed_paths, after realpath, and its image cache fetches only http(s) URLs that are not
 * loopback or link-local unless configured. Each test below is an exploit that worked before the fix.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { link, mkdir, mkdtemp, readFile, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageCacheError, startBootServer } from '../../conductor/boot-server.js';
import { IpxeBoot } from '../../conductor/drivers/ipxe.js';
import type { DriverNode } from '../../conductor/drivers/types.js';
import { InvalidParameterValue } from '../../conductor/errors.js';
import { validateInstanceInfo } from '../../conductor/orchestration/image-info.js';
import { startConductor } from '../../conductor/main.js';
import { startTestConductor } from '../fixtures/conductor.js';

const dir = await mkdtemp(join(tmpdir(), 'bmts-sec-files-'));
after(() => rm(dir, { recursive: true, force: true }));
const images = join(dir, 'images');
await mkdir(images, { recursive: true });
await writeFile(join(images, 'deploy.kernel'), 'KERNEL');
await writeFile(join(dir, 'outside.secret'), 'SECRET OUTSIDE THE ALLOWED DIR');
await symlink(join(dir, 'outside.secret'), join(images, 'escape.kernel'));

const c = await startTestConductor({ config: { file_url_allowed_paths: [images] } });
after(() => c.close());

async function newNode(): Promise<string> {
  const r = await c.api('POST', '/v1/nodes', { driver: 'fake-hardware' });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return (r.body as { uuid: string }).uuid;
}

function errorMessage(body: unknown): string {
  const b = body as { error_message?: unknown };
  assert.equal(typeof b.error_message, 'string', `Ironic error body expected, got ${JSON.stringify(body)}`);
  const inner = JSON.parse(b.error_message as string) as { faultstring: string };
  return inner.faultstring;
}

test('PATCH deploy_kernel=file:///<the conductor database> is a 400 (it used to be published by the boot server)', async () => {
  const uuid = await newNode();
  const db = join(c.dataDir, 'conductor.sqlite');
  for (const value of [`file://${db}`, db, '/etc/passwd', 'file:///etc/shadow', `file://${join(images, '..', 'outside.secret')}`]) {
    const r = await c.api('PATCH', `/v1/nodes/${uuid}`, [{ op: 'add', path: '/driver_info/deploy_kernel', value }]);
    assert.equal(r.status, 400, `${value} was accepted`);
    assert.match(errorMessage(r.body), /not in an allowed location|does not exist/);
  }
  const stored = await c.api('GET', `/v1/nodes/${uuid}`);
  assert.equal((stored.body as { driver_info: Record<string, unknown> }).driver_info.deploy_kernel, undefined);
});

test('create with deploy_ramdisk / image_source outside the allowed dirs is a 400; a symlink out of them too', async () => {
  const r1 = await c.api('POST', '/v1/nodes', { driver: 'fake-hardware', driver_info: { deploy_ramdisk: '/etc/hostname' } });
  assert.equal(r1.status, 400);
  const uuid = await newNode();
  const r2 = await c.api('PATCH', `/v1/nodes/${uuid}`, [{ op: 'add', path: '/instance_info/image_source', value: 'file:///etc/passwd' }]);
  assert.equal(r2.status, 400);
  const r3 = await c.api('PATCH', `/v1/nodes/${uuid}`, [{ op: 'add', path: '/driver_info/rescue_kernel', value: join(images, 'escape.kernel') }]);
  assert.equal(r3.status, 400, 'a symlink inside the allowed dir pointing out of it is refused');
  assert.match(errorMessage(r3.body), /not in an allowed location/);
  const ok = await c.api('PATCH', `/v1/nodes/${uuid}`, [{ op: 'add', path: '/driver_info/deploy_kernel', value: `file://${join(images, 'deploy.kernel')}` }]);
  assert.equal(ok.status, 200, 'a file under file_url_allowed_paths is accepted');
});

test('default allow-list is <data_dir>/images', async () => {
  const d = await startTestConductor();
  try {
    await mkdir(join(d.dataDir, 'images'), { recursive: true });
    await writeFile(join(d.dataDir, 'images', 'k'), 'K');
    const r = await d.api('POST', '/v1/nodes', { driver: 'fake-hardware', driver_info: { deploy_kernel: join(d.dataDir, 'images', 'k') } });
    assert.equal(r.status, 201);
    const bad = await d.api('POST', '/v1/nodes', { driver: 'fake-hardware', driver_info: { deploy_kernel: join(d.dataDir, 'conductor.sqlite') } });
    assert.equal(bad.status, 400);
  } finally {
    await d.close();
  }
});

function ipxeNode(info: Record<string, unknown>): DriverNode {
  return { uuid: 'b3a0c4e2-1d6f-4b8e-9a0c-2f1e3d4c5b6a', driver: 'ipmi', driver_info: info, instance_info: {},
    driver_internal_info: {}, properties: {}, ports: [{ address: '52:54:00:12:34:56', pxe_enabled: true }] };
}

test('boot server: a local deploy_kernel outside the allowed dirs is never linked into its tree; a swapped symlink fails clearly', async () => {
  const httpRoot = join(dir, 'http');
  const boot = await startBootServer({ httpRoot });
  after(() => boot.close());
  const ipxe = new IpxeBoot({ httpRoot: boot.httpRoot, httpUrl: boot.httpUrl, allowedFileDirs: [images] });
  const bad = ipxeNode({ deploy_kernel: `file://${join(dir, 'outside.secret')}`, deploy_ramdisk: join(images, 'deploy.kernel') });
  assert.throws(() => ipxe.validate(bad), InvalidParameterValue);
  await assert.rejects(ipxe.prepareRamdisk(bad, { apiUrl: 'http://10.0.2.100:6385', kernelParams: [] }), /not in an allowed location/);
  const leaked = await fetch(`${boot.localUrl}/${bad.uuid}/deploy_kernel`);
  assert.equal(leaked.status, 404);
  // Accepted while it pointed inside; later swapped for a link to the secret: the prepare-time check refuses it.
  const swap = join(images, 'swap.kernel');
  await link(join(images, 'deploy.kernel'), swap);
  const good = ipxeNode({ deploy_kernel: swap, deploy_ramdisk: join(images, 'deploy.kernel') });
  ipxe.validate(good);
  await unlink(swap);
  await symlink(join(dir, 'outside.secret'), swap);
  await assert.rejects(ipxe.prepareRamdisk(good, { apiUrl: 'http://10.0.2.100:6385', kernelParams: [] }), (e: unknown) => {
    assert.ok(e instanceof InvalidParameterValue);
    assert.match(e.message, /deploy_kernel file .*swap\.kernel is not in an allowed location/);
    return true;
  });
  assert.equal((await fetch(`${boot.localUrl}/${good.uuid}/deploy_kernel`)).status, 404);
  // And the file that is allowed is served.
  await unlink(swap);
  await link(join(images, 'deploy.kernel'), swap);
  await ipxe.prepareRamdisk(good, { apiUrl: 'http://10.0.2.100:6385', kernelParams: [] });
  assert.equal(await (await fetch(`${boot.localUrl}/${good.uuid}/deploy_kernel`)).text(), 'KERNEL');
});

test('boot server refuses symlinks and traversal out of its root', async () => {
  const root = join(dir, 'http2');
  await mkdir(root, { recursive: true });
  await symlink(join(dir, 'outside.secret'), join(root, 'leak'));
  const boot = await startBootServer({ httpRoot: root });
  after(() => boot.close());
  for (const p of ['/leak', '/../outside.secret', '/%2e%2e/outside.secret', '/..%2foutside.secret']) {
    const r = await fetch(`${boot.localUrl}${p}`);
    assert.equal(r.status, 404, p);
    assert.doesNotMatch(await r.text(), /SECRET/);
  }
});

test('a boot.http_root that holds the data dir is refused at start-up', async () => {
  const data = join(dir, 'pub', 'data');
  await assert.rejects(startConductor({ host: '127.0.0.1', port: 0, data_dir: data,
    boot: { http_root: join(dir, 'pub'), kernel_append_params: 'nofb', listen_host: '127.0.0.1' } }),
  /must not contain data_dir/);
});

test('image cache: loopback, link-local and non-http sources are refused unless allowed', async () => {
  const src = await startBootServer({ httpRoot: join(dir, 'src') });
  after(() => src.close());
  await writeFile(join(dir, 'src', 'img'), 'IMAGE');
  const cache = await startBootServer({ httpRoot: join(dir, 'cache') });
  after(() => cache.close());
  const refused = [`${src.localUrl}/img`, `http://localhost:${src.port}/img`, `http://[::1]:${src.port}/img`,
    'http://169.254.169.254/latest/meta-data/', `http://0x7f000001:${src.port}/img`, `http://0.0.0.0:${src.port}/img`,
    'file:///etc/passwd', `http://127.0.0.1:${src.port}/img\nshell`];
  for (const u of refused) {
    await assert.rejects(cache.cacheImage(u), (e: unknown) => {
      assert.ok(e instanceof ImageCacheError, String(e));
      return true;
    }, u);
  }
  assert.equal(src.requests.length, 0, 'nothing was fetched');
  const allowed = await startBootServer({ httpRoot: join(dir, 'cache2'), allowLoopback: true });
  after(() => allowed.close());
  const url = await allowed.cacheImage(`${src.localUrl}/img`);
  assert.equal(await (await fetch(`${allowed.localUrl}${new URL(url).pathname}`)).text(), 'IMAGE');
});

test('iPXE deploy_ramdisk on a loopback URL is refused unless image_cache_allow_loopback', () => {
  const ipxe = new IpxeBoot({ httpRoot: join(dir, 'h3'), httpUrl: 'http://10.0.2.100:1', cacheImage: async (u) => u,
    allowedFileDirs: [images] });
  const n = ipxeNode({ deploy_kernel: join(images, 'deploy.kernel'), deploy_ramdisk: 'http://127.0.0.1:9/ramdisk' });
  assert.throws(() => ipxe.validate(n), /loopback or link-local URL/);
});

test('file:// image_source is checked against the allow-list at deploy validation', async () => {
  const ii = { image_source: `file://${join(dir, 'outside.secret')}`, image_os_hash_algo: 'sha256', image_os_hash_value: 'a'.repeat(64) };
  assert.throws(() => validateInstanceInfo(ii, { allowedFileDirs: [images] }), /not in an allowed location/);
  validateInstanceInfo({ ...ii, image_source: `file://${join(images, 'deploy.kernel')}` }, { allowedFileDirs: [images] });
  assert.equal(await readFile(join(images, 'deploy.kernel'), 'utf8'), 'KERNEL');
});
