/**
 * Streaming qcow2 → block device, in one pass over the download, without staging the image.
 *
 * Why this and not `qemu-img convert`: qemu-img needs random access to its input, i.e. the whole image in a
 * file first (IPA stages it in the ramdisk's RAM — its users' most common complaint) or qemu's curl driver doing
 * its own Range requests, after which the checksum needs a second full download. A qcow2 file is a header, an
 * L1 table, L2 tables and clusters; the header sits at offset 0 and qemu-img lays files out so that the L1 table
 * comes early and each L2 table precedes the data clusters it maps. So as the bytes stream by we learn the L1
 * table, then each L2 table, and write every data cluster at its guest offset the moment it passes — hashed in
 * the same pass, no second download, constant memory.
 *
 * Clusters that arrive before the table that maps them (e.g. an image whose L1 was moved to the end by a
 * resize) are held in memory up to a limit; past it only a SHA-256 per cluster is kept, and once the stream has
 * ended and the whole image checksum has passed, those clusters are fetched again with HTTP Range requests and
 * checked against their per-cluster digests. Unallocated and zero clusters are never written: the caller zeroes
 * the device range up front where the device does it cheaply (write-zeroes/discard), else `holes()` lists the
 * guest ranges to zero afterwards. Compressed (deflate) clusters are inflated; backing files, encryption,
 * external data files, extended L2 entries and zstd-compressed clusters are refused with a clear error.
 */
import { createHash } from 'node:crypto';
import { inflateRawSync } from 'node:zlib';
import { InvalidImage } from '../protocol/agent-api.js';
import type { AlignedWriter } from './aligned-writer.js';
import type { Sink } from './sinks.js';
import { errorMessage } from '../common/errors.js';

export interface QcowHeader {
  version: number;
  clusterBits: number;
  clusterSize: number;
  virtualSize: number;
  l1Size: number;
  l1Offset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  compressionType: number;
}

const U64 = (b: Buffer, o: number): number => Number(b.readBigUInt64BE(o));
const OFFSET_MASK = 0x00fffffffffffe00n;

export function parseQcowHeader(b: Buffer): QcowHeader {
  if (b.length < 72 || b.readUInt32BE(0) !== 0x514649fb) throw new InvalidImage('Not a qcow2 image (bad magic)');
  const version = b.readUInt32BE(4);
  if (version !== 2 && version !== 3) throw new InvalidImage(`Unsupported qcow2 version ${version}`);
  if (U64(b, 8) !== 0) throw new InvalidImage('Security: qcow2 images with a backing file are not allowed');
  const clusterBits = b.readUInt32BE(20);
  if (clusterBits < 9 || clusterBits > 21) throw new InvalidImage(`Invalid qcow2 cluster_bits ${clusterBits}`);
  if (b.readUInt32BE(32) !== 0) throw new InvalidImage('Encrypted qcow2 images are not supported');
  let compressionType = 0;
  if (version === 3) {
    const incompatible = b.readBigUInt64BE(72);
    // bit 0 dirty (refcounts only: harmless for reading), bit 3 compression type field present.
    const unsupported = incompatible & ~0b1001n;
    if (unsupported !== 0n) {
      const names: string[] = [];
      if (unsupported & 0b10n) names.push('corrupt');
      if (unsupported & 0b100n) names.push('external data file');
      if (unsupported & 0b10000n) names.push('extended L2 entries');
      if (names.length === 0) names.push(`0x${unsupported.toString(16)}`);
      throw new InvalidImage(`Unsupported qcow2 incompatible features: ${names.join(', ')}`);
    }
    const headerLength = b.readUInt32BE(100);
    if (headerLength > 104 && b.length > 104) compressionType = b[104]!;
  }
  return {
    version,
    clusterBits,
    clusterSize: 2 ** clusterBits,
    virtualSize: U64(b, 24),
    l1Size: b.readUInt32BE(36),
    l1Offset: U64(b, 40),
    refcountTableOffset: U64(b, 48),
    refcountTableClusters: b.readUInt32BE(56),
    compressionType,
  };
}

interface Compressed {
  start: number;
  end: number;
  guest: number;
}

export interface QcowSinkOptions {
  pendingLimitBytes: number;
  /** Random access to the image for clusters that arrived before their table (HTTP Range). */
  refetch?: (start: number, end: number) => Promise<Buffer>;
  onProgress?: (writtenBytes: number) => void;
}

type Kind = 'data' | 'l2' | 'hold' | 'skip' | 'unknown';

