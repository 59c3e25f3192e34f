/**
 * Fuzzing the agent's command API over real HTTP: seeded fast-check command bodies (prototype keys in params,
 * malformed, deep and huge bodies), tokens right and wrong, reads of command lists and results, odd methods and
 * paths; against an agent holding a token and a standalone one, with fake commands only (nothing touches a
 * disk). Invariants: no 5xx, Object.prototype unchanged, the token in no response body and no log line (the
 * server's logger is captured at debug level). Prints the counts. The run: test/fixtures/fuzz-targets.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fuzzAgent } from '../fixtures/fuzz-targets.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20261313);
const RUNS = Number(process.env.FUZZ_AGENT_RUNS ?? 1500);

test('agent API under generated requests: no 5xx, no pollution, the token in no body and no log line', { timeout: 110_000 }, async () => {
  const r = await fuzzAgent(SEED, RUNS);
  console.log(r.line);
  assert.deepEqual(r.stats.failures, []);
  assert.equal(r.stats.err5xx, 0);
  assert.ok(r.stats.ok2xx * 10 >= r.stats.cases, `only ${r.stats.ok2xx} of ${r.stats.cases} requests succeeded`);
  assert.deepEqual(r.logLeaks.slice(0, 3), []);
});
