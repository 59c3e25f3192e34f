/**
 * The image hasher: the worker hasher's digest equals node:crypto's over the same bytes however they arrive —
 * received in place in its ring (receiveBuffer), copied in from elsewhere, mixed, across slot boundaries and with
 * the ring full (backpressure) — and the zero-copy path really is taken for bytes received in place.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { imageHasher, WorkerHasher } from '../../image/hasher.js';

/** Feed `data` as a socket would: reads of pseudo-random sizes, into the ring when `inPlace(i)` says so. */
async function feed(h: WorkerHasher, data: Buffer, inPlace: (i: number) => boolean): Promise<void> {
  let off = 0;
  let seed = 7;
  for (let i = 0; off < data.length; i++) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    const want = 1 + (seed % (700 * 1024));
    let chunk: Buffer;
    if (inPlace(i)) {
      const dst = h.receiveBuffer();
      const n = Math.min(want, dst.length, data.length - off);
      data.copy(dst, 0, off, off + n); // what the kernel's read would do
      chunk = dst.subarray(0, n);
    } else {
      chunk = Buffer.from(data.subarray(off, Math.min(data.length, off + want)));
    }
    off += chunk.length;
    const p = h.update(chunk);
    if (p) await p;
  }
}

for (const [name, inPlace] of [
  ['all in place', () => true],
  ['all copied', () => false],
  ['mixed', (i: number) => i % 3 !== 1],
] as const) {
  test(`worker hasher digest matches node:crypto (${name})`, async () => {
    const data = randomBytes(9 * 1024 * 1024 + 12345);
    const h = new WorkerHasher('sha512', 1024 * 1024, 3);
    await feed(h, data, inPlace);
    const zc = h.zeroCopyBytes;
    assert.equal(await h.digest(), createHash('sha512').update(data).digest('hex'));
    if (name === 'all copied') assert.equal(zc, 0);
    else assert.ok(zc > data.length / 2, `zero-copy bytes ${zc}`);
  });
}

test('imageHasher auto: sha256 in-thread, sha512 and md5 in a worker; both digest the same bytes', async () => {
  const data = randomBytes(3 * 1024 * 1024);
  for (const algo of ['sha256', 'sha512', 'md5']) {
    const h = imageHasher(algo, 'auto');
    assert.equal(h.receiveBuffer() === null, algo === 'sha256', algo);
    const p = h.update(data);
    if (p) await p;
    assert.equal(await h.digest(), createHash(algo).update(data).digest('hex'), algo);
  }
});

test('imageHasher auto: sha256 moves to a worker when the first bytes show a compressed image; forced modes win', async () => {
  const heads: Record<string, Buffer> = {
    zstd: Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x00]),
    xz: Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]),
    gzip: Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00]),
    raw: Buffer.alloc(512),
    qcow2: Buffer.concat([Buffer.from('QFI\xfb', 'latin1'), Buffer.alloc(60)]),
  };
  const data = randomBytes(2 * 1024 * 1024 + 7);
  for (const [fmt, head] of Object.entries(heads)) {
    const compressed = fmt === 'zstd' || fmt === 'xz' || fmt === 'gzip';
    const h = imageHasher('sha256', 'auto', head);
    // A worker hasher offers its ring for socket reads; the in-thread one has no preference.
    assert.equal(h.receiveBuffer() !== null, compressed, fmt);
    const p = h.update(data);
    if (p) await p;
    assert.equal(await h.digest(), createHash('sha256').update(data).digest('hex'), fmt);
  }
  const forcedOff = imageHasher('sha256', false, heads.zstd);
  assert.equal(forcedOff.receiveBuffer(), null);
  forcedOff.close();
  const forcedOn = imageHasher('sha256', true, heads.raw);
  assert.notEqual(forcedOn.receiveBuffer(), null);
  forcedOn.close();
});
