/**
 * One pass from the image URL(s) to a block device: download → hash (md5/sha256/sha512, every byte as received)
 * → format detection → optional decompression → raw or streaming-qcow2 writer (aligned O_DIRECT, fsync). The
 * checksum is verified after the last byte is on the device; the caller wipes the device when this throws.
 */
import { getLogger } from '../common/logger.js';
import { ImageDownloadError, InvalidImage } from '../protocol/agent-api.js';
import { AlignedWriter } from './aligned-writer.js';
import { checksumMismatch, expectedChecksum, type ChecksumSource, type ExpectedChecksum } from './checksum.js';
import { fastZeroSupported, punchZeros, zeroRange } from '../block/disk.js';
import { downloadImage, fetchRange, type DownloadAuth } from './download.js';
import type { ImageFormat } from './format.js';
import { imageHasher, type ImageHasher } from './hasher.js';
import { Progress } from './progress.js';
import { parseQcowHeader, QcowSink } from './qcow2.js';
import { imageSettings } from './settings.js';
import { DetectSink, RawSink, type Sink } from './sinks.js';

const log = getLogger('image-write');

export interface StreamImageOptions {
  info: ChecksumSource & { disk_format?: string | null | undefined };
  device: string;
  /** Bytes available on the device (the image must fit). */
  limit: number;
  auth?: DownloadAuth;
  progress?: Progress;
  signal?: AbortSignal;
  /** Precomputed expected checksum (skips resolving it again). */
  expected?: ExpectedChecksum;
}

export interface StreamImageResult {
  layers: ImageFormat[];
  downloadedBytes: number;
  writtenBytes: number;
  /** Size of the image as written on the device (raw length or qcow2 virtual size). */
  imageSize: number;
  /** Bytes of zeros not written because the device zeroed them (zero runs, qcow2 holes on a pre-zeroed range). */
  zeroSkippedBytes: number;
  /** qcow2: bytes of holes zeroed after the write (dense images, or no cheap zeroing to do it up front). */
  holesZeroedAfterBytes: number;
  checksum: ExpectedChecksum;
  requests: number;
  seconds: number;
}

/** Zero runs longer than this are left to the device's zeroing (see final() below); shorter ones are written. */
export const ZERO_RUN_MIN_BYTES = 16 * 1024 * 1024;

/** A qcow2 file at least this fraction of its virtual size is dense: its holes are zeroed after the write. */
export const DENSE_QCOW2 = 0.9;

/**
 * Zero the holes a qcow2 image left: each through the device's zeroing (one process per range) while there are
 * few, else written as zeros through the image's own writer (a dense image's holes add up to at most a tenth of
 * it, and thousands of small ones would cost seconds of process starts). The caller's finish() writes and fsyncs.
 */
async function zeroHoles(writer: AlignedWriter, holes: Array<[number, number]>): Promise<void> {
  if (holes.length <= 32) {
    for (const [s, e] of holes) await zeroRange(writer.device, s, e - s);
    return;
  }
  const zeros = Buffer.alloc(1024 * 1024);
  for (const [s, e] of holes) {
    await writer.seek(s);
    for (let p = s; p < e; p += zeros.length) await writer.write(zeros.subarray(0, Math.min(zeros.length, e - p)));
  }
}

/**
 * Most bytes one image download may bring for a target of `limit` bytes: the image itself plus room for qcow2
 * metadata (L2 and refcount tables stay under 2 % even with 512-byte clusters) and headers. Without it a server
 * could stream clusters the qcow2 writer only defers (see qcow2.ts) for ever.
 */
export function downloadCap(limit: number): number {
  return limit + Math.ceil(limit / 16) + 1024 * 1024;
}

