/**
 * The conductor's image cache (conductor/image-cache/) against a real HTTP origin on loopback: single-flight,
 * checksum mismatch, size cap and eviction, per-node URLs that stop when the node leaves deploy, Range,
 * qcow2 -> raw, and re-indexing after a restart. The node records come from a small in-memory stand-in for the
 * store: the cache only asks it for a node's provision_state.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { have } from '../../common/exec.js';
import { startBootServer } from '../../conductor/boot-server.js';
import { ConductorImageCache, type ImageCacheSettings } from '../../conductor/image-cache/node-images.js';
import { MasterImageCache } from '../../conductor/image-cache/master.js';
import type { NodeRecord, Store } from '../../conductor/store/types.js';
import { serveImages, toQcow2, type ImageServer } from '../fixtures/images.js';

const MiB = 2 ** 20;
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const uuidN = (n: number): string => `00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`;

let dir: string;
let origin: ImageServer;
const blobs = new Map<string, Buffer>();

/** Provision states by node UUID: all the cache reads from the store. */
function fakeStore(states: Map<string, string>): Store {
  return {
    getNodeByUuid: async (uuid: string) => {
      const s = states.get(uuid);
      return s === undefined ? undefined : ({ uuid, provision_state: s } as unknown as NodeRecord);
    },
  } as unknown as Store;
}

function settings(root: string, over: Partial<ImageCacheSettings> = {}): ImageCacheSettings {
  return { root, sizeMib: 64, ttlMinutes: 60, allowLoopback: true, downloadTimeoutS: 30, sweepIntervalS: 0,
    listenHost: '127.0.0.1', listenPort: 0, httpUrl: undefined, ...over };
}

const originGets = (name: string): number => origin.requests.filter((r) => r.path === `/${name}`).length;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bmts-imgcache-'));
  await writeFile(join(dir, 'pad'), '');
  for (const [name, size] of [['a.img', 3 * MiB], ['b.img', 3 * MiB], ['c.img', 3 * MiB], ['big.img', 5 * MiB],
    ['bad.img', 1 * MiB], ['range.img', 1 * MiB + 123]] as const) {
    const b = randomBytes(size);
    blobs.set(name, b);
    await writeFile(join(dir, name), b);
  }
  origin = await serveImages(dir);
});

