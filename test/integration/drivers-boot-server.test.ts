import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { request, Agent } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageCacheError, parseChecksum, parseRange, startBootServer, type BootServer } from '../../conductor/boot-server.js';

const dir = await mkdtemp(join(tmpdir(), 'bmts-bootsrv-'));
const root = join(dir, 'root');
await mkdir(join(root, 'sub'), { recursive: true });
const blob = Buffer.alloc(100_000);
for (let i = 0; i < blob.length; i++) blob[i] = (i * 7) % 251;
await writeFile(join(root, 'blob.bin'), blob);
await writeFile(join(root, 'sub', 'x.ipxe'), '#!ipxe\n');
await writeFile(join(dir, 'secret'), 'outside');
await symlink('../secret', join(root, 'escape'));
await symlink('sub/x.ipxe', join(root, 'inside-link'));
const servers: BootServer[] = [];
after(async () => { for (const s of servers) await s.close(); await rm(dir, { recursive: true, force: true }); });

// The sources below are on 127.0.0.1, which the cache only fetches from when told to.
const srv = await startBootServer({ httpRoot: root, httpUrl: 'http://10.0.2.100:8080', allowLoopback: true });
servers.push(srv);
const agent = new Agent({ keepAlive: true, maxSockets: 1 });

function get(path: string, headers: Record<string, string> = {}, method = 'GET'):
  Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer; socketPort: number | undefined }> {
  return new Promise((resolve, reject) => {
    const req = request(`${srv.localUrl}${path}`, { method, headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), socketPort: req.socket?.localPort }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('serves files with Content-Length, keeps the connection alive, HEAD has no body', async () => {
  const a = await get('/blob.bin');
  assert.equal(a.status, 200);
  assert.equal(a.headers['content-length'], String(blob.length));
  assert.ok(a.body.equals(blob));
  const b = await get('/sub/x.ipxe');
  assert.equal(b.body.toString(), '#!ipxe\n');
  assert.match(String(b.headers['content-type']), /text\/plain/);
  assert.equal(a.socketPort, b.socketPort, 'second request reused the keep-alive socket');
  const h = await get('/blob.bin', {}, 'HEAD');
  assert.equal(h.status, 200);
  assert.equal(h.headers['content-length'], String(blob.length));
  assert.equal(h.body.length, 0);
  assert.equal((await get('/blob.bin', {}, 'POST')).status, 405);
});

test('Range requests: 206 with Content-Range, suffix ranges, 416 when unsatisfiable', async () => {
  const r = await get('/blob.bin', { Range: 'bytes=10-19' });
  assert.equal(r.status, 206);
  assert.equal(r.headers['content-range'], `bytes 10-19/${blob.length}`);
  assert.equal(r.headers['content-length'], '10');
  assert.ok(r.body.equals(blob.subarray(10, 20)));
  const tail = await get('/blob.bin', { Range: 'bytes=-5' });
  assert.ok(tail.body.equals(blob.subarray(blob.length - 5)));
  const open = await get('/blob.bin', { Range: 'bytes=99990-' });
  assert.equal(open.body.length, 10);
  const bad = await get('/blob.bin', { Range: 'bytes=200000-' });
  assert.equal(bad.status, 416);
  assert.equal(bad.headers['content-range'], `bytes */${blob.length}`);
  assert.deepEqual(parseRange('bytes=0-0', 5), { start: 0, end: 0 });
  assert.equal(parseRange('bytes=1-2,4-5', 10), undefined);
});

test('no path traversal, no symlink escape, no directory listing', async () => {
  assert.equal((await get('/../secret')).status, 404);
  assert.equal((await get('/%2e%2e/secret')).status, 404);
  assert.equal((await get('/escape')).status, 404);
  assert.equal((await get('/sub')).status, 404);
  assert.equal((await get('/inside-link')).status, 200, 'symlinks inside the root are served');
  assert.equal(srv.urlFor('sub/x.ipxe'), 'http://10.0.2.100:8080/sub/x.ipxe');
  assert.ok(srv.requests.some((r) => r.path === '/escape' && r.status === 404));
});

test('cacheImage: downloads a loopback URL once, verifies checksums, returns the guest-facing URL', async () => {
  const source = await startBootServer({ httpRoot: join(dir, 'src') });
  servers.push(source);
  const img = Buffer.from('x'.repeat(300_000));
  await writeFile(join(dir, 'src', 'disk.img'), img);
  const sha = createHash('sha256').update(img).digest('hex');
  const md5 = createHash('md5').update(img).digest('hex');
  const srcUrl = `${source.localUrl}/disk.img`;
  const [u1, u2] = await Promise.all([srv.cacheImage(srcUrl, { checksum: `sha256:${sha}` }), srv.cacheImage(srcUrl, { checksum: `sha256:${sha}` })]);
  assert.equal(u1, u2);
  assert.match(u1, /^http:\/\/10\.0\.2\.100:8080\/_images\/[0-9a-f]+\/disk\.img$/);
  assert.equal(source.requests.filter((r) => r.path === '/disk.img').length, 1, 'concurrent callers share one download');
  await srv.cacheImage(srcUrl, { checksum: md5 });
  assert.equal(source.requests.filter((r) => r.path === '/disk.img').length, 1, 'cached copy reused (md5 recorded too)');
  const served = await get(new URL(u1).pathname);
  assert.equal(served.status, 200);
  assert.ok(served.body.equals(img));
  const detail = await srv.cacheImageDetailed(srcUrl);
  assert.equal(detail.sha256, sha);
  assert.equal(detail.size, img.length);
  assert.deepEqual(await readFile(detail.path), img);
  await writeFile(join(dir, 'src', 'other.img'), 'abc');
  await assert.rejects(srv.cacheImage(`${source.localUrl}/other.img`, { checksum: 'sha256:' + '0'.repeat(64) }), /checksum mismatch/);
  assert.equal((await get('/_images/')).status, 404);
  await assert.rejects(srv.cacheImage(`${source.localUrl}/missing.img`), /HTTP 404/);
});

test('cacheImage fetches http(s) URLs only', async () => {
  for (const u of ['file:///etc/passwd', 'ftp://127.0.0.1/x.img', 'gopher://127.0.0.1/']) {
    await assert.rejects(srv.cacheImage(u), (e: unknown) => {
      assert.ok(e instanceof ImageCacheError);
      assert.match(e.message, /only http\(s\) URLs/);
      return true;
    });
  }
  assert.deepEqual(parseChecksum('ABCDEF0123456789abcdef0123456789'), { algo: 'md5', hex: 'abcdef0123456789abcdef0123456789' });
  assert.throws(() => parseChecksum('xyz'), ImageCacheError);
});
