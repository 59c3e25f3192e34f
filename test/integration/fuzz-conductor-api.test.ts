/**
 * Fuzzing the conductor over real HTTP (in-process, so Object.prototype is the server's own): seeded
 * fast-check sequences of node/port creates, JSON patches (paths from field names, filter names and prototype
 * words), list queries with random filters, sort keys and limits (repeated to warm the page cache), provision,
 * power and other node actions, lookups, heartbeats, malformed/deep/huge bodies, plus the boot server with
 * paths that try to climb out of its tree. Invariants on every response: no 5xx, Object.prototype unchanged,
 * no BMC password or agent token in a body (except the lookup that issues the token) nor in any log line,
 * nothing from outside the boot server's tree. Prints the counts; `npm run bench -- fuzz` runs longer.
 * Generators: test/fixtures/fuzz.ts; the run: test/fixtures/fuzz-targets.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fuzzConductor } from '../fixtures/fuzz-targets.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20261313);
const RUNS = Number(process.env.FUZZ_RUNS ?? 1500);
const BOOT_RUNS = Number(process.env.FUZZ_BOOT_RUNS ?? 1000);

test('conductor API and boot server under generated requests: no 5xx, no pollution, no secret, nothing outside the tree', { timeout: 110_000 }, async () => {
  const r = await fuzzConductor(SEED, RUNS, BOOT_RUNS);
  console.log(r.line);
  assert.deepEqual(r.failures, []);
  assert.equal(r.err5xx, 0);
});
