/**
 * The image checksum, in the receiving thread or on a second core.
 *
 * SHA-256 has SHA-NI on current x86 (~1.6 GB/s on the bench box's one core): in-thread it costs less than the
 * thread hop. SHA-512 (and md5, sha384) are software (~0.7–1 GB/s), slower than the socket and the O_DIRECT
 * write together, so in-thread they bound the whole pipeline. For those the hash runs in a worker thread over a
 * SharedArrayBuffer ring, and the ring is also where the socket reads land (receiveBuffer(), used by the plain-HTTP
 * fast path in http-get.ts): received bytes are hashed where the kernel put them, never copied for the hash. A chunk
 * that did not come from the ring (TLS, chunked bodies, the bytes after the response headers) is copied in.
 * Order is preserved (one worker, messages in order); a slot is reused only once the worker reports it hashed,
 * and a full ring is backpressure on the socket. digest() resolves only after every byte posted was hashed.
 */
import { createHash, type Hash } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { COMPRESSIONS, detectFormat } from './format.js';

const WORKER_SRC = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const h = createHash(workerData.algo);
const ring = Buffer.from(workerData.sab);
parentPort.on('message', (m) => {
  if (m.t === 'd') { h.update(ring.subarray(m.off, m.off + m.len)); parentPort.postMessage(m.slot); }
  else parentPort.postMessage(h.digest('hex'));
});`;

export interface ImageHasher {
  /** Hash these bytes (next in order). A promise means: wait before handing over more. */
  update(chunk: Buffer): Promise<void> | undefined;
  /**
   * Where the next socket read should land, or null (no preference). Only valid until the next update(); a chunk
   * received into it is then passed to update() as is.
   */
  receiveBuffer(): Buffer | null;
  digest(): Promise<string>;
  close(): void;
}

class InlineHasher implements ImageHasher {
  private readonly h: Hash;
  constructor(algo: string) {
    this.h = createHash(algo);
  }
  update(chunk: Buffer): undefined {
    this.h.update(chunk);
    return undefined;
  }
  receiveBuffer(): null {
    return null;
  }
  digest(): Promise<string> {
    return Promise.resolve(this.h.digest('hex'));
  }
  close(): void {}
}

/** A slot is posted once less than this is left in it, so socket reads into the ring stay large. */
const MIN_READ = 256 * 1024;

export class WorkerHasher implements ImageHasher {
  private readonly sab: SharedArrayBuffer;
  private readonly ring: Buffer;
  /** Per slot: null = free, true = being hashed, function = being hashed and someone waits for it. */
  private readonly busy: Array<(() => void) | null | true>;
  private cur = 0;
  private fill = 0;
  private readonly worker: Worker;
  private failure: Error | null = null;
  private onDigest: ((hex: string) => void) | null = null;
  /** Bytes that went through without a copy (tests and the bench report it). */
  zeroCopyBytes = 0;

  constructor(
    algo: string,
    // 4 x 1 MiB: socket reads of up to 1 MiB (as the fast path's own buffer), and the ring stays small (RSS).
    private readonly slotBytes = 1024 * 1024,
    slots = 4,
  ) {
    this.sab = new SharedArrayBuffer(slotBytes * slots);
    this.ring = Buffer.from(this.sab);
    this.busy = new Array(slots).fill(null);
    this.worker = new Worker(WORKER_SRC, { eval: true, workerData: { algo, sab: this.sab } });
    this.worker.unref();
    this.worker.on('message', (m: number | string) => {
      if (typeof m === 'string') {
        this.onDigest?.(m);
        return;
      }
      const waiter = this.busy[m];
      this.busy[m] = null;
      if (typeof waiter === 'function') waiter();
    });
    this.worker.on('error', (e) => {
      this.failure = e;
      for (let i = 0; i < this.busy.length; i++) {
        const w = this.busy[i];
        this.busy[i] = null;
        if (typeof w === 'function') w();
      }
    });
  }

  private post(): void {
    this.busy[this.cur] = true;
    this.worker.postMessage({ t: 'd', slot: this.cur, off: this.cur * this.slotBytes, len: this.fill });
    this.cur = (this.cur + 1) % this.busy.length;
    this.fill = 0;
  }

  private waitCurrent(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.busy[this.cur] = resolve;
    });
  }

  receiveBuffer(): Buffer {
    // When the current slot is still being hashed the socket is paused (update() returned a promise) and reads
    // resume only after it is free, so handing out its region now is safe.
    const start = this.cur * this.slotBytes + this.fill;
    return this.ring.subarray(start, (this.cur + 1) * this.slotBytes);
  }

  update(chunk: Buffer): Promise<void> | undefined {
    if (this.failure) throw this.failure;
    if (chunk.buffer === this.sab && chunk.byteOffset === this.cur * this.slotBytes + this.fill && this.busy[this.cur] === null) {
      // Received in place (see receiveBuffer): nothing to copy.
      this.fill += chunk.length;
      this.zeroCopyBytes += chunk.length;
      if (this.slotBytes - this.fill < MIN_READ) this.post();
      return this.busy[this.cur] !== null ? this.waitCurrent() : undefined;
    }
    let off = 0;
    while (off < chunk.length) {
      if (this.busy[this.cur] !== null) {
        // Copy what is left now: the caller may reuse its buffer once we return (the ring is never the source here
        // except for a region being overwritten after it was already hashed).
        const rest = Buffer.from(chunk.subarray(off));
        return this.waitCurrent().then(() => this.update(rest));
      }
      const n = Math.min(chunk.length - off, this.slotBytes - this.fill);
      chunk.copy(this.ring, this.cur * this.slotBytes + this.fill, off, off + n);
      this.fill += n;
      off += n;
      if (this.slotBytes - this.fill < MIN_READ) this.post();
    }
    return this.busy[this.cur] !== null ? this.waitCurrent() : undefined;
  }

  async digest(): Promise<string> {
    if (this.failure) throw this.failure;
    if (this.fill > 0) {
      if (this.busy[this.cur] !== null) await this.waitCurrent();
      this.post();
    }
    const hex = await new Promise<string>((resolve, reject) => {
      this.onDigest = resolve;
      this.worker.once('error', reject);
      this.worker.postMessage({ t: 'f' });
    });
    this.close();
    return hex;
  }

  close(): void {
    void this.worker.terminate();
  }
}

/** Algorithms with hardware help in one thread on the CPUs we target; everything else goes to a worker. */
const FAST_INLINE = new Set(['sha256']);

/**
 * A hasher for an image download. `parallel` (the image setting hashInWorker): 'auto' puts the hash in a worker
 * for the software-only algorithms (sha512, sha384, md5) and keeps sha256 in-thread (measured: the worker was not
 * faster for sha256 on a raw image on the 2-core bench box, 1.85 vs 2.0 s for 2 GiB, and its isolate costs
 * ~10–20 MiB RSS), except when `head` (the first bytes received) shows a compressed image: then the receiving
 * thread also feeds the decompressor and takes its output (a pipe each way, sinks.ts DecompressSink)
 * and sha256 in-thread made it the bottleneck (2 GiB zstd: 4.2 s in-thread, 2.9 s in a worker, as
 * fast as `curl | dd` of the raw image). true/false force either way.
 */
export function imageHasher(algo: string, parallel: boolean | 'auto', head?: Buffer): ImageHasher {
  const compressed = head !== undefined && COMPRESSIONS.includes(detectFormat(head));
  const worker = parallel === 'auto' ? !FAST_INLINE.has(algo) || compressed : parallel;
  return worker ? new WorkerHasher(algo) : new InlineHasher(algo);
}
