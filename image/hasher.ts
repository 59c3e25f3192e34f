/**
 * The image checksum on a second core. SHA-256 over the image is the largest CPU cost of the byte path (~0.6 ns
 * per byte with SHA-NI, more than the socket copy and the device write together); in the receiving thread it
 * serialises with the socket reads. Here the received bytes are copied (memcpy, ~10x cheaper than the hash) into a
 * shared ring of large slots and a worker hashes each full slot while the main thread keeps receiving. Order is
 * preserved (one worker, messages in order); a full ring is backpressure. `inline` hashes in the calling thread
 * (small downloads, or where a worker is unwanted).
 */
import { createHash, type Hash } from 'node:crypto';
import { Worker } from 'node:worker_threads';

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
  update(chunk: Buffer): Promise<void> | undefined;
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
  digest(): Promise<string> {
    return Promise.resolve(this.h.digest('hex'));
  }
  close(): void {}
}

class WorkerHasher implements ImageHasher {
  private readonly ring: Buffer;
  private readonly busy: Array<(() => void) | null | true>;
  private cur = 0;
  private fill = 0;
  private readonly worker: Worker;
  private failure: Error | null = null;
  private onDigest: ((hex: string) => void) | null = null;

  constructor(
    algo: string,
    private readonly slotBytes = 4 * 1024 * 1024,
    slots = 4,
  ) {
    const sab = new SharedArrayBuffer(slotBytes * slots);
    this.ring = Buffer.from(sab);
    this.busy = new Array(slots).fill(null);
    this.worker = new Worker(WORKER_SRC, { eval: true, workerData: { algo, sab } });
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

  update(chunk: Buffer): Promise<void> | undefined {
    if (this.failure) throw this.failure;
    let off = 0;
    while (off < chunk.length) {
      if (this.busy[this.cur] !== null) {
        const rest = chunk.subarray(off);
        return new Promise<void>((resolve) => {
          this.busy[this.cur] = resolve;
        }).then(() => this.update(rest));
      }
      const n = Math.min(chunk.length - off, this.slotBytes - this.fill);
      chunk.copy(this.ring, this.cur * this.slotBytes + this.fill, off, off + n);
      this.fill += n;
      off += n;
      if (this.fill === this.slotBytes) this.post();
    }
    return undefined;
  }

  async digest(): Promise<string> {
    if (this.failure) throw this.failure;
    if (this.fill > 0) {
      if (this.busy[this.cur] !== null) await new Promise<void>((r) => (this.busy[this.cur] = r));
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

/**
 * A hasher for an image download. In-thread by default: on the bench box (2 cores, busy) the worker was not faster
 * (median 10.0 s vs 9.3 s for 2 GiB) and its isolate + ring cost ~25 MiB RSS. `parallel` (the image setting
 * hashInWorker; the image bench's BMTS_IMAGE_HASH_WORKER=1) enables it.
 */
export function imageHasher(algo: string, parallel: boolean): ImageHasher {
  return parallel ? new WorkerHasher(algo) : new InlineHasher(algo);
}
