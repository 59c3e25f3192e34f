/**
 * The writer's zero runs (image/aligned-writer.ts zeroRuns): of a run of all-zero buffers only what lies past the
 * run's first minBytes is left out and handed to the device's zeroing, once the run ends; short runs are written;
 * finish() waits for every zeroing and reports its failure. On a plain file pre-filled with a pattern, so a byte
 * neither written nor zeroed shows.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AlignedWriter } from '../../image/aligned-writer.js';

const MiB = 1024 * 1024;

/** [kind, MiB] pieces of an image: 'd' data (0x5a), 'z' zeros. */
type Piece = ['d' | 'z', number];
const LAYOUT: Piece[] = [['d', 2], ['z', 3], ['d', 1], ['z', 10], ['d', 1], ['z', 8]];
const TOTAL = LAYOUT.reduce((n, [, m]) => n + m, 0) * MiB;

async function withFile(fn: (path: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'bmts-zero-runs-'));
  try {
    const path = join(dir, 'disk');
    await writeFile(path, Buffer.alloc(TOTAL + MiB, 0xaa));
    await fn(path);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function writeLayout(w: AlignedWriter): Promise<void> {
  for (const [kind, mib] of LAYOUT) {
    // 256 KiB pieces: the writer's 1 MiB buffers fill from several socket-sized chunks, as in a download.
    for (let i = 0; i < mib * 4; i++) await w.write(Buffer.alloc(256 * 1024, kind === 'd' ? 0x5a : 0));
  }
}

test('zero runs: short runs written, long runs zeroed past their first minBytes, in order, after the run ends', async () => {
  await withFile(async (path) => {
    const calls: Array<[number, number]> = [];
    const w = await AlignedWriter.open(path, { limit: TOTAL, bufferBytes: MiB });
    w.zeroRuns = {
      minBytes: 4 * MiB,
      zero: async (start, len) => {
        calls.push([start / MiB, len / MiB]);
        const fh = await open(path, 'r+');
        await fh.write(Buffer.alloc(len), 0, len, start);
        await fh.close();
      },
    };
    await writeLayout(w);
    await w.finish();
    await w.close();
    // 3 MiB run: written. 10 MiB run at 6 MiB: 4 written, 6 zeroed from 10 MiB. 8 MiB run at 17 MiB: 4 + 4 from 21.
    assert.deepEqual(calls, [[10, 6], [21, 4]]);
    assert.equal(w.skippedBytes, 10 * MiB);
    const got = await readFile(path);
    let off = 0;
    for (const [kind, mib] of LAYOUT) {
      const want = Buffer.alloc(mib * MiB, kind === 'd' ? 0x5a : 0);
      assert.ok(got.subarray(off, off + mib * MiB).equals(want), `${kind} ${mib} MiB at ${off / MiB} MiB`);
      off += mib * MiB;
    }
    assert.ok(got.subarray(TOTAL).every((b) => b === 0xaa), 'nothing past the image touched');
  });
});

test('zero runs: what is left to the device is exactly the skipped range (a zeroing that does nothing shows it)', async () => {
  await withFile(async (path) => {
    const w = await AlignedWriter.open(path, { limit: TOTAL, bufferBytes: MiB });
    w.zeroRuns = { minBytes: 4 * MiB, zero: async () => undefined };
    await writeLayout(w);
    await w.finish();
    await w.close();
    const got = await readFile(path);
    assert.ok(got.subarray(6 * MiB, 10 * MiB).every((b) => b === 0), 'first minBytes of the run written');
    assert.ok(got.subarray(10 * MiB, 16 * MiB).every((b) => b === 0xaa), 'the rest of the run not written');
  });
});

test('zero runs: finish() waits for a slow zeroing; a failed zeroing fails the write', async () => {
  await withFile(async (path) => {
    let done = false;
    const w = await AlignedWriter.open(path, { limit: TOTAL, bufferBytes: MiB });
    w.zeroRuns = { minBytes: 4 * MiB, zero: async () => { await new Promise((r) => setTimeout(r, 200)); done = true; } };
    await writeLayout(w);
    await w.finish();
    assert.equal(done, true);
    await w.close();

    const bad = await AlignedWriter.open(path, { limit: TOTAL, bufferBytes: MiB });
    bad.zeroRuns = { minBytes: 4 * MiB, zero: async () => { throw new Error('no write-zeroes here'); } };
    // The failure stops the writer at its next write or at finish(), whichever comes first.
    await assert.rejects((async () => {
      await writeLayout(bad);
      await bad.finish();
    })(), /Zeroing 10485760\+6291456 of .* failed: no write-zeroes here/);
    await bad.close();
  });
});
