/**
 * A bench conductor in its own process (support/conductor-server.ts bundled by esbuild, run by plain node with
 * the conductor's V8 flags as production runs dist/), and what the fleet bench reads of it: CPU time and RSS from /proc.
 */
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { spawnLong } from '../../../common/exec.js';
import { CONDUCTOR_NODE_FLAGS } from '../../../conductor/node-flags.js';

const ROOT = resolve(fileURLToPath(new URL('../../..', import.meta.url)));

export interface BenchConductor { proc: ReturnType<typeof spawnLong>; pid: number; url: string }
export interface BenchConductorOptions { databaseUrl?: string; host?: string; restrictLookup?: boolean }

/** Bundles the bench conductor into build/bench (inside the repo so bare imports resolve to node_modules). */
export async function bundleBenchConductor(): Promise<string> {
  const out = join(ROOT, 'build/bench/conductor-server.mjs');
  await build({ entryPoints: [join(ROOT, 'test/bench/support/conductor-server.ts')], outfile: out, bundle: true,
    platform: 'node', format: 'esm', target: 'node20', packages: 'external', logLevel: 'warning' });
  return out;
}

/** Starts the conductor process and resolves once it prints READY. */
export async function startBenchConductor(bundle: string, port: number, dir: string, opts: BenchConductorOptions = {}):
  Promise<BenchConductor> {
  const nodeFlags = process.env.BENCH_CHILD_NODE_FLAGS?.split(' ').filter(Boolean) ?? [];
  // Loaded from -e so that process.argv[1] is not the bundle (conductor/main.ts would run its CLI otherwise).
  const entry = ['--input-type=module', '-e', `const m = await import(${JSON.stringify(bundle)}); ` +
    `await m.serveBenchConductor(${port}, ${JSON.stringify(dir)}, ${JSON.stringify(opts)});`];
  const child = spawnLong(process.execPath, [...CONDUCTOR_NODE_FLAGS, ...nodeFlags, ...entry], { cwd: ROOT, env: { LOG_LEVEL: 'warn' } });
  child.catch(() => undefined); // its exit is checked where it matters; this only keeps a kill from being an unhandled rejection
  const c: BenchConductor = { proc: child, pid: child.pid ?? 0, url: `http://127.0.0.1:${port}` };
  try {
    await new Promise<void>((res, rej) => {
      const timer = setTimeout(() => rej(new Error('conductor did not start')), 60_000);
      child.stdout?.on('data', (d: Buffer) => { if (d.toString().includes('READY')) { clearTimeout(timer); res(); } });
      void child.then(() => rej(new Error('conductor exited')));
    });
  } catch (e) {
    await stopBenchConductor(c);
    throw e;
  }
  return c;
}

export async function stopBenchConductor(c: BenchConductor): Promise<void> {
  c.proc.kill('SIGTERM');
  const t = setTimeout(() => c.proc.kill('SIGKILL'), 10_000);
  await c.proc.catch(() => undefined);
  clearTimeout(t);
}

/** CPU time (user+system) the process has used so far, ms (clock ticks at 100 Hz). */
export async function cpuMs(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

export async function rssMib(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
}