export class QcowSink implements Sink {
  private readonly cs: number;
  private pos = 0;
  private l1Buf: Buffer;
  private l1Got = 0;
  private readonly l2Wanted = new Map<number, number>(); // host offset → guest base
  private readonly dataMap = new Map<number, number>(); // host cluster offset → guest offset
  private readonly compressed: Compressed[] = [];
  private readonly holdNeeds = new Map<number, number>(); // host cluster → unresolved compressed users
  private readonly pending = new Map<number, Buffer>(); // host cluster → bytes held until mapped
  private pendingBytes = 0;
  private readonly deferred = new Map<number, Buffer>(); // host cluster → sha256 (refetched later)
  private readonly skip = new Set<number>();
  private curKind: Kind = 'skip';
  private curBuf: Buffer | null = null;
  private curFill = 0;
  private readonly covered: Uint8Array; // guest clusters written, one bit each
  dataBytes = 0;

  constructor(
    private readonly writer: AlignedWriter,
    readonly header: QcowHeader,
    private readonly opts: QcowSinkOptions,
  ) {
    this.cs = header.clusterSize;
    this.l1Buf = Buffer.alloc(header.l1Size * 8);
    this.covered = new Uint8Array(Math.ceil(Math.ceil(header.virtualSize / this.cs) / 8));
    if (header.virtualSize > writer.limit) {
      throw new InvalidImage(
        `Image virtual size ${header.virtualSize} bytes is larger than the target ${writer.device} (${writer.limit} bytes)`,
      );
    }
    this.skip.add(0);
    for (let i = 0; i < header.refcountTableClusters; i++) this.skip.add(header.refcountTableOffset + i * this.cs);
    if (header.l1Size === 0) this.l1Got = 0;
  }

  private l1Done(): boolean {
    return this.l1Got >= this.l1Buf.length;
  }

  private classify(host: number): Kind {
    if (this.dataMap.has(host)) return 'data';
    if (this.l2Wanted.has(host)) return 'l2';
    if (this.holdNeeds.has(host)) return 'hold';
    const l1End = this.header.l1Offset + this.l1Buf.length;
    if (this.skip.has(host) || (host + this.cs > this.header.l1Offset && host < l1End)) return 'skip';
    // Everything mapped is known once L1 and all L2 tables have passed: the rest is refcounts/leaks.
    if (this.l1Done() && this.l2Wanted.size === 0) return 'skip';
    return 'unknown';
  }

  push(chunk: Buffer): Promise<void> | undefined {
    let off = 0;
    let wait: Promise<void> | undefined;
    while (off < chunk.length) {
      const inCluster = this.pos % this.cs;
      const host = this.pos - inCluster;
      if (inCluster === 0) this.startCluster(host);
      const n = Math.min(chunk.length - off, this.cs - inCluster);
      const seg = chunk.subarray(off, off + n);
      const l1 = this.captureL1(seg);
      if (l1) wait = wait ? wait.then(() => l1) : l1;
      if (this.curKind === 'data') {
        const p = this.writeGuest(this.dataMap.get(host)! + inCluster, seg, inCluster === 0);
        if (p) wait = wait ? wait.then(() => p) : p;
      } else if (this.curBuf) {
        seg.copy(this.curBuf, this.curFill);
        this.curFill += n;
      }
      this.pos += n;
      off += n;
      if (this.pos % this.cs === 0) {
        const p = this.endCluster(host);
        if (p) wait = wait ? wait.then(() => p) : p;
      }
    }
    return wait;
  }

  private startCluster(host: number): void {
    this.curKind = this.classify(host);
    this.curFill = 0;
    this.curBuf = this.curKind === 'l2' || this.curKind === 'hold' || this.curKind === 'unknown' ? Buffer.allocUnsafe(this.cs) : null;
  }

  /** Returns the writes of data clusters that arrived before the L1 table pointed at them (awaited by push). */
  private captureL1(seg: Buffer): Promise<void> | undefined {
    const start = this.pos;
    const l1s = this.header.l1Offset;
    const l1e = l1s + this.l1Buf.length;
    const a = Math.max(start, l1s);
    const b = Math.min(start + seg.length, l1e);
    if (a >= b) return undefined;
    seg.copy(this.l1Buf, a - l1s, a - start, b - start);
    this.l1Got += b - a;
    return this.l1Done() ? this.parseL1() : undefined;
  }

