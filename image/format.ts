/** Image format by magic bytes (never by file name or the declared disk_format alone). */

export type Compression = 'gzip' | 'xz' | 'zstd';
export type ImageFormat = 'raw' | 'qcow2' | Compression | 'bzip2' | 'vmdk' | 'vhdx' | 'vdi' | 'vpc' | 'qed' | 'luks';

export const COMPRESSIONS: readonly ImageFormat[] = ['gzip', 'xz', 'zstd'];

const starts = (b: Buffer, sig: number[] | string, at = 0): boolean => {
  const bytes = typeof sig === 'string' ? Buffer.from(sig, 'latin1') : Buffer.from(sig);
  return b.length >= at + bytes.length && b.subarray(at, at + bytes.length).equals(bytes);
};

/** `head` should hold the first few KiB (at least 512 bytes unless the file is shorter). */
export function detectFormat(head: Buffer): ImageFormat {
  if (starts(head, [0x1f, 0x8b])) return 'gzip';
  if (starts(head, [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])) return 'xz';
  if (starts(head, [0x28, 0xb5, 0x2f, 0xfd])) return 'zstd';
  if (starts(head, 'BZh') && head.length > 3 && head[3]! >= 0x31 && head[3]! <= 0x39) return 'bzip2';
  if (starts(head, [0x51, 0x46, 0x49, 0xfb])) return 'qcow2';
  if (starts(head, [0x51, 0x45, 0x44, 0x00])) return 'qed';
  if (starts(head, 'KDMV') || starts(head, '# Disk DescriptorFile')) return 'vmdk';
  if (starts(head, 'vhdxfile')) return 'vhdx';
  if (starts(head, 'conectix')) return 'vpc';
  if (starts(head, [0x7f, 0x10, 0xda, 0xbe], 0x40)) return 'vdi';
  if (starts(head, [0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe])) return 'luks';
  return 'raw';
}

/** Declared disk_format values that mean "whatever it is" (no mismatch check). */
export function declaredMatches(declared: string | null | undefined, actual: ImageFormat): boolean {
  if (!declared || declared === 'unknown' || declared === 'bare') return true;
  if (declared === 'raw' || declared === 'gpt' || declared === 'iso') return actual === 'raw';
  return declared === actual;
}
