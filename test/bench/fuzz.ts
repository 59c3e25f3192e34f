/**
 * `npm run bench -- fuzz [--runs 20000] [--agent-runs 10000] [--boot-runs 5000] [--seed N]`: the fuzz suites of
 * test/integration/fuzz-*.test.ts with more generated requests (test/fixtures/fuzz-targets.ts). Prints the
 * 4xx kinds seen, each invariant violation, and as the last line
 * `fuzz cases=... distinct_4xx=... err5xx=... violations=...` (conductor and agent together). Exit code 1 on
 * any 5xx or violation.
 */
import { fuzzAgent, fuzzConductor } from '../fixtures/fuzz-targets.js';

function flag(args: string[], name: string, dflt: number): number {
  const i = args.indexOf(name);
  const v = i >= 0 ? Number(args[i + 1]) : dflt;
  if (!Number.isInteger(v) || v < 0) throw new Error(`${name} needs a non-negative integer`);
  return v;
}

export default async function main(args: string[]): Promise<void> {
  const seed = flag(args, '--seed', Date.now() % 1_000_000_007);
  const runs = flag(args, '--runs', 20_000);
  const agentRuns = flag(args, '--agent-runs', 10_000);
  const bootRuns = flag(args, '--boot-runs', 5_000);
  const t0 = process.hrtime.bigint();
  const conductor = await fuzzConductor(seed, runs, bootRuns);
  console.log(conductor.line);
  const agent = await fuzzAgent(seed, agentRuns);
  console.log(agent.line);
  const failures = [...conductor.failures, ...agent.stats.failures, ...agent.logLeaks.map((l) => `token in a log line: ${l.slice(0, 200)}`)];
  for (const f of failures) console.log(`VIOLATION ${f.slice(0, 400)}`);
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(`fuzz cases=${conductor.cases + agent.stats.cases} distinct_4xx=${conductor.kinds + agent.stats.kinds4xx.size} ` +
    `err5xx=${conductor.err5xx + agent.stats.err5xx} violations=${failures.length} seed=${seed} seconds=${s.toFixed(1)}`);
  if (failures.length || conductor.err5xx + agent.stats.err5xx) process.exitCode = 1;
}
