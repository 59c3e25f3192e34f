/**
 * Fuzzing the agent's command API over real HTTP: seeded fast-check command bodies (prototype keys in params,
 * malformed, deep and huge bodies), tokens right and wrong, reads of command lists and results, odd methods and
 * paths; against an agent holding a token and a standalone one, with fake commands only (nothing touches a
 * disk). Invariants: no 5xx, Object.prototype unchanged, the token in no response body and no log line (the
 * server's logger is captured at debug level). Prints the counts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import fc from 'fast-check';
import { pino } from 'pino';
import { z } from 'zod';
import { CommandExecutor } from '../../agent/commands/executor.js';
import { CommandRegistry, defineCommand } from '../../agent/commands/registry.js';
import { createApp, startServer } from '../../agent/server.js';
import { agentRequests, newStats, runSequence, summary, type FuzzStats } from '../fixtures/fuzz.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20261313);
const RUNS = Number(process.env.FUZZ_AGENT_RUNS ?? 1500);
const TOKEN = 'agent-fuzz-token-0123456789abcdefghijklmnop';

function registry(): CommandRegistry {
  const r = new CommandRegistry();
  r.register('fake', {
    echo: defineCommand({ async: false, params: z.object({ value: z.string() }), run: async (p) => ({ value: p.value }) }),
    text: { async: false, run: async () => 'hello' },
    nothing: { async: true, run: async () => undefined },
    fail: { async: false, run: async () => { throw new Error('boom'); } },
  });
  return r;
}

export interface AgentFuzzResult {
  line: string;
  stats: FuzzStats;
  logLeaks: string[];
}

/** Runs `runs` generated requests against an agent holding a token, and as many against a standalone one. */
export async function fuzzAgent(seed: number, runs: number): Promise<AgentFuzzResult> {
  const lines: string[] = [];
  const sink = new Writable({ write(chunk: Buffer, _enc, cb) { lines.push(...chunk.toString('utf8').split('\n').filter(Boolean)); cb(); } });
  const log = pino({ level: 'debug' }, sink);
  const stats = newStats();
  for (const standalone of [false, true]) {
    const executor = new CommandExecutor(registry(), { log, progressIntervalMs: 50 });
    const app = createApp({ executor, token: () => (standalone ? null : TOKEN), standalone, requireTokenForReads: false,
      startedAt: 1, bodyLimitBytes: 1024 * 1024, log });
    const srv = await startServer(app, { host: '127.0.0.1', port: 0 });
    try {
      const reqs = fc.sample(agentRequests(TOKEN), { seed: seed + (standalone ? 7 : 0), numRuns: runs });
      await runSequence(`http://127.0.0.1:${srv.port}`, reqs, stats, { secrets: () => [TOKEN] });
    } finally {
      await srv.close();
    }
  }
  await new Promise((r) => setImmediate(r));
  const logLeaks = lines.filter((l) => l.includes(TOKEN));
  const line = summary('fuzz-agent', stats, { log_lines: lines.length, log_leaks: logLeaks.length, seed });
  for (const [k, n] of [...stats.kinds4xx].sort((a, b) => b[1] - a[1]).slice(0, 8)) console.log(`  ${n}\t${k}`);
  return { line, stats, logLeaks };
}

test('agent API under generated requests: no 5xx, no pollution, the token in no body and no log line', { timeout: 110_000 }, async () => {
  const r = await fuzzAgent(SEED, RUNS);
  console.log(r.line);
  assert.deepEqual(r.stats.failures, []);
  assert.equal(r.stats.err5xx, 0);
  assert.deepEqual(r.logLeaks.slice(0, 3), []);
});
