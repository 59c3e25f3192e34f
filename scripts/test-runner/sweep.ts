/**
 * The leftover sweep scripts/test.sh runs before and after the tests (and on SIGINT/SIGTERM).
 *
 * A test run is identified precisely, so engineers' runs sharing a machine never touch each other's things:
 * scripts/test.sh gives the tests TMPDIR=<run dir> (every fixture makes its temp dirs and loop backing files with
 * os.tmpdir()) and BMTS_TEST_RUN=<run dir's name> in the environment, which every process a test starts (QEMU,
 * ipmi_sim, agents, conductors, Ironic) inherits. Leftovers of a run are then:
 *   - processes whose /proc/PID/environ holds BMTS_TEST_RUN=<id>;
 *   - mounts of, or under, the run dir; md arrays with a member on one of the run's loop devices;
 *   - loop devices whose backing file is under the run dir;
 *   - network namespaces named `bmts-<run dir suffix>-*` (the lab rack, lab/netns.ts) and what runs in them;
 *   - entries left in the run dir.
 * `--phase before` sweeps runs whose runner (the PID in the dir name) is gone; `--phase after` sweeps this run and
 * exits 2 when anything was left. `--mode report` only lists (for developing on a shared machine).
 *
 *   node --import tsx scripts/test-runner/sweep.ts --phase after --run-dir /tmp/bmts-test-run-123-abc [--mode report]
 */
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { run } from '../../common/exec.js';

const RUN_DIR_PREFIX = 'bmts-test-run-';
const MARKER = 'BMTS_TEST_RUN';
/**
 * Not leaks: outside the ramdisk the agent keeps its log at $TMPDIR/baremetal-agent-PID.log on purpose
 * (agent/main.ts); tsx keeps its compile cache at $TMPDIR/tsx-UID.
 */
const KEPT = /^(baremetal-agent-\d+\.log|tsx-\d+)$/;

interface Options {
  phase: 'before' | 'after';
  runDir: string;
  clean: boolean;
}

function parseArgs(argv: string[]): Options {
  const get = (name: string): string | undefined => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const phase = get('--phase');
  const runDir = get('--run-dir');
  const mode = get('--mode') ?? 'clean';
  if ((phase !== 'before' && phase !== 'after') || !runDir || (mode !== 'clean' && mode !== 'report')) {
    throw new Error('usage: sweep.ts --phase before|after --run-dir DIR [--mode clean|report]');
  }
  return { phase, runDir, clean: mode === 'clean' };
}

/** The runner PID a run dir is named for (bmts-test-run-PID-XXXXXX). */
function runnerPid(runDir: string): number | undefined {
  const m = new RegExp(`^${RUN_DIR_PREFIX}(\\d+)-`).exec(basename(runDir));
  return m ? Number(m[1]) : undefined;
}

function alive(pid: number): boolean {
  return existsSync(`/proc/${pid}`);
}

/** Runs whose runner is gone: dirs next to ours with the prefix, plus any marker still in a live process. */
function staleRuns(parent: string, own: string): string[] {
  const dirs = readdirSync(parent)
    .filter((n) => n.startsWith(RUN_DIR_PREFIX) && !n.endsWith('.summary'))
    .map((n) => join(parent, n));
  const fromProcs = [...new Set(markedProcesses(() => true).map((p) => join(parent, p.run)))];
  return [...new Set([...dirs, ...fromProcs])].filter((d) => d !== own && !alive(runnerPid(d) ?? -1));
}

interface Proc {
  pid: number;
  run: string;
  cmd: string;
}

function markedProcesses(match: (run: string) => boolean): Proc[] {
  const out: Proc[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    let env: string;
    let cmd: string;
    try {
      env = readFileSync(`/proc/${name}/environ`, 'latin1');
      cmd = readFileSync(`/proc/${name}/cmdline`, 'latin1').split('\0').join(' ').trim();
    } catch {
      continue; // exited meanwhile, or a kernel thread
    }
    const entry = env.split('\0').find((e) => e.startsWith(`${MARKER}=`));
    const id = entry?.slice(MARKER.length + 1);
    if (id && match(id)) out.push({ pid: Number(name), run: id, cmd: cmd.slice(0, 160) });
  }
  return out;
}

interface Loop {
  name: string;
  backFile: string;
}

async function loopDevices(): Promise<Loop[]> {
  const r = await run('losetup', ['--list', '--json', '--output', 'NAME,BACK-FILE'], { quiet: true, okCodes: [0, 1] });
  if (!r.stdout.trim()) return [];
  const parsed = JSON.parse(r.stdout) as { loopdevices?: { name: string; 'back-file': string | null }[] };
  return (parsed.loopdevices ?? []).map((l) => ({ name: l.name, backFile: (l['back-file'] ?? '').replace(/ \(deleted\)$/, '') }));
}

