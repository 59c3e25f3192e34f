/**
 * The byte path after the hash: format detection on the first bytes, optional decompression (nested, so
 * qcow2.gz works), then the raw or qcow2 writer. A Sink's push() returns undefined when it took the bytes at once
 * and a promise when the producer must wait (backpressure); end() flushes and reports the first error.
 */
import { createGunzip } from 'node:zlib';
import type { Readable, Writable } from 'node:stream';
import { spawnFilter } from '../common/exec.js';
import { AgentError, InvalidImage } from '../protocol/agent-api.js';
import type { AlignedWriter } from './aligned-writer.js';
import { COMPRESSIONS, declaredMatches, detectFormat, type ImageFormat } from './format.js';

export interface Sink {
  push(chunk: Buffer): Promise<void> | undefined;
  end(): Promise<void>;
  /** Stop helpers (child processes) after a failure elsewhere. */
  abort(): void;
}

export class RawSink implements Sink {
  constructor(private readonly writer: AlignedWriter) {}
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
      this.inner = new DecompressSink(fmt as 'gzip' | 'xz' | 'zstd', new DetectSink(this.opts, layers));
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
 * gzip in-process (zlib runs in the thread pool); xz and zstd through their CLI tools, since Node 20 has
 * neither. Output is pushed to the next sink with the decompressor paused while that sink is busy.
 */
export class DecompressSink implements Sink {
  private readonly input: Writable;
  private readonly output: Readable;
  private readonly proc: ReturnType<typeof spawnFilter> | null = null;
  private failure: unknown = null;
  private readonly finished: Promise<void>;

  constructor(
    private readonly kind: 'gzip' | 'xz' | 'zstd',
    private readonly next: Sink,
  ) {
    if (kind === 'gzip') {
      const gz = createGunzip({ chunkSize: 1024 * 1024 });
      this.input = gz;
      this.output = gz;
    } else {
      this.proc = spawnFilter(kind, ['-dc'], { quiet: true });
      this.input = this.proc.stdin;
      this.output = this.proc.stdout;
      this.proc.done.catch((e: unknown) => this.fail(e));
    }
    this.input.on('error', (e) => this.fail(e));
    this.finished = new Promise<void>((resolve, reject) => {
      this.output.on('error', (e) => {
        this.fail(e);
        reject(this.failure);
      });
      this.output.on('end', () => resolve());
      this.output.on('data', (d: Buffer) => {
        if (this.failure) return;
        let p: Promise<void> | undefined;
        try {
          p = this.next.push(d);
        } catch (e) {
          this.fail(e);
          reject(this.failure);
          return;
        }
        if (p) {
          this.output.pause();
          p.then(
            () => this.output.resume(),
            (e: unknown) => {
              this.fail(e);
              reject(this.failure);
            },
          );
        }
      });
    });
    this.finished.catch(() => undefined); // observed here so it is never unhandled; end() awaits and rethrows it
  }

  private fail(e: unknown): void {
    if (this.failure) return;
    this.failure =
      e instanceof AgentError
        ? e
        : new InvalidImage(`Decompressing the ${this.kind} image failed: ${(e as Error)?.message ?? String(e)}`);
    this.output.resume();
    this.proc?.kill();
  }

  push(chunk: Buffer): Promise<void> | undefined {
    if (this.failure) throw this.failure;
    // The stream keeps the buffer until it is consumed; the producer reuses its read buffer, so copy.
    if (this.input.write(Buffer.from(chunk))) return undefined;
    return new Promise<void>((resolve, reject) => {
      const onDrain = (): void => {
        this.input.off('close', onDrain);
        if (this.failure) reject(this.failure);
        else resolve();
      };
      this.input.once('drain', onDrain);
      this.input.once('close', onDrain);
    });
  }

  async end(): Promise<void> {
    if (this.failure) throw this.failure;
    this.input.end();
    await this.finished;
    if (this.proc) await this.proc.done.catch((e: unknown) => this.fail(e));
    if (this.failure) throw this.failure;
    await this.next.end();
  }

  abort(): void {
    this.proc?.kill();
    this.next.abort();
  }
}
