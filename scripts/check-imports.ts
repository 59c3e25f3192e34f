/**
 * The import rules of README.md "Layout", checked before the tests (scripts/test.sh) so a knot fails CI:
 *   1. no import circles (dpdm over every TypeScript source; type-only imports are erased first, as with `dpdm -T`,
 *      since they do not load anything);
 *   2. imports run one way: agent -> hardware-managers -> image -> block -> protocol -> common, and
 *      conductor -> protocol -> common; agent and conductor never import each other (type-only imports count here).
 * Exits 1 and prints each offending chain. Usage: tsx scripts/check-imports.ts [--quiet]
 */
import { existsSync, readdirSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseCircular, parseDependencyTree, type DependencyTree } from 'dpdm';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));

/** Every top-level folder with TypeScript: a new folder must be added here (and to ALLOWED if it is production). */
const SOURCES = ['common', 'protocol', 'block', 'image', 'hardware-managers', 'agent', 'conductor', 'ramdisk-build', 'lab', 'scripts', 'test'];

/**
 * What each production folder may import (besides itself). Folders not listed here (ramdisk-build, lab,
 * scripts, test) are tools around the programs and may import anything, but nothing production imports them.
 */
const ALLOWED: Record<string, readonly string[]> = {
  common: [],
  protocol: ['common'],
  block: ['protocol', 'common'],
  image: ['block', 'protocol', 'common'],
  'hardware-managers': ['image', 'block', 'protocol', 'common'],
  agent: ['hardware-managers', 'image', 'block', 'protocol', 'common'],
  conductor: ['protocol', 'common'],
};

function folderOf(file: string): string {
  const rel = relative(ROOT, file).split('\\').join('/');
  return rel.includes('/') ? rel.slice(0, rel.indexOf('/')) : '.';
}

function rel(file: string): string {
  return relative(ROOT, file).split('\\').join('/');
}

function hasTs(dir: string): boolean {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.isDirectory() ? e.name !== 'node_modules' && hasTs(join(dir, e.name)) : e.name.endsWith('.ts')) return true;
  }
  return false;
}

/** Top-level folders (and the root itself) holding TypeScript that SOURCES does not name. */
function unlistedFolders(): string[] {
  const skip = new Set(['node_modules', 'dist', 'build', ...SOURCES]);
  const out: string[] = [];
  for (const e of readdirSync(ROOT, { withFileTypes: true })) {
    if (e.name.startsWith('.') || skip.has(e.name)) continue;
    if (e.isDirectory() ? hasTs(join(ROOT, e.name)) : e.name.endsWith('.ts')) out.push(e.name);
  }
  return out;
}

/** Each import edge whose target folder the issuer's folder may not import. */
function layerViolations(tree: DependencyTree): string[] {
  const out: string[] = [];
  for (const [issuer, deps] of Object.entries(tree)) {
    if (!deps) continue;
    const from = folderOf(resolve(ROOT, issuer));
    const allowed = ALLOWED[from];
    if (!allowed) continue;
    for (const d of deps) {
      // Unresolved, node: built-ins and packages are not ours to layer.
      if (!d.id || d.id.includes('node_modules') || !existsSync(resolve(ROOT, d.id))) continue;
      const to = folderOf(resolve(ROOT, d.id));
      if (to === from || allowed.includes(to)) continue;
      out.push(`${rel(resolve(ROOT, issuer))} -> ${rel(resolve(ROOT, d.id))}  (${from}/ may import only ${allowed.length ? allowed.map((a) => `${a}/`).join(', ') : 'nothing outside itself'})`);
    }
  }
  return out.sort();
}

async function main(): Promise<number> {
  const quiet = process.argv.includes('--quiet');
  const parse = (transform: boolean): Promise<DependencyTree> =>
    parseDependencyTree(SOURCES.map((dir) => `${dir}/**/*.ts`), {
      cwd: ROOT,
      context: ROOT,
      transform,
      skipDynamicImports: false,
      tsconfig: resolve(ROOT, 'tsconfig.json'),
    });
  const tree = await parse(false);
  const runtimeTree = await parse(true);
  const files = Object.keys(tree).filter((f) => !f.includes('node_modules'));
  const unknown = unlistedFolders();
  const circles = parseCircular(runtimeTree).map((c) => c.map((f) => rel(resolve(ROOT, f))));
  const layers = layerViolations(tree);
  let failed = false;
  if (circles.length > 0) {
    failed = true;
    console.error(`check-imports: ${circles.length} import circle(s):`);
    for (const [i, c] of circles.entries()) console.error(`  ${i + 1}) ${[...c, c[0]].join(' -> ')}`);
  }
  if (layers.length > 0) {
    failed = true;
    console.error(`check-imports: ${layers.length} import(s) against the layer direction (README.md "Layout"):`);
    for (const l of layers) console.error(`  ${l}`);
  }
  if (unknown.length > 0) {
    failed = true;
    console.error(`check-imports: sources outside the known folders (add them to SOURCES/ALLOWED): ${unknown.join(', ')}`);
  }
  if (failed) {
    console.error('check-imports: FAILED');
    return 1;
  }
  if (!quiet) console.log(`check-imports: ${files.length} files, no circles, layer direction kept`);
  return 0;
}

process.exitCode = await main();
