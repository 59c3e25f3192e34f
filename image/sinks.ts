/**
 * The byte path after the hash: format detection on the first bytes, optional decompression (nested, so
 * qcow2.gz works), then the raw or qcow2 writer. A Sink's push() returns undefined when it took the bytes at once
 * and a promise when the producer must wait (backpressure); end() flushes and reports the first error.
 */
import net from 'node:net';
import type { Writable } from 'node:stream';
import { spawnFilter, type FilterProcess } from '../common/exec.js';
import { openToolOutput } from './tool-output.js';
import { AgentError, InvalidImage } from '../protocol/agent-api.js';
import type { AlignedWriter } from './aligned-writer.js';
import { COMPRESSIONS, declaredMatches, detectFormat, type ImageFormat } from './format.js';

export interface Sink {
  /**
   * Optional: where the producer may read its next bytes so that push() takes them without a copy (null: no such
   * place now). Valid until the next push().
   */
  receiveBuffer?(): Buffer | null;
  push(chunk: Buffer): Promise<void> | undefined;
  end(): Promise<void>;
  /** Stop helpers (child processes) after a failure elsewhere. */
  abort(): void;
}

export class RawSink implements Sink {
  constructor(private readonly writer: AlignedWriter) {}
  receiveBuffer(): Buffer | null {
    return this.writer.receiveBuffer();
  }
  push(chunk: Buffer): Promise<void> | undefined {
    return this.writer.write(chunk);
  }
  async end(): Promise<void> {}
  abort(): void {}
}

const HEAD = 64 * 1024;

export interface ChainOptions {
  declared: string | null | undefined;
  permitted: readonly string[];
  /** Build the final sink once the (decompressed) format is known; `head` holds its first bytes. */
  final(format: 'raw' | 'qcow2', head: Buffer): Sink | Promise<Sink>;
  onDetect?(layers: ImageFormat[]): void;
}

/** Holds the first bytes until the format is known, then forwards everything to the sink for that format. */
export class DetectSink implements Sink {
  private head: Buffer[] = [];
  private headLen = 0;
  private inner: Sink | null = null;

  constructor(
    private readonly opts: ChainOptions,
    private readonly layers: ImageFormat[] = [],
  ) {}

  receiveBuffer(): Buffer | null {
    return this.inner?.receiveBuffer?.() ?? null;
  }

  push(chunk: Buffer): Promise<void> | undefined {
    if (this.inner) return this.inner.push(chunk);
    this.head.push(Buffer.from(chunk));
    this.headLen += chunk.length;
    if (this.headLen >= HEAD) return this.start();
    return undefined;
  }

  private async start(): Promise<void> {
    const buf = Buffer.concat(this.head);
    this.head = [];
    const fmt = detectFormat(buf);
    const layers = [...this.layers, fmt];
    if (COMPRESSIONS.includes(fmt)) {
      if (this.layers.length >= 2) throw new InvalidImage(`Too many nested compression layers: ${layers.join('/')}`);
      this.inner = await DecompressSink.open(fmt as 'gzip' | 'xz' | 'zstd', new DetectSink(this.opts, layers));
    } else {
      this.opts.onDetect?.(layers);
      if (fmt !== 'raw' && fmt !== 'qcow2') {
        throw new InvalidImage(`Unsupported image format ${fmt} (detected from its content); supported: raw, qcow2, and raw/qcow2 compressed with gzip, xz or zstd`);
      }
      if (!declaredMatches(this.opts.declared, fmt)) {
        throw new InvalidImage(`Security: The requested image format ${this.opts.declared ?? ''} does not match the detected format ${fmt}`);
      }
      const permitted = fmt === 'raw' ? this.opts.permitted.some((p) => p === 'raw' || p === 'gpt') : this.opts.permitted.includes(fmt);
      if (!permitted) throw new InvalidImage(`Security: Image format ${fmt} is not permitted (permitted: ${this.opts.permitted.join(', ')})`);
      this.inner = await this.opts.final(fmt, buf);
    }
    return this.inner.push(buf);
  }

  async end(): Promise<void> {
    if (!this.inner) {
      if (this.headLen === 0) throw new InvalidImage('The image is empty');
      await this.start();
    }
    await this.inner!.end();
  }

  abort(): void {
    this.inner?.abort();
  }
}

