/**
 * Step 3c: pack the staged tree as a cpio newc archive (root-owned, sorted, reproducible) compressed with zstd
 * (the kernel decompresses zstd fast even under TCG; xz is seconds slower there). The expensive compression is
 * skipped when the tree hashes the same as the last packed one.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { finished } from 'node:stream/promises';
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

export async function packInitramfs(opts: PackOptions): Promise<PackResult> {
  const level = opts.level ?? 19;
  const compression = `zstd -${level}`;
  const entries: TreeEntry[] = await listTree(opts.stage);
  const treeHash = createHash('sha256').update(compression);
  for (const e of entries) {
    if (e.kind === 'file') e.sha256 = await sha256Stream(join(opts.stage, e.path));
    treeHash.update(`${e.path}\0${e.kind}\0${e.target ?? ''}\0${e.sha256 ?? ''}\n`);
  }
  const key = treeHash.digest('hex');
  const uncompressedBytes = entries.reduce((n, e) => n + e.bytes, 0);
  const dir = join(opts.cacheDir, 'initramfs');
  await mkdir(dir, { recursive: true });
  // One cached archive per level, so a --fast developer build doesn't evict the release one.
  const cachedFile = join(dir, `initramfs-${level}.zst`);
  const stampFile = join(dir, `stamp-${level}.json`);

  let cached = false;
  if (existsSync(cachedFile) && existsSync(stampFile)) {
    const stamp = JSON.parse(await readFile(stampFile, 'utf8')) as { key: string; sha256: string };
    if (stamp.key === key && (await sha256Stream(cachedFile)) === stamp.sha256) cached = true;
  }
  if (!cached) {
    const cpioFile = join(dir, `initramfs-${level}.cpio`);
    const list = `${entries.map((e) => e.path).join('\0')}\0`;
    await run('cpio', ['--null', '--create', '--format=newc', '--quiet', '--owner=0:0', '--reproducible', '-F', cpioFile], {
      cwd: opts.stage,
      input: list,
      quiet: true,
    });
    // The kernel's zstd decoder handles the default frame format; --long windows would need more RAM to unpack.
    await run('zstd', [`-${level}`, '-T0', '-q', '-f', cpioFile, '-o', cachedFile], { quiet: true, timeoutMs: 15 * 60_000 });
    await rm(cpioFile, { force: true });
    await writeFile(stampFile, JSON.stringify({ key, sha256: await sha256Stream(cachedFile) }));
  }
  await copyFile(cachedFile, opts.out);
  const s = await stat(opts.out);
  return { file: opts.out, bytes: s.size, sha256: await sha256Stream(opts.out), uncompressedBytes, compression, entries, cached };
}
