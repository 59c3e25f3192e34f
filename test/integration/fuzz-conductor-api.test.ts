/**
 * Fuzzing the conductor over real HTTP (in-process, so Object.prototype is the server's own): seeded
 * fast-check sequences of node/port creates, JSON patches (paths from field names, filter names and prototype
 * words), list queries with random filters, sort keys and limits (repeated to warm the page cache), provision,
 * power and other node actions, lookups, heartbeats, malformed/deep/huge bodies, plus the boot server with
 * paths that try to climb out of its tree. Invariants on every response: no 5xx, Object.prototype unchanged,
 * no BMC password or agent token in a body (except the lookup that issues the token) nor in any log line,
 * nothing from outside the boot server's tree. Prints the counts; `npm run bench -- fuzz` runs longer.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { addLogFile, setLogLevel } from '../../common/logger.js';
import { startBootServer } from '../../conductor/boot-server.js';
import { startTestConductor } from '../fixtures/conductor.js';
import { bootServerPath, conductorRequests, newStats, runSequence, summary, type ConductorPool, type FuzzRequest } from '../fixtures/fuzz.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20261313);
const RUNS = Number(process.env.FUZZ_RUNS ?? 1500);
const BOOT_RUNS = Number(process.env.FUZZ_BOOT_RUNS ?? 1000);
const BMC_PASSWORD = 'fuzz-secret-pw';

export interface ConductorFuzzResult {
  line: string;
  err5xx: number;
  failures: string[];
}

/** The whole conductor fuzz: also what test/bench/fuzz.ts runs with bigger numbers. */
export async function fuzzConductor(seed: number, runs: number, bootRuns: number): Promise<ConductorFuzzResult> {
  const dir = await mkdtemp(join(tmpdir(), 'bmts-fuzz-'));
  const logFile = join(dir, 'conductor.log');
  addLogFile(logFile);
  setLogLevel('info');
  const c = await startTestConductor({ config: { automated_clean: false, restrict_lookup: false } });
  setLogLevel('info');
  try {
    const nodes: string[] = [];
    const ports: string[] = [];
    const macs: string[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await c.api('POST', '/v1/nodes', { driver: 'fake-hardware', name: `fuzz-${i}`, owner: i % 2 ? 'a' : 'b',
        driver_info: { ipmi_password: BMC_PASSWORD, ipmi_username: 'admin' } });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      const uuid = (r.body as { uuid: string }).uuid;
      nodes.push(uuid, `fuzz-${i}`);
      const mac = `52:54:00:00:00:0${i}`;
      const p = await c.api('POST', '/v1/ports', { node_uuid: uuid, address: mac });
      assert.equal(p.status, 201, JSON.stringify(p.body));
      ports.push((p.body as { uuid: string }).uuid);
      macs.push(mac);
    }
    // Tokens handed out before the fuzz: heartbeats may carry them, nothing else may show them.
    const tokens: string[] = [];
    for (const mac of macs.slice(0, 3)) {
      const r = await c.api('GET', `/v1/lookup?addresses=${mac}`);
      const t = (r.body as { config?: { agent_token?: string } }).config?.agent_token;
      if (typeof t === 'string' && !t.includes('*')) tokens.push(t);
    }
    assert.ok(tokens.length > 0, 'lookups issue tokens');
    const pool: ConductorPool = { nodes, ports, macs, tokens };
    const secrets = (): readonly string[] => [BMC_PASSWORD, ...tokens];
    const stats = newStats();
    const reqs: FuzzRequest[] = fc.sample(conductorRequests(pool), { seed, numRuns: runs }).flat();
    await runSequence(c.url, reqs, stats, { secrets, secretsAllowedIn: new Set(['lookup']) }, {}, (req, res) => {
      if (req.kind !== 'lookup' || res.status !== 200) return;
      const t = (JSON.parse(res.text) as { config?: { agent_token?: string } }).config?.agent_token;
      if (typeof t === 'string' && !t.includes('*')) tokens.push(t);
    });

    // The boot server: a tree with one file, a secret next to it and a symlink pointing at the secret.
    const root = join(dir, 'http');
    await mkdir(join(root, 'sub'), { recursive: true });
    await writeFile(join(root, 'ok.txt'), 'fine\n');
    await writeFile(join(dir, 'secret.txt'), 'BOOT-SERVER-SECRET\n');
    await writeFile(join(root, 'meta.json'), '{"BOOT-SERVER-SECRET":1}');
    await symlink(join(dir, 'secret.txt'), join(root, 'link'));
    await symlink(join(dir, 'secret.txt'), join(root, 'sub', 'secret.txt'));
    const boot = await startBootServer({ httpRoot: root });
    const bootStats = newStats();
    try {
      const paths = fc.sample(bootServerPath, { seed: seed + 1, numRuns: bootRuns });
      await runSequence(boot.localUrl, paths.map((p) => ({ kind: 'boot', method: 'GET', path: p })), bootStats,
        { secrets: () => ['BOOT-SERVER-SECRET', ...secrets()] });
    } finally {
      await boot.close();
    }

    await new Promise((r) => setTimeout(r, 200));
    const log = await readFile(logFile, 'utf8').catch(() => '');
    const logLeaks = log.split('\n').filter((l) => secrets().some((s) => l.includes(s)));
    const failures = [...stats.failures, ...bootStats.failures,
      ...logLeaks.slice(0, 5).map((l) => `secret in a log line: ${l.slice(0, 300)}`)];
    const line = `${summary('fuzz', stats, { boot_cases: bootStats.cases, boot_err5xx: bootStats.err5xx,
      log_lines: log.split('\n').length - 1, log_leaks: logLeaks.length, seed })}`;
    for (const [k, n] of [...stats.kinds4xx].sort((a, b) => b[1] - a[1]).slice(0, 12)) console.log(`  ${n}\t${k}`);
    return { line, err5xx: stats.err5xx + bootStats.err5xx, failures };
  } finally {
    setLogLevel('warn');
    await c.close();
    await rm(dir, { recursive: true, force: true });
  }
}

test('conductor API and boot server under generated requests: no 5xx, no pollution, no secret, nothing outside the tree', { timeout: 110_000 }, async () => {
  const r = await fuzzConductor(SEED, RUNS, BOOT_RUNS);
  console.log(r.line);
  assert.deepEqual(r.failures, []);
  assert.equal(r.err5xx, 0);
});
