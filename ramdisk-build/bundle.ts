/**
 * Step 1: esbuild turns the agent (agent/main.ts and everything it imports, the built-in hardware managers
 * included) into one CommonJS file that a Node SEA can run. Cached: the inputs esbuild reported last time are
 * re-hashed, and when none changed the previous bundle is reused.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import esbuild from 'esbuild';
import { getLogger } from '../common/logger.js';

const log = getLogger('ramdisk-bundle');

export interface BundleOptions {
  /** Repository root (agent/, common/, node_modules/ live here). */
  root: string;
  cacheDir: string;
  /** Force the stand-in agent even when agent/main.ts exists (tests of the pipeline itself). */
  devAgent?: boolean;
  minify?: boolean;
}

export interface BundleResult {
  file: string;
  sha256: string;
  bytes: number;
  /** 'agent/main.ts' or 'ramdisk-build/dev-agent.ts'. */
  entry: string;
  cached: boolean;
  inputs: number;
}

interface Stamp {
  key: string;
  inputs: Record<string, string>;
  sha256: string;
  bytes: number;
  entry: string;
}

async function sha256File(file: string): Promise<string> {
  return createHash('sha256').update(await readFile(file)).digest('hex');
}

/**
 * The generated entry answers `--version` before the agent module is even evaluated (so the build can smoke-test
 * the executable without config or hardware), then imports the agent lazily.
 */
function entrySource(root: string, agentMain: string): string {
  const protocol = JSON.stringify(join(root, 'protocol/agent-api.ts'));
  return [
    `import { AGENT_VERSION } from ${protocol};`,
    `if (process.argv.slice(2).some((a) => a === '--version' || a === '-V')) {`,
    '  process.stdout.write(`baremetal-agent ${AGENT_VERSION}\\n`);',
    '} else {',
    `  import(${JSON.stringify(agentMain)}).catch((e) => { console.error('baremetal-agent: failed to start:', e); process.exit(1); });`,
    '}',
    '',
  ].join('\n');
}

export async function bundleAgent(opts: BundleOptions): Promise<BundleResult> {
  const root = resolve(opts.root);
  const dir = join(opts.cacheDir, 'bundle');
  await mkdir(dir, { recursive: true });
  const realMain = join(root, 'agent/main.ts');
  const useDev = opts.devAgent === true || !existsSync(realMain);
  if (useDev && opts.devAgent !== true) {
    log.warn('agent/main.ts does not exist yet: bundling the stand-in ramdisk-build/dev-agent.ts');
  }
  const agentMain = useDev ? join(root, 'ramdisk-build/dev-agent.ts') : realMain;
  const entryRel = useDev ? 'ramdisk-build/dev-agent.ts' : 'agent/main.ts';
  const entryFile = join(dir, 'entry.mjs');
  const outFile = join(dir, 'agent.cjs');
  const stampFile = join(dir, 'stamp.json');
  const entryText = entrySource(root, agentMain);
  const buildOptions = {
    entryPoints: [entryFile],
    bundle: true,
    platform: 'node' as const,
    target: 'node20',
    format: 'cjs' as const,
    minify: opts.minify ?? true,
    // The SEA main script is CJS: import.meta.url would be undefined. Point it at the running file instead, so
    // an agent's "am I the main module" check (import.meta.url vs argv[1]) holds in the SEA as in `node x.cjs`.
    define: { 'import.meta.url': '__bmtsImportMetaUrl' },
    banner: { js: 'var __bmtsImportMetaUrl = require("url").pathToFileURL(__filename).href;' },
    alias: { 'supports-color': join(root, 'ramdisk-build/files/supports-color.cjs') },
    legalComments: 'none' as const,
    logLevel: 'warning' as const,
    metafile: true,
    outfile: outFile,
  };
  const key = createHash('sha256')
    .update(JSON.stringify({ esbuild: esbuild.version, buildOptions, entryText }))
    .digest('hex');

  if (existsSync(stampFile) && existsSync(outFile)) {
    try {
      const stamp = JSON.parse(await readFile(stampFile, 'utf8')) as Stamp;
      if (stamp.key === key) {
        let same = true;
        for (const [file, hash] of Object.entries(stamp.inputs)) {
          if (!existsSync(file) || (await sha256File(file)) !== hash) {
            same = false;
            break;
          }
        }
        if (same && (await sha256File(outFile)) === stamp.sha256) {
          return { file: outFile, sha256: stamp.sha256, bytes: stamp.bytes, entry: stamp.entry, cached: true, inputs: Object.keys(stamp.inputs).length };
        }
      }
    } catch {
      // unreadable stamp: rebuild
    }
  }

  await writeFile(entryFile, entryText);
  const result = await esbuild.build({ ...buildOptions, absWorkingDir: root });
  const inputs: Record<string, string> = {};
  for (const rel of Object.keys(result.metafile?.inputs ?? {})) {
    const file = isAbsolute(rel) ? rel : join(root, rel);
    if (existsSync(file)) inputs[file] = await sha256File(file);
  }
  const data = await readFile(outFile);
  const stamp: Stamp = {
    key,
    inputs,
    sha256: createHash('sha256').update(data).digest('hex'),
    bytes: data.length,
    entry: entryRel,
  };
  await writeFile(stampFile, JSON.stringify(stamp, null, 1));
  log.info({ bytes: stamp.bytes, inputs: Object.keys(inputs).length, entry: entryRel }, 'agent bundled');
  return { file: outFile, sha256: stamp.sha256, bytes: stamp.bytes, entry: entryRel, cached: false, inputs: Object.keys(inputs).length };
}