/**
 * Every compression through a CLI tool: xz through xz, zstd and gzip through zstd (Debian's zstd reads gzip with
 * zlib; Node 20 has no xz or zstd). gzip went through node:zlib until issue 22: each output chunk is a new buffer,
 * and V8 lets such garbage grow by ~64 MiB of external memory before it collects, so a 2 GiB gzip image peaked at
 * 110-125 MiB RSS against 82-96 for zstd; `zstd --format=gzip` inflates as fast (0.6 s user for 2 GiB, where
 * gzip -dc takes 5.6 s). The tool's output goes to one end of a socket pair read with `onread` (tool-output.ts says
 * why), its input is written without a copy (the producer waits for the write only when the pipe did not take it
 * at once). Output is pushed to the next sink with the reads paused while that sink is busy, so at most a pipe's
 * worth of bytes is in flight at each end whatever the image size.
 */
const TOOLS: Record<'gzip' | 'xz' | 'zstd', readonly [string, ...string[]]> = {
  gzip: ['zstd', '-dc', '--format=gzip'],
  xz: ['xz', '-dc'],
  zstd: ['zstd', '-dc'],
};

export class DecompressSink implements Sink {
  private readonly input: Writable;
  private failure: unknown = null;
  private readonly finished: Promise<void>;
  private settle: { resolve(): void; reject(e: unknown): void } | null = null;

  static async open(kind: 'gzip' | 'xz' | 'zstd', next: Sink): Promise<DecompressSink> {
    const buf = Buffer.allocUnsafeSlow(1024 * 1024);
    let sink: DecompressSink | null = null;
    const out = await openToolOutput({
      // Asked before every read: the raw writer's pool buffer when it has room, so the decompressed bytes land where
      // they are written from (one copy less of the whole image).
      buffer: (): Buffer => next.receiveBuffer?.() ?? buf,
      callback: (n: number, b: Uint8Array): boolean => {
        sink?.deliver(Buffer.from(b.buffer, b.byteOffset, n));
        return true;
      },
    });
    let proc: FilterProcess;
    try {
      const [tool, ...args] = TOOLS[kind];
      proc = spawnFilter(tool, args, { quiet: true, stdoutTo: out.writer });
    } catch (e) {
      out.reader.destroy();
      throw e;
    } finally {
      // The child has its own copy; ours would keep the reader from ever reaching end-of-file.
      out.writer.destroy();
    }
    sink = new DecompressSink(kind, next, proc, out.reader);
    return sink;
  }

  private constructor(
    private readonly kind: 'gzip' | 'xz' | 'zstd',
    private readonly next: Sink,
    private readonly proc: FilterProcess,
    private readonly output: net.Socket,
  ) {
    this.input = proc.stdin;
    proc.done.catch((e: unknown) => this.fail(e));
    this.input.on('error', (e) => this.fail(e));
    this.finished = new Promise<void>((resolve, reject) => {
      this.settle = { resolve, reject };
      this.output.on('error', (e) => this.fail(e));
      this.output.on('end', () => resolve());
    });
    this.finished.catch(() => undefined); // observed here so it is never unhandled; end() awaits and rethrows it
  }

  /** Decompressed bytes, valid only during this call (the read buffer is reused): the next sink copies or holds us. */
  private deliver(d: Buffer): void {
    if (this.failure) return;
    let p: Promise<void> | undefined;
    try {
      p = this.next.push(d);
    } catch (e) {
      this.fail(e);
      return;
    }
    if (p) {
      this.output.pause();
      p.then(
        () => {
          if (!this.failure) this.output.resume();
        },
        (e: unknown) => this.fail(e),
      );
    }
  }

  private fail(e: unknown): void {
    if (this.failure) return;
    this.failure =
      e instanceof AgentError
        ? e
        : new InvalidImage(`Decompressing the ${this.kind} image failed: ${(e as Error)?.message ?? String(e)}`);
    this.settle?.reject(this.failure);
    this.output.resume();
    this.proc.kill();
  }

  push(chunk: Buffer): Promise<void> | undefined {
    if (this.failure) throw this.failure;
    // No copy: the producer's buffer is reused after its next read, so when the pipe did not take all of it at once
    // (bytes still queued in the stream) the producer waits for this write to complete.
    let flushed = false;
    let waiter: ((e?: unknown) => void) | null = null;
    this.input.write(chunk, (e) => {
      flushed = true;
      waiter?.(e ?? undefined);
    });
    if (flushed || this.input.writableLength === 0) return undefined;
    return new Promise<void>((resolve, reject) => {
      waiter = (e) => {
        if (e || this.failure) reject(this.failure ?? e);
        else resolve();
      };
    });
  }

  async end(): Promise<void> {
    if (this.failure) throw this.failure;
    this.input.end();
    try {
      await this.finished;
      await this.proc.done.catch((e: unknown) => this.fail(e));
    } finally {
      this.output.destroy();
    }
    if (this.failure) throw this.failure;
    await this.next.end();
  }

  abort(): void {
    this.proc.kill();
    this.output.destroy();
    this.next.abort();
  }
}
