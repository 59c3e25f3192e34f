/** Checksum selection and checksums-file parsing, format detection, layout planning. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checksumPresenceError, expectedChecksum, parseChecksumFile } from '../../image/checksum.js';
import { declaredMatches, detectFormat } from '../../image/format.js';
import { planLayout } from '../../block/partition.js';

const h64 = 'ab'.repeat(32);
const h128 = 'cd'.repeat(64);

test('checksums file: bare digest, GNU and BSD lines, comments, missing name', () => {
  assert.equal(parseChecksumFile(`${h64}\n`, 'http://x/img.raw'), h64);
  assert.equal(parseChecksumFile(`# c\n${h128}  other.raw\n${h64} *img.raw\n`, 'http://x/a/img.raw'), h64);
  assert.equal(parseChecksumFile(`SHA512 (img.qcow2) = ${h128}\n`, 'http://x/img.qcow2?x=1'), h128);
  assert.throws(() => parseChecksumFile(`${h64}  other.raw\n${h64}  more.raw\n`, 'http://x/img.raw'), /does not contain name img\.raw/);
  assert.throws(() => parseChecksumFile('nothex\n', 'http://x/img.raw'), /Invalid checksum file/);
});

test('algorithm selection: os_hash pair first, legacy by length, errors', async () => {
  assert.deepEqual(await expectedChecksum({ id: 'i', urls: ['u'], os_hash_algo: 'sha512', os_hash_value: h128, checksum: 'a'.repeat(32) }), { algo: 'sha512', value: h128 });
  assert.deepEqual(await expectedChecksum({ id: 'i', urls: ['u'], checksum: h64 }), { algo: 'sha256', value: h64 });
  assert.deepEqual(await expectedChecksum({ id: 'i', urls: ['u'], checksum: 'e'.repeat(32) }), { algo: 'md5', value: 'e'.repeat(32) });
  await assert.rejects(expectedChecksum({ id: 'i', urls: ['u'], checksum: 'abc' }), /could not be identified/);
  await assert.rejects(expectedChecksum({ id: 'i', urls: ['u'] }), /Unable to verify image i/);
});

test('presence validation (IPA message)', () => {
  assert.match(checksumPresenceError({ id: 'i', urls: ['u'] }) ?? '', /Image checksum is not available/);
  assert.match(checksumPresenceError({ id: 'i', urls: ['u'], os_hash_algo: 'sha256' }) ?? '', /not available/);
  assert.equal(checksumPresenceError({ id: 'i', urls: ['u'], checksum: 'http://x/SUMS' }), null);
});

test('format detection by magic bytes, declared-format matching', () => {
  const pad = (b: number[]): Buffer => Buffer.concat([Buffer.from(b), Buffer.alloc(1024)]);
  assert.equal(detectFormat(pad([0x1f, 0x8b, 8])), 'gzip');
  assert.equal(detectFormat(pad([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0])), 'xz');
  assert.equal(detectFormat(pad([0x28, 0xb5, 0x2f, 0xfd])), 'zstd');
  assert.equal(detectFormat(pad([0x51, 0x46, 0x49, 0xfb])), 'qcow2');
  assert.equal(detectFormat(Buffer.concat([Buffer.from('KDMV'), Buffer.alloc(600)])), 'vmdk');
  assert.equal(detectFormat(Buffer.concat([Buffer.from('BZh9'), Buffer.alloc(600)])), 'bzip2');
  assert.equal(detectFormat(Buffer.alloc(4096)), 'raw');
  assert.ok(declaredMatches('raw', 'raw'));
  assert.ok(!declaredMatches('qcow2', 'raw'));
  assert.ok(!declaredMatches('raw', 'qcow2'));
  assert.ok(declaredMatches(null, 'qcow2'));
});

test('partition layout: order by boot mode and label, root last, too-small disk refused', () => {
  const base = { rootMb: 100, swapMb: 10, ephemeralMb: 20, ephemeralFormat: 'ext4', configdriveMb: 1, espMb: 50, preserveEphemeral: false, diskBytes: 1024 * 1024 * 1024 };
  assert.deepEqual(planLayout({ ...base, bootMode: 'uefi', diskLabel: 'gpt' }).map((p) => p.role), ['efi system partition', 'ephemeral', 'swap', 'configdrive', 'root']);
  assert.deepEqual(planLayout({ ...base, bootMode: 'bios', diskLabel: 'gpt' }).map((p) => p.role), ['BIOS Boot partition', 'ephemeral', 'swap', 'configdrive', 'root']);
  assert.deepEqual(planLayout({ ...base, bootMode: 'bios', diskLabel: 'msdos' }).map((p) => p.role), ['ephemeral', 'swap', 'configdrive', 'root']);
  assert.throws(() => planLayout({ ...base, bootMode: 'bios', diskLabel: 'msdos', diskBytes: 50 * 1024 * 1024 }), /too small/);
});