  private parseL1(): Promise<void> | undefined {
    const perL2 = this.cs / 8;
    for (let i = 0; i < this.header.l1Size; i++) {
      const off = Number(this.l1Buf.readBigUInt64BE(i * 8) & OFFSET_MASK);
      if (off !== 0) this.l2Wanted.set(off, i * perL2 * this.cs);
    }
    // L2 tables that already passed were kept as 'unknown' in pending; their data clusters are written now.
    let wait: Promise<void> | undefined;
    for (const [host, guest] of [...this.l2Wanted]) {
      const held = this.takeHeld(host);
      const p = held ? this.parseL2(host, guest, held) : undefined;
      if (p) wait = wait ? wait.then(() => p) : p;
    }
    return wait;
  }

  private takeHeld(host: number): Buffer | null {
    const b = this.pending.get(host);
    if (b) {
      this.pending.delete(host);
      this.pendingBytes -= b.length;
      return b;
    }
    return null;
  }

  private endCluster(host: number): Promise<void> | undefined {
    const buf = this.curBuf;
    this.curBuf = null;
    if (!buf) return undefined;
    if (this.curKind === 'l2') return this.parseL2(host, this.l2Wanted.get(host)!, buf);
    if (this.curKind === 'hold') {
      this.pending.set(host, buf);
      this.pendingBytes += buf.length;
      return this.resolveCompressed();
    }
    // unknown: keep it (bounded), or only its digest once over the limit
    if (this.pendingBytes + buf.length <= this.opts.pendingLimitBytes) {
      this.pending.set(host, buf);
      this.pendingBytes += buf.length;
    } else {
      if (!this.opts.refetch) {
        throw new InvalidImage(
          `qcow2 layout not streamable: more than ${this.opts.pendingLimitBytes >> 20} MiB of clusters precede their mapping tables and the server offers no Range requests; rewrite the image with qemu-img convert -O qcow2`,
        );
      }
      this.deferred.set(host, createHash('sha256').update(buf).digest());
    }
    return undefined;
  }

  private parseL2(l2Host: number, guestBase: number, table: Buffer): Promise<void> | undefined {
    this.l2Wanted.delete(l2Host);
    const x = 62 - (this.header.clusterBits - 8);
    const xMask = (1n << BigInt(x)) - 1n;
    let wait: Promise<void> | undefined;
    const chain = (p: Promise<void> | undefined): void => {
      if (p) wait = wait ? wait.then(() => p) : p;
    };
    for (let i = 0; i < this.cs / 8; i++) {
      const e = table.readBigUInt64BE(i * 8);
      if (e === 0n) continue;
      const guest = guestBase + i * this.cs;
      if (guest >= this.header.virtualSize) break;
      if (e & (1n << 62n)) {
        if (this.header.compressionType !== 0) {
          throw new InvalidImage('qcow2 zstd-compressed clusters are not supported; recompress with zlib or none');
        }
        const start = Number(e & xMask);
        const sectors = Number((e >> BigInt(x)) & ((1n << BigInt(62 - x)) - 1n));
        const end = Math.floor(start / 512) * 512 + (sectors + 1) * 512;
        this.compressed.push({ start, end, guest });
        for (let h = start - (start % this.cs); h < end; h += this.cs) {
          this.holdNeeds.set(h, (this.holdNeeds.get(h) ?? 0) + 1);
        }
        continue;
      }
      if (e & 1n) continue; // zero cluster: a hole
      const host = Number(e & OFFSET_MASK);
      if (host === 0) continue;
      if (host < this.pos - (this.pos % this.cs)) {
        const held = this.takeHeld(host);
        if (held) chain(this.writeGuest(guest, held, true));
        else if (this.deferred.has(host)) this.dataMap.set(host, guest);
        else throw new InvalidImage(`Corrupt qcow2: data cluster at ${host} lies in image metadata`);
      } else this.dataMap.set(host, guest);
    }
    chain(this.resolveCompressed());
    return wait;
  }

  private resolveCompressed(): Promise<void> | undefined {
    let wait: Promise<void> | undefined;
    for (let i = 0; i < this.compressed.length; ) {
      const c = this.compressed[i]!;
      const parts: Buffer[] = [];
      let ok = true;
      for (let h = c.start - (c.start % this.cs); h < c.end; h += this.cs) {
        const b = this.pending.get(h);
        if (!b) {
          ok = false;
          break;
        }
        parts.push(b);
      }
      if (!ok) {
        i++;
        continue;
      }
      const base = c.start - (c.start % this.cs);
      const raw = Buffer.concat(parts).subarray(c.start - base, c.end - base);
      let out: Buffer;
      try {
        out = inflateRawSync(raw, { finishFlush: 2 /* Z_SYNC_FLUSH: trailing sector padding is fine */ });
      } catch (e) {
        throw new InvalidImage(`Corrupt compressed qcow2 cluster at ${c.start}: ${errorMessage(e)}`);
      }
      if (out.length < this.cs) out = Buffer.concat([out, Buffer.alloc(this.cs - out.length)]);
      const p = this.writeGuest(c.guest, out.subarray(0, this.cs), true);
      if (p) wait = wait ? wait.then(() => p) : p;
      this.compressed.splice(i, 1);
      for (let h = base; h < c.end; h += this.cs) {
        const left = (this.holdNeeds.get(h) ?? 1) - 1;
        if (left <= 0) {
          this.holdNeeds.delete(h);
          this.takeHeld(h);
        } else this.holdNeeds.set(h, left);
      }
    }
    return wait;
  }

