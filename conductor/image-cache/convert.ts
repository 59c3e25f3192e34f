/**
 * qcow2 -> raw for the master cache (Ironic's [DEFAULT]force_raw_images). The image is untrusted input:
 * qemu-img is told the format (never probing), and an image with a backing file or an external data file is
 * refused, since converting it would copy whatever host file it names into an image served to nodes.
 */
import { open } from 'node:fs/promises';
import { run } from '../../common/exec.js';
import { ImageCacheError } from '../boot-server.js';

const QCOW2_MAGIC = Buffer.from([0x51, 0x46, 0x49, 0xfb]);

export async function isQcow2(path: string): Promise<boolean> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(4);
    const { bytesRead } = await fh.read(buf, 0, 4, 0);
    return bytesRead === 4 && buf.equals(QCOW2_MAGIC);
  } finally {
    await fh.close();
  }
}

export interface Qcow2Info { virtualSize: number }

export async function inspectQcow2(path: string, timeoutMs: number): Promise<Qcow2Info> {
  const r = await run('qemu-img', ['info', '--output=json', '-f', 'qcow2', path], { timeoutMs, quiet: true });
  let info: Record<string, unknown>;
  try {
    info = JSON.parse(r.stdout) as Record<string, unknown>;
  } catch {
    throw new ImageCacheError('qemu-img info gave no JSON for the downloaded image');
  }
  if (info['backing-filename'] !== undefined || info['full-backing-filename'] !== undefined) {
    throw new ImageCacheError('refusing a qcow2 image with a backing file');
  }
  const specific = (info['format-specific'] as { data?: Record<string, unknown> } | undefined)?.data;
  if (specific?.['data-file'] !== undefined) throw new ImageCacheError('refusing a qcow2 image with an external data file');
  const virtualSize = Number(info['virtual-size']);
  if (!Number.isSafeInteger(virtualSize) || virtualSize < 0) throw new ImageCacheError('qemu-img info reported no virtual size');
  return { virtualSize };
}

export async function convertQcow2ToRaw(src: string, dst: string, timeoutMs: number): Promise<void> {
  await run('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', src, dst], { timeoutMs });
}
