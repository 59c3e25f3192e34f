/**
 * The zstd/xz/gzip layer of the image byte path (image/sinks.ts DecompressSink): bytes come out exactly, in order,
 * while the next sink pushes back (the FIFO reads pause), the producer's buffer may be reused right after push()
 * settles (no copy is kept), and a corrupt stream is an InvalidImage naming the tool's failure.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { run } from '../../common/exec.js';
import { DecompressSink, type Sink } from '../../image/sinks.js';
import { InvalidImage } from '../../protocol/agent-api.js';

/** Collects a hash of what reaches it; every few pushes it is "busy" for a moment (backpressure). */
class SlowHashSink implements Sink {
  readonly h = createHash('sha256');
  bytes = 0;
  ended = false;
  private n = 0;
  push(chunk: Buffer): Promise<void> | undefined {
    this.h.update(chunk);
    this.bytes += chunk.length;
    if (++this.n % 4 === 0) return new Promise((r) => setTimeout(r, 2));
    return undefined;
  }
  async end(): Promise<void> {
    this.ended = true;
  }
  abort(): void {}
}

async function compress(kind: 'zstd' | 'xz' | 'gzip', data: Buffer): Promise<Buffer> {
  if (kind === 'gzip') return gzipSync(data);
  const chunks: Buffer[] = [];
  const { Writable } = await import('node:stream');
  const out = new Writable({ write: (c: Buffer, _e, cb) => { chunks.push(c); cb(); } });
  await run(kind, kind === 'xz' ? ['-0', '-c'] : ['-1', '-c'], { input: data, stdoutTo: out, quiet: true });
  return Buffer.concat(chunks);
}

/** Push `packed` in 64 KiB pieces from ONE reused buffer, as the download fast path does. */
async function pushReused(sink: Sink, packed: Buffer): Promise<void> {
  const buf = Buffer.alloc(64 * 1024);
  for (let off = 0; off < packed.length; off += buf.length) {
    const n = packed.copy(buf, 0, off, off + buf.length);
    const p = sink.push(buf.subarray(0, n));
    if (p) await p;
    buf.fill(0xee); // anything still holding the old bytes would now see garbage
  }
  await sink.end();
}

for (const kind of ['zstd', 'xz', 'gzip'] as const) {
  test(`${kind}: decompressed bytes arrive exactly under backpressure, producer buffer reused`, async () => {
    // Half random, half compressible, so the output is both larger than and about the size of the input.
    const data = Buffer.concat([randomBytes(3 * 1024 * 1024), Buffer.alloc(3 * 1024 * 1024, 0x42)]);
    const next = new SlowHashSink();
    await pushReused(await DecompressSink.open(kind, next), await compress(kind, data));
    assert.equal(next.bytes, data.length);
    assert.equal(next.h.digest('hex'), createHash('sha256').update(data).digest('hex'));
    assert.ok(next.ended);
  });
}

for (const kind of ['zstd', 'gzip', 'xz'] as const) {
  test(`${kind}: a corrupt stream is an InvalidImage that says decompression failed`, async () => {
    const packed = await compress(kind, randomBytes(2 * 1024 * 1024));
    packed.fill(0x55, 1000, 5000);
    const next = new SlowHashSink();
    await assert.rejects(pushReused(await DecompressSink.open(kind, next), packed), (e: Error) => {
      assert.ok(e instanceof InvalidImage, String(e));
      assert.match(e.message, new RegExp(`Decompressing the ${kind} image failed`));
      return true;
    });
    assert.equal(next.ended, false);
  });
}

test('gzip: two concatenated members (what `cat a.gz b.gz` makes, valid gzip) decompress to both', async () => {
  const a = randomBytes(1024 * 1024 + 3);
  const b = Buffer.alloc(2 * 1024 * 1024, 0x61);
  const next = new SlowHashSink();
  await pushReused(await DecompressSink.open('gzip', next), Buffer.concat([gzipSync(a), gzipSync(b)]));
  assert.equal(next.bytes, a.length + b.length);
  assert.equal(next.h.digest('hex'), createHash('sha256').update(a).update(b).digest('hex'));
});
