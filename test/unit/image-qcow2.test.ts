/**
 * The streaming qcow2 reader against qemu-img's own images, written to a plain file (no devices): standard
 * layout, compressed clusters, tables after data (held in memory or re-fetched by "Range"), truncation, refusals.
 */
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { have, run } from '../../common/exec.js';
import { AlignedWriter } from '../../image/aligned-writer.js';
import { parseQcowHeader, QcowSink } from '../../image/qcow2.js';
import { detectFormat } from '../../image/format.js';

const MiB = 1024 * 1024;
const skip = (await have('qemu-img')) ? false : 'needs qemu-img';
let dir: string;
let raw: string;

before(async () => {
  if (skip) return;
  dir = await fsp.mkdtemp(join(tmpdir(), 'bmts-qcow2-'));
  raw = join(dir, 'src.raw');
  // 12 MiB with data, zero runs and a repeated pattern (compressible), ending unaligned to clusters' use.
  const buf = Buffer.alloc(12 * MiB);
  for (let i = 0; i < 3 * MiB; i++) buf[i] = (i * 7919) & 0xff;
  buf.fill(0x42, 5 * MiB, 6 * MiB);
  for (let i = 9 * MiB; i < 12 * MiB - 4096; i += 4096) buf.writeUInt32LE(i, i);
  await fsp.writeFile(raw, buf);
});

after(async () => {
  if (skip) return;
  await fsp.rm(dir, { recursive: true, force: true });
});

async function streamQcow(
  qcow: string,
  opts: { chunk?: number; pendingLimitBytes?: number; refetch?: boolean; truncateTo?: number } = {},
): Promise<{ out: string; sink: QcowSink }> {
  let data = await fsp.readFile(qcow);
  if (opts.truncateTo !== undefined) data = data.subarray(0, opts.truncateTo);
  const header = parseQcowHeader(data.subarray(0, 65536));
  const out = join(dir, `out-${Math.random().toString(36).slice(2)}.raw`);
  await fsp.writeFile(out, '');
  await fsp.truncate(out, header.virtualSize);
  const writer = await AlignedWriter.open(out, { limit: header.virtualSize, bufferBytes: MiB });
  const sink = new QcowSink(writer, header, {
    pendingLimitBytes: opts.pendingLimitBytes ?? 64 * MiB,
    ...(opts.refetch ? { refetch: async (s: number, e: number) => Buffer.from(data.subarray(s, e)) } : {}),
  });
  try {
    const step = opts.chunk ?? 100_003;
    for (let off = 0; off < data.length; off += step) {
      const p = sink.push(Buffer.from(data.subarray(off, off + step)));
      if (p) await p;
    }
    await sink.end();
    await sink.completeDeferred();
    await writer.finish();
  } finally {
    await writer.close();
  }
  return { out, sink };
}

async function sameAsRaw(out: string, virtualSize: number): Promise<void> {
  const a = await fsp.readFile(raw);
  const b = await fsp.readFile(out);
  assert.equal(b.length, virtualSize);
  assert.ok(a.equals(b.subarray(0, a.length)), 'guest content equals the source');
  assert.ok(b.subarray(a.length).every((x) => x === 0), 'grown tail reads as zeros');
}

test('detects qcow2 by magic and parses the header', { skip }, async () => {
  const q = join(dir, 'plain.qcow2');
  await run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, q]);
  const head = (await fsp.readFile(q)).subarray(0, 4096);
  assert.equal(detectFormat(head), 'qcow2');
  const h = parseQcowHeader(head);
  assert.equal(h.virtualSize, 12 * MiB);
  assert.equal(h.clusterSize, 65536);
});

test('standard qemu-img layout streams in one pass, holes not written', { skip }, async () => {
  const q = join(dir, 'plain.qcow2');
  const { out, sink } = await streamQcow(q);
  await sameAsRaw(out, 12 * MiB);
  assert.ok(sink.dataBytes < 12 * MiB, 'zero clusters were not written');
  assert.ok(sink.holes().length > 0);
});

test('compressed clusters (qemu-img convert -c)', { skip }, async () => {
  const q = join(dir, 'compressed.qcow2');
  await run('qemu-img', ['convert', '-c', '-f', 'raw', '-O', 'qcow2', raw, q]);
  const { out } = await streamQcow(q, { chunk: 65536 });
  await sameAsRaw(out, 12 * MiB);
});

test('small clusters (512 B) and odd chunk sizes', { skip }, async () => {
  const q = join(dir, 'small.qcow2');
  await run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', '-o', 'cluster_size=512', raw, q]);
  const { out } = await streamQcow(q, { chunk: 7777 });
  await sameAsRaw(out, 12 * MiB);
});

test('L1 table after the data (resized image): held in memory, or re-fetched when over the limit', { skip }, async () => {
  const q = join(dir, 'resized.qcow2');
  await run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', '-o', 'cluster_size=4096', raw, q]);
  await run('qemu-img', ['resize', '-f', 'qcow2', q, '64M']);
  const data = await fsp.readFile(q);
  const h = parseQcowHeader(data.subarray(0, 4096));
  assert.ok(h.l1Offset > data.length / 2, `L1 moved to the end (at ${h.l1Offset} of ${data.length})`);
  const held = await streamQcow(q);
  await sameAsRaw(held.out, 64 * MiB);
  const refetched = await streamQcow(q, { pendingLimitBytes: 64 * 1024, refetch: true });
  await sameAsRaw(refetched.out, 64 * MiB);
  await assert.rejects(streamQcow(q, { pendingLimitBytes: 64 * 1024 }), /not streamable/);
});

test('truncated qcow2 is an InvalidImage, not a short write', { skip }, async () => {
  const q = join(dir, 'plain.qcow2');
  const size = (await fsp.stat(q)).size;
  await assert.rejects(streamQcow(q, { truncateTo: Math.floor(size * 0.6) }), (e: { code?: string }) => e.code === 'InvalidImage');
});

test('backing files and encryption are refused', { skip }, async () => {
  const base = join(dir, 'base.qcow2');
  const overlay = join(dir, 'overlay.qcow2');
  await run('qemu-img', ['create', '-f', 'qcow2', base, '16M']);
  await run('qemu-img', ['create', '-f', 'qcow2', '-F', 'qcow2', '-b', base, overlay]);
  const head = (await fsp.readFile(overlay)).subarray(0, 4096);
  assert.throws(() => parseQcowHeader(head), /backing file/);
  const enc = Buffer.from(head);
  enc.writeBigUInt64BE(0n, 8);
  enc.writeUInt32BE(1, 32);
  assert.throws(() => parseQcowHeader(enc), /Encrypted/);
});