  /** Serialised writes at guest offsets (the writer is sequential with seeks). */
  private chainTail: Promise<void> = Promise.resolve();
  private chainBusy = false;

  private writeGuest(guest: number, data: Buffer, clusterStart: boolean): Promise<void> | undefined {
    if (clusterStart) {
      const c = guest / this.cs;
      this.covered[c >> 3]! |= 1 << (c & 7);
    }
    this.dataBytes += data.length;
    const go = (): Promise<void> | undefined => {
      const s = this.writer.seek(guest);
      if (s) return s.then(() => this.writer.write(data));
      return this.writer.write(data);
    };
    if (this.chainBusy) {
      this.chainTail = this.chainTail.then(go);
      return this.chainTail;
    }
    const p = go();
    if (!p) return undefined;
    this.chainBusy = true;
    this.chainTail = p.finally(() => {
      this.chainBusy = false;
    });
    return this.chainTail;
  }

  async end(): Promise<void> {
    // The file may end inside a cluster (compressed data is packed): complete that cluster with zeros.
    if (this.pos % this.cs !== 0 && this.curBuf) {
      this.curBuf.fill(0, this.curFill);
      const p = this.endCluster(this.pos - (this.pos % this.cs));
      if (p) await p;
    }
    await this.chainTail;
    if (!this.l1Done()) throw new InvalidImage('qcow2 image truncated: the L1 table never arrived');
    const lostTables = [...this.l2Wanted.keys()].filter((h) => !this.deferred.has(h)).length;
    if (lostTables > 0) throw new InvalidImage(`qcow2 image truncated: ${lostTables} L2 table(s) never arrived`);
    const missing = [...this.dataMap.keys()].filter((h) => h + this.cs > this.pos);
    if (missing.length > 0) throw new InvalidImage(`qcow2 image truncated: ${missing.length} data cluster(s) never arrived`);
  }

  /** After the whole-image checksum passed: fetch clusters that were only digested, verify, write. */
  async completeDeferred(): Promise<number> {
    let fetched = 0;
    const fetchVerified = async (h: number): Promise<Buffer> => {
      const buf = await this.opts.refetch!(h, h + this.cs);
      const digest = createHash('sha256').update(buf).digest();
      if (buf.length !== this.cs || !digest.equals(this.deferred.get(h)!)) {
        throw new InvalidImage(`qcow2 cluster at ${h} changed on the server between the stream and its re-fetch`);
      }
      fetched++;
      return buf;
    };
    // Tables first: they say which of the other deferred clusters are data.
    for (const [h, guest] of [...this.l2Wanted]) {
      if (this.deferred.has(h)) {
        const p = this.parseL2(h, guest, await fetchVerified(h));
        if (p) await p;
      }
    }
    const needed = [...this.deferred.keys()].filter((h) => this.dataMap.has(h) || this.holdNeeds.has(h)).sort((a, b) => a - b);
    for (const h of needed) {
      const buf = await fetchVerified(h);
      const guest = this.dataMap.get(h);
      if (guest !== undefined) await this.writeGuest(guest, buf, true);
      else {
        this.pending.set(h, buf);
        await this.resolveCompressed();
      }
    }
    await this.chainTail;
    if (this.compressed.length > 0) throw new InvalidImage(`${this.compressed.length} compressed qcow2 cluster(s) incomplete`);
    return fetched;
  }

  /** Guest ranges never written (unallocated, zero or compressed-away): [start, end) pairs, coalesced. */
  holes(): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    const n = Math.ceil(this.header.virtualSize / this.cs);
    let start = -1;
    for (let c = 0; c <= n; c++) {
      const set = c < n && (this.covered[c >> 3]! & (1 << (c & 7))) !== 0;
      if (c < n && !set) {
        if (start < 0) start = c;
      } else if (start >= 0) {
        out.push([start * this.cs, Math.min(c * this.cs, this.header.virtualSize)]);
        start = -1;
      }
    }
    return out;
  }

  abort(): void {}
}
