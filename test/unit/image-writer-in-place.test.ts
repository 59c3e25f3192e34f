/**
 * Reads that land in the writer's own pool buffer (image/aligned-writer.ts receiveBuffer): bytes read there are
 * taken without a copy, bytes from elsewhere are copied, in any mix and across buffer boundaries, and the file
 * holds exactly the stream. Through a decompressor (image/sinks.ts DecompressSink) the tool's output is read
 * straight into the writer.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { run } from '../../common/exec.js';
import { AlignedWriter } from '../../image/aligned-writer.js';
import { DecompressSink, RawSink } from '../../image/sinks.js';

const MiB = 1024 * 1024;

async function withFile(size: number, fn: (path: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'bmts-in-place-'));
  try {
    const path = join(dir, 'disk');
    await writeFile(path, Buffer.alloc(size, 0xaa));
    await fn(path);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('writer: reads into receiveBuffer are taken in place, other chunks copied, the file holds the stream', async () => {
  const data = randomBytes(7 * MiB + 4321);
  await withFile(8 * MiB, async (path) => {
    const w = await AlignedWriter.open(path, { limit: 8 * MiB, bufferBytes: MiB, buffers: 2 });
    let off = 0;
    let seed = 11;
    let inPlace = 0;
    let copied = 0;
    for (let i = 0; off < data.length; i++) {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      const want = 1 + (seed % (300 * 1024));
      const dst = i % 4 === 3 ? null : w.receiveBuffer();
      let chunk: Buffer;
      if (dst) {
        const n = Math.min(want, dst.length, data.length - off);
        data.copy(dst, 0, off, off + n); // what the kernel's read would do
        chunk = dst.subarray(0, n);
        inPlace += n;
      } else {
        chunk = Buffer.from(data.subarray(off, Math.min(data.length, off + want)));
        copied += chunk.length;
      }
      off += chunk.length;
      const p = w.write(chunk);
      if (p) await p;
    }
    await w.finish();
    await w.close();
    assert.ok(inPlace > data.length / 2 && copied > 0, `in place ${inPlace}, copied ${copied}`);
    assert.equal(w.inPlaceBytes, inPlace);
    assert.ok((await readFile(path)).subarray(0, data.length).equals(data), 'file content differs from the stream');
  });
});

test('writer: no receiveBuffer while the current buffer is being written; a full buffer is never offered', async () => {
  await withFile(4 * MiB, async (path) => {
    const w = await AlignedWriter.open(path, { limit: 4 * MiB, bufferBytes: MiB, buffers: 1 });
    const first = w.receiveBuffer();
    assert.equal(first?.length, MiB);
    first!.fill(0x11);
    // The only buffer is full and submitted: nothing to offer until its write completes.
    assert.equal(w.write(first!), undefined);
    assert.equal(w.receiveBuffer(), null);
    const p = w.write(Buffer.alloc(10, 0x22)); // copied once the buffer is free again
    assert.ok(p, 'a write behind a busy buffer must make the producer wait');
    await p;
    assert.equal(w.receiveBuffer()?.length, MiB - 10);
    await w.finish();
    await w.close();
    const got = await readFile(path);
    assert.ok(got.subarray(0, MiB).equals(Buffer.alloc(MiB, 0x11)));
    assert.ok(got.subarray(MiB, MiB + 10).equals(Buffer.alloc(10, 0x22)));
    assert.equal(got[MiB + 10], 0xaa);
  });
});

test('zstd output is read straight into the writer and lands exactly', async () => {
  const data = Buffer.concat([randomBytes(5 * MiB), Buffer.alloc(2 * MiB, 0x42), randomBytes(777)]);
  const chunks: Buffer[] = [];
  const out = new Writable({ write: (c: Buffer, _e, cb) => { chunks.push(c); cb(); } });
  await run('zstd', ['-1', '-c'], { input: data, stdoutTo: out, quiet: true });
  const packed = Buffer.concat(chunks);
  await withFile(8 * MiB, async (path) => {
    const w = await AlignedWriter.open(path, { limit: 8 * MiB, bufferBytes: MiB });
    const sink = await DecompressSink.open('zstd', new RawSink(w));
    for (let off = 0; off < packed.length; off += 64 * 1024) {
      const p = sink.push(Buffer.from(packed.subarray(off, off + 64 * 1024)));
      if (p) await p;
    }
    await sink.end();
    await w.finish();
    await w.close();
    assert.ok(w.inPlaceBytes > data.length / 2, `only ${w.inPlaceBytes} of ${data.length} bytes read in place`);
    assert.ok((await readFile(path)).subarray(0, data.length).equals(data), 'file content differs from the image');
  });
});
