/**
 * The GPT backup after a whole-disk image was written to a disk larger than the image: the image's backup header
 * sits at the image's last LBA, not the disk's, and partitioning tools then call the table damaged. `sgdisk -e`
 * moves it, but every sgdisk that writes calls sync() (all dirty pages of the machine) and sleeps a second before
 * BLKRRPART (gdisk's DiskSync): 1-2 s of a deploy for a few sectors. This module writes the same bytes sgdisk -e
 * writes (test/integration/block-gpt.test.ts compares the whole device) for the case every image tool produces:
 * valid primary header and entries, a pure protective MBR. Anything else is left to sgdisk ('unsure').
 */
import { constants, promises as fsp } from 'node:fs';
import { basename, join } from 'node:path';
import { crc32 } from 'node:zlib';

const SIG = Buffer.from('EFI PART', 'latin1');

/** What moveGptBackupToEnd did. */
export type GptBackupOutcome =
  | 'not-gpt' // no "EFI PART" header at LBA 1: an MBR image, or no table at all
  | 'at-end' // the backup header is already at the disk's last LBA: nothing to do
  | 'moved' // backup entries and header written at the end, primary header (and protective MBR) updated
  | 'unsure'; // something this module does not handle (bad CRC, hybrid MBR, odd geometry): ask sgdisk

export interface DiskGeometry {
  sectorSize: number;
  bytes: number;
}

/** Logical sector size and size from sysfs (no process spawned), for a whole disk or a partition node. */
export async function diskGeometry(dev: string): Promise<DiskGeometry | null> {
  const real = await fsp.realpath(dev);
  if (!(await fsp.stat(real)).isBlockDevice()) return null; // a disk image file: its name says nothing in /sys
  const name = basename(real);
  const sys = `/sys/class/block/${name}`;
  const read = async (p: string): Promise<number | null> => {
    const v = await fsp.readFile(join(sys, p), 'utf8').catch(() => null); // absent attribute: try the next
    return v === null ? null : Number(v.trim());
  };
  const sectors512 = await read('size'); // sysfs counts 512-byte units whatever the logical block size
  const ss = (await read('queue/logical_block_size')) ?? (await read('../queue/logical_block_size'));
  if (sectors512 === null || ss === null || !(ss >= 512)) return null;
  return { sectorSize: ss, bytes: sectors512 * 512 };
}

function headerCrc(h: Buffer, size: number): number {
  const copy = Buffer.from(h.subarray(0, size));
  copy.writeUInt32LE(0, 16);
  return crc32(copy);
}

/** Cylinder/head/sector of an LBA as MBR entries store it (255 heads, 63 sectors; 0xFEFFFF beyond 1023 cylinders). */
function chs(lba: number): Buffer {
  const c = Math.floor(lba / (255 * 63));
  if (c > 1023) return Buffer.from([0xfe, 0xff, 0xff]);
  const h = Math.floor((lba % (255 * 63)) / 63);
  const s = (lba % 63) + 1;
  return Buffer.from([h, s | ((c >> 8) << 6), c & 0xff]);
}

/**
 * gdisk's MakeProtectiveMBR on an existing sector 0: boot code kept, disk signature and the two bytes after it
 * zeroed, one 0xEE entry from LBA 1 over the disk (capped at 2^32-1 sectors), the other entries empty.
 */
function protectiveMbr(old: Buffer, diskSectors: number): Buffer {
  const m = Buffer.from(old);
  m.fill(0, 440, 510);
  const len = Math.min(diskSectors - 1, 0xffffffff);
  const e = 446;
  m[e] = 0;
  chs(1).copy(m, e + 1);
  m[e + 4] = 0xee;
  chs(len).copy(m, e + 5);
  m.writeUInt32LE(1, e + 8);
  m.writeUInt32LE(len, e + 12);
  m[510] = 0x55;
  m[511] = 0xaa;
  return m;
}

/** A pure protective MBR: the 0x55AA signature and exactly one used entry, of type 0xEE (gdisk: validity gpt). */
function isPureProtective(mbr: Buffer): boolean {
  if (mbr[510] !== 0x55 || mbr[511] !== 0xaa) return false;
  let ee = 0;
  for (let i = 0; i < 4; i++) {
    const t = mbr[446 + i * 16 + 4];
    if (t === 0xee) ee++;
    else if (t !== 0) return false;
  }
  return ee === 1;
}