after(async () => {
  await origin?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('N concurrent requests for one image fetch it from the origin once; each node gets its own URL', async () => {
  const root = join(dir, 'c1');
  const states = new Map<string, string>();
  const cache = await ConductorImageCache.start(settings(root), fakeStore(states), undefined);
  try {
    const img = blobs.get('a.img')!;
    const req = { url: origin.url('a.img'), expected: { algo: 'sha256' as const, hex: sha256(img) }, forceRaw: true };
    const nodes = Array.from({ length: 12 }, (_, i) => uuidN(i + 1));
    for (const n of nodes) states.set(n, 'wait call-back');
    const got = await Promise.all(nodes.map((n) => cache.acquireForNode(n, req)));
    assert.equal(originGets('a.img'), 1, 'one origin download for 12 concurrent nodes');
    assert.equal(new Set(got.map((g) => g.url)).size, nodes.length, 'every node has its own URL');
    assert.deepEqual(got[0]!.served, { algo: 'sha256', hex: sha256(img) });
    const body = Buffer.from(await (await fetch(got[5]!.url)).arrayBuffer());
    assert.ok(body.equals(img), 'a node URL serves the image bytes');
    // Later requests are cache hits too.
    states.set(uuidN(99), 'deploying');
    await cache.acquireForNode(uuidN(99), req);
    assert.equal(originGets('a.img'), 1);
    assert.equal(cache.master.list().length, 1);
  } finally {
    await cache.close();
  }
});

test('a checksum mismatch fails every waiting node with a clear error and caches nothing', async () => {
  const root = join(dir, 'c2');
  const states = new Map<string, string>();
  const cache = await ConductorImageCache.start(settings(root), fakeStore(states), undefined);
  try {
    const wrong = '0'.repeat(64);
    const req = { url: origin.url('bad.img'), expected: { algo: 'sha256' as const, hex: wrong }, forceRaw: false };
    const nodes = [uuidN(11), uuidN(12), uuidN(13)];
    for (const n of nodes) states.set(n, 'wait call-back');
    const results = await Promise.allSettled(nodes.map((n) => cache.acquireForNode(n, req)));
    assert.equal(originGets('bad.img'), 1, 'the waiting nodes shared the one download');
    for (const r of results) {
      assert.equal(r.status, 'rejected');
      assert.match(String((r as PromiseRejectedResult).reason), new RegExp(`checksum mismatch.*bad\\.img.*expected sha256 ${wrong}`, 'i'));
    }
    assert.equal(cache.master.list().length, 0);
    assert.deepEqual(await readdir(join(root, 'master')), [], 'no entry on disk');
    assert.deepEqual(await readdir(join(root, 'tmp')), [], 'no partial file left');
    assert.deepEqual(await readdir(join(root, 'nodes')), [], 'no node links');
  } finally {
    await cache.close();
  }
});

test('the cache stays within its cap: unused images are evicted LRU, images in use never', async () => {
  const root = join(dir, 'c3');
  const states = new Map<string, string>();
  const cache = await ConductorImageCache.start(settings(root, { sizeMib: 7 }), fakeStore(states), undefined);
  const req = (name: string) => ({ url: origin.url(name), expected: { algo: 'sha256' as const, hex: sha256(blobs.get(name)!) }, forceRaw: false });
  try {
    const [n1, n2, n3] = [uuidN(21), uuidN(22), uuidN(23)];
    for (const n of [n1, n2, n3]) states.set(n, 'wait call-back');
    await cache.acquireForNode(n1, req('a.img'));
    await cache.acquireForNode(n2, req('b.img'));
    assert.equal(cache.master.totalBytes(), 6 * MiB);
    // a and b are in use (linked to deploying nodes): c does not fit and nothing may be evicted.
    await assert.rejects(cache.acquireForNode(n3, req('c.img')), /image cache full/);
    assert.equal(cache.master.list().length, 2);
    assert.ok(cache.master.totalBytes() <= 7 * MiB);
    // n1 finished deploying: its link is swept before eviction, so a is evicted for c.
    states.set(n1, 'active');
    await cache.acquireForNode(n3, req('c.img'));
    assert.deepEqual(cache.master.list().map((e) => e.url).sort(), [origin.url('b.img'), origin.url('c.img')]);
    assert.ok(cache.master.totalBytes() <= 7 * MiB);
    // b and c in use: 5 MiB more cannot fit, and nothing in use went for it.
    states.set(n1, 'wait call-back');
    await assert.rejects(cache.acquireForNode(n1, req('big.img')), /image cache full/);
    assert.equal(cache.master.list().length, 2);
    assert.ok(cache.master.totalBytes() <= 7 * MiB);
  } finally {
    await cache.close();
  }
});

test('a node URL answers 404 once the node left deploy or was deleted, and for a wrong token', async () => {
  const root = join(dir, 'c4');
  const states = new Map<string, string>();
  const cache = await ConductorImageCache.start(settings(root), fakeStore(states), undefined);
  try {
    const img = blobs.get('a.img')!;
    const req = { url: origin.url('a.img'), expected: { algo: 'sha256' as const, hex: sha256(img) }, forceRaw: false };
    const [n1, n2] = [uuidN(31), uuidN(32)];
    states.set(n1, 'wait call-back');
    states.set(n2, 'deploying');
    const u1 = (await cache.acquireForNode(n1, req)).url;
    const u2 = (await cache.acquireForNode(n2, req)).url;
    assert.equal((await fetch(u1, { method: 'HEAD' })).status, 200);
    const forged = u1.replace(/\/agent_images\/([^/]+)\/([^/]+)\//, (_m, n: string, t: string) => `/agent_images/${n}/${t.slice(0, -1)}${t.endsWith('A') ? 'B' : 'A'}/`);
    assert.equal((await fetch(forged)).status, 404, 'a guessed token is not found');
    assert.equal((await fetch(u1.replace(n1, n2))).status, 404, "one node's token does not open another's");
    states.set(n1, 'active');
    assert.equal((await fetch(u1)).status, 404, 'deploy finished: 404');
    states.set(n2, 'deploy failed');
    assert.equal((await fetch(u2)).status, 404, 'deploy failed: 404');
    states.set(n2, 'deploying');
    assert.equal((await fetch(u2)).status, 404, 'the link is gone for good, not only hidden');
    // A redeploy gets a new URL; the old one stays dead.
    const u3 = (await cache.acquireForNode(n2, req)).url;
    assert.notEqual(u3, u2);
    states.delete(n2);
    assert.equal((await fetch(u3)).status, 404, 'node deleted: 404');
    const entry = cache.master.list()[0]!;
    assert.equal((await stat(entry.path)).nlink, 1, 'no node holds the image any more');
  } finally {
    await cache.close();
  }
});

test('node URLs honour Range requests', async () => {
  const root = join(dir, 'c5');
  const states = new Map<string, string>([[uuidN(41), 'wait call-back']]);
  const cache = await ConductorImageCache.start(settings(root), fakeStore(states), undefined);
  try {
    const img = blobs.get('range.img')!;
    const { url } = await cache.acquireForNode(uuidN(41), { url: origin.url('range.img'),
      expected: { algo: 'sha256', hex: sha256(img) }, forceRaw: false });
    const mid = await fetch(url, { headers: { Range: 'bytes=1000-1999' } });
    assert.equal(mid.status, 206);
    assert.equal(mid.headers.get('content-range'), `bytes 1000-1999/${img.length}`);
    assert.ok(Buffer.from(await mid.arrayBuffer()).equals(img.subarray(1000, 2000)));
    const tail = await fetch(url, { headers: { Range: `bytes=${img.length - 10}-` } });
    assert.equal(tail.status, 206);
    assert.ok(Buffer.from(await tail.arrayBuffer()).equals(img.subarray(img.length - 10)));
    const suffix = await fetch(url, { headers: { Range: 'bytes=-5' } });
    assert.ok(Buffer.from(await suffix.arrayBuffer()).equals(img.subarray(img.length - 5)));
    const beyond = await fetch(url, { headers: { Range: `bytes=${img.length}-` } });
    assert.equal(beyond.status, 416);
    assert.equal(beyond.headers.get('content-range'), `bytes */${img.length}`);
    await beyond.arrayBuffer();
  } finally {
    await cache.close();
  }
});

test('qcow2 is converted to raw under force_raw_images, with the checksum of the raw bytes', { skip: !(await have('qemu-img')) && 'qemu-img missing' }, async () => {
  const root = join(dir, 'c6');
  const states = new Map<string, string>([[uuidN(51), 'wait call-back'], [uuidN(52), 'wait call-back']]);
  const raw = Buffer.alloc(4 * MiB);
  randomBytes(64 * 1024).copy(raw, MiB);
  await writeFile(join(dir, 'src.raw'), raw);
  await toQcow2(join(dir, 'src.raw'), join(dir, 'img.qcow2'));
  const qcow = await readFile(join(dir, 'img.qcow2'));
  const cache = await ConductorImageCache.start(settings(root), fakeStore(states), undefined);
  try {
    const expected = { algo: 'sha256' as const, hex: sha256(qcow) };
    const conv = await cache.acquireForNode(uuidN(51), { url: origin.url('img.qcow2'), expected, forceRaw: true });
    assert.equal(conv.diskFormat, 'raw');
    assert.deepEqual(conv.served, { algo: 'sha256', hex: sha256(raw) }, 'the served checksum is that of the raw image');
    const body = Buffer.from(await (await fetch(conv.url)).arrayBuffer());
    assert.ok(body.equals(raw), 'the node gets the raw bytes');
    const kept = await cache.acquireForNode(uuidN(52), { url: origin.url('img.qcow2'), expected, forceRaw: false });
    assert.equal(kept.diskFormat, null, 'without force_raw_images the qcow2 is served as is');
    assert.deepEqual(kept.served, expected);
    // md5 promised: the converted image is described by sha256, never md5.
    const md5 = createHash('md5').update(qcow).digest('hex');
    states.set(uuidN(53), 'deploying');
    const m = await cache.acquireForNode(uuidN(53), { url: origin.url('img.qcow2'), expected: { algo: 'md5', hex: md5 }, forceRaw: true });
    assert.deepEqual(m.served, { algo: 'sha256', hex: sha256(raw) });
  } finally {
    await cache.close();
  }
});

test('a qcow2 with a backing file is refused and not cached', { skip: !(await have('qemu-img')) && 'qemu-img missing' }, async () => {
  const root = join(dir, 'c7');
  const states = new Map<string, string>([[uuidN(61), 'wait call-back']]);
  await toQcow2(join(dir, 'pad'), join(dir, 'backed.qcow2'), ['-o', `backing_file=${join(dir, 'a.img')},backing_fmt=raw`]).catch(async () => {
    const { run } = await import('../../common/exec.js');
    await run('qemu-img', ['create', '-f', 'qcow2', '-F', 'raw', '-b', join(dir, 'a.img'), join(dir, 'backed.qcow2')]);
  });
  const cache = await ConductorImageCache.start(settings(root), fakeStore(states), undefined);
  try {
    const q = await readFile(join(dir, 'backed.qcow2'));
    await assert.rejects(cache.acquireForNode(uuidN(61), { url: origin.url('backed.qcow2'),
      expected: { algo: 'sha256', hex: sha256(q) }, forceRaw: true }), /backing file/);
    assert.equal(cache.master.list().length, 0);
  } finally {
    await cache.close();
  }
});

test('after a restart the entries are re-indexed with their checksums; partial files are dropped', async () => {
  const root = join(dir, 'c8');
  const states = new Map<string, string>([[uuidN(71), 'wait call-back']]);
  const img = blobs.get('b.img')!;
  const req = { url: origin.url('b.img'), expected: { algo: 'sha256' as const, hex: sha256(img) }, forceRaw: false };
  const first = await ConductorImageCache.start(settings(root), fakeStore(states), undefined);
  await first.acquireForNode(uuidN(71), req);
  await first.close();
  const before = originGets('b.img');
  // Leftovers of a crash: a partial download and data without its record.
  await writeFile(join(root, 'tmp', 'x.part'), 'partial');
  await writeFile(join(root, 'master', 'f'.repeat(32)), 'orphan');
  const second = await ConductorImageCache.start(settings(root), fakeStore(states), undefined);
  try {
    const entries = second.master.list();
    assert.equal(entries.length, 1);
    assert.deepEqual(entries[0]!.served, req.expected);
    assert.equal(entries[0]!.key, MasterImageCache.keyOf(req));
    assert.deepEqual(await readdir(join(root, 'tmp')), []);
    assert.deepEqual((await readdir(join(root, 'master'))).sort(), [entries[0]!.key, `${entries[0]!.key}.json`].sort());
    states.set(uuidN(72), 'deploying');
    const again = await second.acquireForNode(uuidN(72), req);
    assert.equal(originGets('b.img'), before, 'served from the re-indexed entry, no new download');
    assert.ok(Buffer.from(await (await fetch(again.url)).arrayBuffer()).equals(img));
  } finally {
    await second.close();
  }
});

test('a download cut short by the origin fails and leaves no entry', async () => {
  const root = join(dir, 'c9');
  const states = new Map<string, string>([[uuidN(81), 'wait call-back']]);
  const cache = await ConductorImageCache.start(settings(root), fakeStore(states), undefined);
  try {
    const img = blobs.get('a.img')!;
    // /short/ claims twice the length and closes early.
    await assert.rejects(cache.acquireForNode(uuidN(81), { url: origin.url('short/a.img'),
      expected: { algo: 'sha256', hex: sha256(img) }, forceRaw: false }), /download of .* failed|checksum mismatch/);
    assert.equal(cache.master.list().length, 0);
    assert.deepEqual(await readdir(join(root, 'master')), []);
    assert.deepEqual(await readdir(join(root, 'tmp')), []);
  } finally {
    await cache.close();
  }
});

test('TTL clean-up removes unused images older than the TTL and keeps images in use', async () => {
  const root = join(dir, 'c10');
  let now = Date.now();
  const master = await MasterImageCache.open({ root, sizeBytes: 64 * MiB, ttlMs: 60_000, allowLoopback: true,
    downloadTimeoutS: 30, now: () => now });
  const req = (name: string) => ({ url: origin.url(name), expected: { algo: 'sha256' as const, hex: sha256(blobs.get(name)!) }, forceRaw: false });
  const held = join(root, 'held');
  await master.linkInto(req('a.img'), held);
  await master.linkInto(req('b.img'), join(root, 'dropped'));
  await rm(join(root, 'dropped'));
  now += 30_000;
  await master.cleanUp();
  assert.equal(master.list().length, 2, 'nothing is older than the TTL yet');
  now += 60_000;
  await master.cleanUp();
  assert.deepEqual(master.list().map((e) => e.url), [origin.url('a.img')], 'the unused expired image went, the linked one stayed');
  await rm(held);
  await master.cleanUp();
  assert.equal(master.list().length, 0);
  assert.deepEqual(await readdir(join(root, 'master')), []);
});

test('with a boot server, node URLs are served under its guest-facing http_url', async () => {
  const boot = await startBootServer({ httpRoot: join(dir, 'httpboot'), httpUrl: 'http://10.0.2.100:8080' });
  const states = new Map<string, string>([[uuidN(91), 'wait call-back']]);
  const cache = await ConductorImageCache.start(settings(join(dir, 'c11')), fakeStore(states), boot);
  try {
    const img = blobs.get('range.img')!;
    const { url } = await cache.acquireForNode(uuidN(91), { url: origin.url('range.img'),
      expected: { algo: 'sha256', hex: sha256(img) }, forceRaw: false });
    assert.ok(url.startsWith('http://10.0.2.100:8080/agent_images/'), url);
    const local = url.replace('http://10.0.2.100:8080', boot.localUrl);
    const part = await fetch(local, { headers: { Range: 'bytes=0-99' } });
    assert.equal(part.status, 206);
    assert.ok(Buffer.from(await part.arrayBuffer()).equals(img.subarray(0, 100)));
    assert.ok(boot.requests.some((r) => r.path.startsWith('/agent_images/')), 'the boot server logged the request');
    states.set(uuidN(91), 'active');
    assert.equal((await fetch(local)).status, 404);
    assert.equal((await fetch(`${boot.localUrl}/agent_images/..%2fmaster`)).status, 404);
  } finally {
    await cache.close();
    await boot.close();
  }
});
