/**
 * Splits the test files into lanes for scripts/test.sh: `machine` (the files of test/machine-lane.txt, which boot
 * VMs or run many processes and must not share the lane's core with each other) and `light1..N` (the rest).
 * Every lane runs its files one at a time; the lanes run side by side. The light files are handed out longest
 * first to whichever lane has the least work so far (the machine lane included, after its own files), using the
 * seconds in test/lane-weights.txt (8 s for a file not listed), so the lanes end at about the same time.
 *
 * Usage: tsx scripts/test-runner/lanes.ts LANES FILE... → one `lane<TAB>file` line per file.
 */
import { readFileSync } from 'node:fs';

const DEFAULT_SECONDS = 8;
/** What starting a file costs besides its tests (node, tsx, imports), measured per file on this suite. */
const FILE_OVERHEAD_SECONDS = 6;

function lines(path: string): string[] {
  try {
    return readFileSync(path, 'utf8').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  } catch {
    return [];
  }
}

export function assignLanes(files: readonly string[], laneCount: number, machineFiles: ReadonlySet<string>,
  weights: ReadonlyMap<string, number>): Map<string, string[]> {
  const weight = (f: string): number => (weights.get(f) ?? DEFAULT_SECONDS) + FILE_OVERHEAD_SECONDS;
  const names = ['machine', ...Array.from({ length: Math.max(0, laneCount - 1) }, (_, i) => `light${i + 1}`)];
  const lanes = new Map(names.map((n) => [n, [] as string[]]));
  const load = new Map(names.map((n) => [n, 0]));
  for (const f of files) {
    if (machineFiles.has(f) || laneCount === 1) {
      lanes.get('machine')?.push(f);
      load.set('machine', (load.get('machine') ?? 0) + weight(f));
    }
  }
  const rest = files.filter((f) => !lanes.get('machine')?.includes(f)).sort((a, b) => weight(b) - weight(a) || a.localeCompare(b));
  for (const f of rest) {
    let best = names[0] as string;
    for (const n of names) if ((load.get(n) ?? 0) < (load.get(best) ?? 0)) best = n;
    lanes.get(best)?.push(f);
    load.set(best, (load.get(best) ?? 0) + weight(f));
  }
  for (const [n, fs] of lanes) if (fs.length === 0) lanes.delete(n);
  return lanes;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [count, ...files] = process.argv.slice(2);
  const laneCount = Number(count);
  if (!Number.isInteger(laneCount) || laneCount < 1) {
    console.error(`lanes: LANES must be a positive integer, got ${count}`);
    process.exit(2);
  }
  const machine = new Set(lines('test/machine-lane.txt'));
  const weights = new Map<string, number>();
  for (const l of lines('test/lane-weights.txt')) {
    const [f, s] = l.split(/\s+/);
    if (f && s && Number.isFinite(Number(s))) weights.set(f, Number(s));
  }
  for (const [lane, fs] of assignLanes(files, laneCount, machine, weights)) for (const f of fs) console.log(`${lane}\t${f}`);
}