async function readAt(fh: fsp.FileHandle, len: number, pos: number): Promise<Buffer | null> {
  const b = Buffer.alloc(len);
  const { bytesRead } = await fh.read(b, 0, len, pos);
  return bytesRead === len ? b : null;
}

async function writeAt(fh: fsp.FileHandle, b: Buffer, pos: number): Promise<void> {
  let done = 0;
  while (done < b.length) {
    const { bytesWritten } = await fh.write(b, done, b.length - done, pos + done);
    if (bytesWritten <= 0) throw new Error(`short write at ${pos + done}`);
    done += bytesWritten;
  }
}

/**
 * Move the GPT backup (entries + header) to the end of `dev`, as `sgdisk -e` does (gdisk MoveSecondHeaderToEnd:
 * backup header at the last LBA, last usable LBA = disk sectors - first usable LBA, backup entries right after it;
 * the protective MBR rebuilt over the whole disk when the last usable LBA changes). Durable (fsync) on return.
 * Reads and writes through the page cache: callers drop nothing, the kernel keeps it coherent with O_DIRECT.
 */
export async function moveGptBackupToEnd(dev: string): Promise<GptBackupOutcome> {
  const geo = await diskGeometry(dev);
  if (!geo) return 'unsure';
  const ss = geo.sectorSize;
  const diskSectors = Math.floor(geo.bytes / ss);
  const last = diskSectors - 1;
  const fh = await fsp.open(dev, constants.O_RDWR);
  try {
    const mbr = await readAt(fh, ss, 0);
    const hdr = await readAt(fh, ss, ss);
    if (!mbr || !hdr) return 'unsure';
    if (!hdr.subarray(0, 8).equals(SIG)) return 'not-gpt';
    const hsize = hdr.readUInt32LE(12);
    if (hsize < 92 || hsize > ss || hdr.readUInt32LE(16) !== headerCrc(hdr, hsize)) return 'unsure';
    if (hdr.readBigUInt64LE(24) !== 1n) return 'unsure';
    const alt = Number(hdr.readBigUInt64LE(32));
    if (alt === last) return 'at-end';
    const firstUsable = Number(hdr.readBigUInt64LE(40));
    const entriesLba = Number(hdr.readBigUInt64LE(72));
    const count = hdr.readUInt32LE(80);
    const esize = hdr.readUInt32LE(84);
    if (alt > last || esize < 128 || esize % 8 !== 0 || count === 0 || count * esize > 4 * 1024 * 1024) return 'unsure';
    const entrySectors = Math.ceil((count * esize) / ss);
    const newLastUsable = diskSectors - firstUsable;
    const newEntriesLba = newLastUsable + 1;
    // The backup entries must fit between the last usable LBA and the backup header (gdisk assumes they do).
    if (entriesLba < 2 || newEntriesLba + entrySectors > last) return 'unsure';
    const entries = await readAt(fh, entrySectors * ss, entriesLba * ss);
    if (!entries || crc32(entries.subarray(0, count * esize)) !== hdr.readUInt32LE(88)) return 'unsure';
    for (let i = 0; i < count; i++) {
      const e = entries.subarray(i * esize, (i + 1) * esize);
      if (Number(e.readBigUInt64LE(40)) > newLastUsable) return 'unsure';
    }
    const oldLastUsable = Number(hdr.readBigUInt64LE(48));
    const rebuildMbr = oldLastUsable !== newLastUsable;
    if (rebuildMbr && !isPureProtective(mbr)) return 'unsure'; // hybrid or foreign MBR: gdisk's own rules apply

    const primary = Buffer.from(hdr);
    primary.writeBigUInt64LE(BigInt(last), 32);
    primary.writeBigUInt64LE(BigInt(newLastUsable), 48);
    primary.writeUInt32LE(headerCrc(primary, hsize), 16);
    const backup = Buffer.from(primary);
    backup.writeBigUInt64LE(BigInt(last), 24);
    backup.writeBigUInt64LE(1n, 32);
    backup.writeBigUInt64LE(BigInt(newEntriesLba), 72);
    backup.writeUInt32LE(headerCrc(backup, hsize), 16);

    // Backup first, primary last: until the primary header names the new backup, the old pair is still whole.
    await writeAt(fh, entries, newEntriesLba * ss);
    await writeAt(fh, backup, last * ss);
    await fh.datasync();
    if (rebuildMbr) await writeAt(fh, protectiveMbr(mbr, diskSectors), 0);
    await writeAt(fh, primary, ss);
    await fh.sync();
    return 'moved';
  } finally {
    await fh.close();
  }
}
