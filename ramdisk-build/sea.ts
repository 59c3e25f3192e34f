/**
 * Step 2: the bundle becomes one executable with Node's single-executable-application support: a SEA blob
 * (`node --experimental-sea-config`) injected with postject into a copy of this machine's node binary.
 * Everything is local (pkg-style tools download prebuilt node binaries and can't work offline).
 * The node copy is stripped BEFORE injection: stripping a SEA afterwards breaks it (segfault).
 * Cached by the hash of the bundle, the node binary and postject's version.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { run } from '../common/exec.js';
import { getLogger } from '../common/logger.js';

const log = getLogger('ramdisk-sea');

/** The fuse Node 20 looks for to know a blob was injected (from the Node SEA docs). */
export const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

export interface SeaOptions {
  bundle: string;
  bundleSha256: string;
  cacheDir: string;
  /** node binary to embed (default: the one running this build). */
  nodeBinary?: string;
  /**
   * Node's V8 code cache in the blob (default on): spares the agent compiling its 1.9 MB bundle at every start
   * (natively 2.24 -> 1.24 s user for ten `--version` runs; seconds matter in an emulated ramdisk). Node 20
   * compiles a cached SEA main without a dynamic-import callback, so hardware-managers/loader.ts imports plugins
   * through a vm-compiled import() that has one.
   */
  useCodeCache?: boolean;
}

export interface SeaResult {
  file: string;
  sha256: string;
  bytes: number;
  nodeVersion: string;
  cached: boolean;
  /** What `EXE --version` printed. */
  version: string;
}

async function sha256File(file: string): Promise<string> {
  return createHash('sha256').update(await readFile(file)).digest('hex');
}

function postjectCli(): string {
  const req = createRequire(import.meta.url);
  return join(dirname(req.resolve('postject/package.json')), 'dist/cli.js');
}

export async function buildSea(opts: SeaOptions): Promise<SeaResult> {
  const node = opts.nodeBinary ?? process.execPath;
  const dir = join(opts.cacheDir, 'sea');
  await mkdir(dir, { recursive: true });
  const nodeStat = await stat(node);
  const nodeVersion = (await run(node, ['--version'], { quiet: true })).stdout.trim();
  const req = createRequire(import.meta.url);
  const postjectVersion = (req('postject/package.json') as { version: string }).version;
  const useCodeCache = opts.useCodeCache ?? true;
  const key = createHash('sha256')
    .update(JSON.stringify({ b: opts.bundleSha256, node, size: nodeStat.size, mtime: nodeStat.mtimeMs, nodeVersion, postjectVersion, useCodeCache }))
    .digest('hex')
    .slice(0, 16);
  const exe = join(dir, `baremetal-agent-${key}`);
  const smoke = async (): Promise<string> =>
    (await run(exe, ['--version'], { timeoutMs: 30_000, env: { NO_COLOR: '1' } })).stdout.trim();

  if (existsSync(exe)) {
    try {
      const version = await smoke();
      const s = await stat(exe);
      return { file: exe, sha256: await sha256File(exe), bytes: s.size, nodeVersion, cached: true, version };
    } catch {
      await rm(exe, { force: true });
    }
  }

  const blob = join(dir, 'sea-prep.blob');
  const config = join(dir, 'sea-config.json');
  await writeFile(
    config,
    JSON.stringify({ main: opts.bundle, output: blob, disableExperimentalSEAWarning: true, useCodeCache }),
  );
  await run(node, ['--experimental-sea-config', config], { quiet: true });
  const tmp = `${exe}.tmp`;
  await copyFile(node, tmp);
  await chmod(tmp, 0o755);
  await run('strip', ['--strip-all', tmp]);
  // postject prints LIEF warnings about '.note.100' section names: harmless.
  await run(process.execPath, [postjectCli(), tmp, 'NODE_SEA_BLOB', blob, '--sentinel-fuse', SEA_FUSE], { quiet: true });
  await rename(tmp, exe);
  // Keep only this executable: each one is ~90 MB.
  for (const f of await readdir(dir)) {
    if (f.startsWith('baremetal-agent-') && join(dir, f) !== exe) await rm(join(dir, f), { force: true });
  }
  const version = await smoke();
  const s = await stat(exe);
  log.info({ bytes: s.size, version }, 'agent executable built');
  return { file: exe, sha256: await sha256File(exe), bytes: s.size, nodeVersion, cached: false, version };
}
