/**
 * Step 3c: pack the staged tree as a cpio newc archive (root-owned, sorted, reproducible) compressed with zstd
 * (the kernel decompresses zstd fast even under TCG; xz is seconds slower there). The expensive compression is
 * skipped when the tree hashes the same as the last packed one.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { finished, pipeline } from 'node:stream/promises';
import { run } from '../common/exec.js';
import { listTree } from './rootfs.js';

export interface PackOptions {
  stage: string;
  out: string;
  cacheDir: string;
  /** zstd level (1..19; default 19: best ratio, ~1 min on two cores). */
  level?: number;
}

export interface TreeEntry {
  path: string;
  kind: 'file' | 'dir' | 'link' | 'other';
  bytes: number;
  target?: string;
  sha256?: string;
}

export interface PackResult {
  file: string;
  bytes: number;
  sha256: string;
  uncompressedBytes: number;
  compression: string;
  entries: TreeEntry[];
  cached: boolean;
}

async function sha256Stream(file: string): Promise<string> {
  const h = createHash('sha256');
  const s = createReadStream(file);
  s.on('data', (c) => h.update(c));
  await finished(s);
  return h.digest('hex');
}

/**
 * Parts packed as their own segments (entries under these paths, with their parent directories repeated): the
 * agent changes with every agent edit and plugins with every --add-manager; the base system almost never does.
 */
const OWN_SEGMENTS: Array<{ name: string; prefix: string }> = [
  { name: 'agent', prefix: './usr/bin/baremetal-agent' },
  { name: 'managers', prefix: './usr/lib/baremetal-agent/managers/' },
];

interface Segment {
  name: string;
  entries: TreeEntry[];
}

/** Compress one cpio segment, or reuse the cached one when its entries hash the same. */
async function packSegment(seg: Segment, stage: string, dir: string, level: number): Promise<{ file: string; cached: boolean }> {
  const h = createHash('sha256').update(`zstd -${level}`);
  for (const e of seg.entries) h.update(`${e.path}\0${e.kind}\0${e.target ?? ''}\0${e.sha256 ?? ''}\n`);
  const key = h.digest('hex');
  // One cached archive per segment and level, so a --fast developer build doesn't evict the release one.
  const file = join(dir, `${seg.name}-${level}.zst`);
  const stampFile = join(dir, `${seg.name}-${level}.json`);
  if (existsSync(file) && existsSync(stampFile)) {
    const stamp = JSON.parse(await readFile(stampFile, 'utf8')) as { key: string; sha256: string };
    if (stamp.key === key && (await sha256Stream(file)) === stamp.sha256) return { file, cached: true };
  }
  const cpioFile = join(dir, `${seg.name}-${level}.cpio`);
  const list = `${seg.entries.map((e) => e.path).join('\0')}\0`;
  await run('cpio', ['--null', '--create', '--format=newc', '--quiet', '--owner=0:0', '--reproducible', '-F', cpioFile], {
    cwd: stage,
    input: list,
    quiet: true,
  });
  // The kernel's zstd decoder handles the default frame format; --long windows would need more RAM to unpack.
  await run('zstd', [`-${level}`, '-T0', '-q', '-f', cpioFile, '-o', file], { quiet: true, timeoutMs: 15 * 60_000 });
  await rm(cpioFile, { force: true });
  await writeFile(stampFile, JSON.stringify({ key, sha256: await sha256Stream(file) }));
  return { file, cached: false };
}

/**
 * The kernel unpacks concatenated compressed cpio archives one after the other, so the initramfs is a few
 * segments (base system, agent executable, vendor plugins), each compressed and cached on its own.
 */
export async function packInitramfs(opts: PackOptions): Promise<PackResult> {
  const level = opts.level ?? 19;
  const compression = `zstd -${level}`;
  const entries: TreeEntry[] = await listTree(opts.stage);
  for (const e of entries) {
    if (e.kind === 'file') e.sha256 = await sha256Stream(join(opts.stage, e.path));
  }
  const inSegment = (e: TreeEntry, prefix: string): boolean => e.path === prefix || (prefix.endsWith('/') && e.path.startsWith(prefix));
  const segments: Segment[] = [
    { name: 'base', entries: entries.filter((e) => !OWN_SEGMENTS.some((o) => inSegment(e, o.prefix))) },
  ];
  for (const o of OWN_SEGMENTS) {
    const own = entries.filter((e) => inSegment(e, o.prefix));
    if (own.length === 0) continue;
    const parents = entries.filter((e) => e.kind === 'dir' && o.prefix.startsWith(`${e.path}/`));
    segments.push({ name: o.name, entries: [...parents, ...own] });
  }
  const uncompressedBytes = entries.reduce((n, e) => n + e.bytes, 0);
  const dir = join(opts.cacheDir, 'initramfs');
  await mkdir(dir, { recursive: true });
  let cached = true;
  const parts: string[] = [];
  for (const seg of segments) {
    if (seg.entries.length === 0) continue;
    const r = await packSegment(seg, opts.stage, dir, level);
    cached &&= r.cached;
    parts.push(r.file);
  }
  const out = createWriteStream(opts.out);
  let written = 0;
  for (const part of parts) {
    await pipeline(createReadStream(part), out, { end: false });
    written += (await stat(part)).size;
  }
  // Zero padding to a multiple of 4 bytes (the initramfs format allows it between archives): the Linux EFI stub
  // loads several initrd= files back to back without aligning them, and the kernel only takes an uncompressed
  // cpio that follows (the API CA initrd, conductor/drivers/ca-initrd.ts) at a 4-byte aligned offset; otherwise
  // "Initramfs unpacking failed: invalid magic" and the CA is missing in UEFI boots through iPXE.
  out.write(Buffer.alloc((4 - (written % 4)) % 4));
  out.end();
  await finished(out);
  const s = await stat(opts.out);
  return { file: opts.out, bytes: s.size, sha256: await sha256Stream(opts.out), uncompressedBytes, compression, entries, cached };
}