export async function streamImageToDevice(o: StreamImageOptions): Promise<StreamImageResult> {
  const t0 = Date.now();
  const expected = o.expected ?? (await expectedChecksum(o.info, o.auth));
  const progress = o.progress ?? new Progress(undefined, o.info.id);
  // Made on the first bytes received, which tell whether the image is compressed (see imageHasher).
  const hashing: { h: ImageHasher | null } = { h: null };
  const hashFor = (head?: Buffer): ImageHasher => (hashing.h ??= imageHasher(expected.algo, imageSettings().hashInWorker, head));
  const writer = await AlignedWriter.open(o.device, { limit: o.limit });
  let layers: ImageFormat[] = [];
  let qcow: QcowSink | null = null;
  let preZeroed = false;
  let holesZeroedAfter = 0;
  let tail = { syncMs: 0, digestMs: 0 };
  let contentLength: number | null = null;
  const rangeAuth = o.auth ? { auth: o.auth } : {};
  const chain: Sink = new DetectSink({
    declared: o.info.disk_format,
    permitted: imageSettings().permittedFormats,
    onDetect: (l) => {
      layers = l;
      log.info({ layers: l.join('/'), device: o.device }, 'image format detected');
    },
    final: async (fmt, head) => {
      if (fmt === 'raw') {
        if (layers.length === 1 && contentLength !== null && contentLength > o.limit) {
          throw new InvalidImage(
            `Image size ${contentLength} bytes is larger than the target ${o.device} (${o.limit} bytes)`,
          );
        }
        // Sparse raw images: where the device zeroes a range cheaply (hole punch, write-zeroes offload), long runs
        // of zeros are zeroed by the device in the background instead of written. Until issue 22 the whole image
        // range was punched before the first write: 0.3-0.9 s per GiB (loop on ext4) in front of the download,
        // for nothing on a dense image. A run pays one fallocate (20-35 ms with its process), as much as writing
        // 8-16 MiB, so runs up to ZERO_RUN_MIN_BYTES are written as they are.
        if (await fastZeroSupported(o.device)) {
          writer.zeroRuns = { minBytes: ZERO_RUN_MIN_BYTES, zero: (start, len) => zeroRange(o.device, start, len) };
        }
        return new RawSink(writer);
      }
      const header = parseQcowHeader(head);
      if (header.virtualSize > o.limit) {
        throw new InvalidImage(
          `Image virtual size ${header.virtualSize} bytes is larger than the target ${o.device} (${o.limit} bytes)`,
        );
      }
      // Unallocated clusters must read back as zeros. A sparse image (a cloud image: a few hundred MiB of data in a
      // disk of GiBs) has many holes, so the range is zeroed up front where the device does it cheaply, in one
      // call. A dense one (the file about as large as its virtual disk) overwrites nearly every byte: zeroing it all
      // first is wasted (2 GiB on a loop device: ~0.3-0.9 s when the range was written before), so only its few
      // holes are zeroed after the write.
      const dense = layers.length === 1 && contentLength !== null && contentLength >= header.virtualSize * DENSE_QCOW2;
      if (!dense && (await fastZeroSupported(o.device))) preZeroed = await punchZeros(o.device, 0, header.virtualSize);
      const singleUrl = o.info.urls[0]!;
      qcow = new QcowSink(writer, header, {
        pendingLimitBytes: imageSettings().qcow2PendingLimitBytes,
        // Range re-fetch is only valid on the raw bytes of the file (no compression layer around it).
        ...(layers.length === 1
          ? { refetch: (s: number, e: number) => fetchRange(singleUrl, s, e, { imageId: o.info.id, ...rangeAuth }) }
          : {}),
      });
      return qcow;
    },
  });
  progress.setPhase('writing');
  try {
    const dl = await downloadImage(
      {
        imageId: o.info.id,
        urls: o.info.urls,
        ...(o.auth ? { auth: o.auth } : {}),
        ...(o.signal ? { signal: o.signal } : {}),
        // The worker hasher's ring when there is one; else the raw writer's pool buffer, so received bytes are hashed
        // and written where the kernel put them.
        receiveBuffer: () => hashing.h?.receiveBuffer() ?? chain.receiveBuffer?.() ?? null,
        onStart: (len, offset) => {
          if (offset === 0) contentLength = len;
          progress.total = len === null ? null : len + offset;
        },
      },
      (chunk) => {
        progress.downloaded += chunk.length;
        // Counted on the bytes received (a declared Content-Length is judged by the format sinks, see above).
        const cap = downloadCap(o.limit);
        if (progress.downloaded > cap) {
          throw new InvalidImage(
            `Image ${o.info.id} does not fit on ${o.device}: more than ${cap} bytes downloaded for a ${o.limit}-byte target`,
          );
        }
        const hp = hashFor(chunk).update(chunk);
        progress.written = writer.written;
        progress.tick();
        const sp = chain.push(chunk);
        if (hp && sp) return Promise.all([hp, sp]).then(() => undefined);
        return hp ?? sp;
      },
    );
    const tLast = Date.now();
    await chain.end();
    await writer.finish();
    const tSynced = Date.now();
    const actual = await hashFor().digest();
    // After the last byte: the writes still in flight and the fsync, then what the hash had still to do.
    tail = { syncMs: tSynced - tLast, digestMs: Date.now() - tSynced };
    progress.setPhase('verifying');
    if (actual !== expected.value.toLowerCase()) {
      throw checksumMismatch(o.device, o.info.id, expected.value, actual);
    }
    let imageSize = writer.written;
    if (qcow) {
      const q = qcow as QcowSink;
      const refetched = await q.completeDeferred();
      if (refetched > 0) log.info({ clusters: refetched }, 'qcow2 clusters re-fetched by Range');
      if (!preZeroed) {
        progress.setPhase('zeroing');
        const holes = q.holes();
        holesZeroedAfter = holes.reduce((n, [s, e]) => n + e - s, 0);
        await zeroHoles(writer, holes);
      }
      await writer.finish();
      imageSize = q.header.virtualSize;
    }
    progress.written = writer.written;
    progress.setPhase('written');
    const seconds = (Date.now() - t0) / 1000;
    log.info(
      { device: o.device, layers: layers.join('/'), bytes: dl.bytes, imageSize, seconds, requests: dl.requests, zeroSkipped: writer.skippedBytes, inPlace: writer.inPlaceBytes, holesZeroedAfter, ...tail },
      'image written and verified',
    );
    return {
      layers,
      downloadedBytes: dl.bytes,
      writtenBytes: writer.written,
      imageSize,
      zeroSkippedBytes: writer.skippedBytes,
      holesZeroedAfterBytes: holesZeroedAfter,
      checksum: expected,
      requests: dl.requests,
      seconds,
    };
  } catch (e) {
    chain.abort();
    if (e instanceof Error && !('serialize' in e)) {
      throw new ImageDownloadError(`Download of image ${o.info.id} failed: ${e.message}`, e);
    }
    throw e;
  } finally {
    hashing.h?.close();
    await writer.close();
  }
}