/** md arrays (e.g. md0) with a member on one of `loops` (a member may be a partition, loop3p1). */
function mdArraysOver(loops: Loop[]): string[] {
  const names = new Set(loops.map((l) => basename(l.name)));
  if (!existsSync('/sys/block')) return [];
  return readdirSync('/sys/block')
    .filter((b) => b.startsWith('md'))
    .filter((md) => {
      let slaves: string[] = [];
      try {
        slaves = readdirSync(`/sys/block/${md}/slaves`);
      } catch {
        return false;
      }
      return slaves.some((s) => names.has(s.replace(/p\d+$/, '')));
    });
}

function mountsOver(runDir: string, loops: Loop[]): string[] {
  const devs = new Set(loops.map((l) => l.name));
  const lines = readFileSync('/proc/self/mounts', 'utf8').split('\n');
  const points: string[] = [];
  for (const line of lines) {
    const [src, target] = line.split(' ');
    if (!src || !target) continue;
    const mp = target.replace(/\\040/g, ' ');
    if (mp.startsWith(`${runDir}/`) || devs.has(src.replace(/p\d+$/, ''))) points.push(mp);
  }
  return points.reverse(); // innermost first
}

/** The lab racks of these runs: namespaces `bmts-<PID-XXXXXX>-...` (lab/netns.ts rackNamespaceName). */
async function runNamespaces(runDirs: string[]): Promise<string[]> {
  const r = await run('ip', ['netns', 'list'], { quiet: true, okCodes: [0, 1, 255] }).catch(() => ({ stdout: '' }));
  const names = r.stdout.split('\n').map((l) => l.trim().split(/\s+/)[0] ?? '').filter((n) => n.startsWith('bmts'));
  const prefixes = runDirs.map((d) => `bmts-${basename(d).slice(RUN_DIR_PREFIX.length)}-`);
  return names.filter((n) => prefixes.some((p) => n.startsWith(p)));
}

async function killAll(procs: Proc[]): Promise<void> {
  for (const p of procs) {
    try {
      process.kill(p.pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
  for (let i = 0; i < 50 && procs.some((p) => alive(p.pid)); i++) await delay(100);
  for (const p of procs.filter((x) => alive(x.pid))) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // gone between the check and the kill
    }
  }
}

/** Lists (and with `clean` removes) what the runs in `runDirs` left behind; returns the number of findings. */
async function sweep(runDirs: string[], clean: boolean, say: (s: string) => void): Promise<number> {
  if (runDirs.length === 0) return 0;
  const ids = new Set(runDirs.map((d) => basename(d)));
  let found = 0;
  const note = (what: string): void => {
    found++;
    say(`leftover: ${what}`);
  };

  const procs = markedProcesses((id) => ids.has(id));
  for (const p of procs) note(`process ${p.pid} (${p.cmd})`);
  if (clean) await killAll(procs);

  const under = (f: string): boolean => runDirs.some((d) => f.startsWith(`${d}/`));
  const loops = (await loopDevices()).filter((l) => under(l.backFile));
  for (const d of runDirs) {
    for (const mp of mountsOver(d, loops)) {
      note(`mount ${mp}`);
      if (clean) await run('umount', ['-l', mp], { okCodes: [0, 32] });
    }
  }
  for (const md of mdArraysOver(loops)) {
    note(`md array /dev/${md} over ${loops.map((l) => l.name).join(', ')}`);
    if (clean) await run('mdadm', ['--stop', `/dev/${md}`], { okCodes: [0, 1] });
  }
  for (const l of loops) {
    note(`loop device ${l.name} -> ${l.backFile}`);
    if (clean) await run('losetup', ['-d', l.name], { okCodes: [0, 1] });
  }
  for (const ns of await runNamespaces(runDirs)) {
    note(`network namespace ${ns}`);
    if (clean) {
      const pids = await run('ip', ['netns', 'pids', ns], { quiet: true, okCodes: [0, 1, 255] });
      for (const pid of pids.stdout.split('\n').map(Number).filter((p) => Number.isInteger(p) && p > 1)) {
        try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
      }
      await run('ip', ['netns', 'del', ns], { okCodes: [0, 1, 255] });
    }
  }
  for (const d of runDirs) {
    if (!existsSync(d)) continue;
    for (const entry of readdirSync(d)) {
      if (!KEPT.test(entry)) note(`temp ${join(d, entry)}`);
    }
    // Report mode still removes its own run dir when nothing was left in it (only the kept files).
    if (clean || found === 0) rmSync(d, { recursive: true, force: true });
  }
  return found;
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const say = (s: string): void => void process.stdout.write(`sweep(${o.phase}${o.clean ? '' : ', report only'}): ${s}\n`);
  if (o.phase === 'before') {
    const stale = staleRuns(dirname(o.runDir), o.runDir);
    const n = await sweep(stale, o.clean, say);
    // An earlier run's leak was that run's failure; this run starts clean and goes on.
    if (n > 0) say(`${n} leftover(s) of earlier runs ${o.clean ? 'removed' : 'found'}`);
    return;
  }
  const n = await sweep([o.runDir], o.clean, say);
  if (n > 0) {
    say(`${n} leftover(s): a test did not clean up after itself${o.clean ? ' (removed now)' : ''}`);
    process.exitCode = 2;
  }
}

await main();
