// @ts-check
/**
 * A node:test reporter (loaded next to the TAP one by scripts/test.sh) that counts passes, failures and skips of
 * the leaf tests and writes `note\t...` lines (every failure, skip and todo with its reason) and `passed=`/`failed=`/
 * `skipped=` lines. Plain JavaScript: Node loads reporters before tsx's loader hooks are in place.
 *
 * With CI=true a skip whose reason is not a line of test/skip-allowlist.txt counts as a failure, and so does every
 * todo: on a CI machine a missing package, CLI or privilege is a set-up bug, not a reason to go green.
 */
import { readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '../..');
const ALLOWLIST_FILE = join(REPO_ROOT, 'test/skip-allowlist.txt');

/** @returns {Set<string>} the allow-listed skip reasons: one exact reason a line; blank lines and `#` comments ignored */
function loadAllowlist() {
  let text = '';
  try {
    text = readFileSync(ALLOWLIST_FILE, 'utf8');
  } catch {
    // no file: nothing may skip in CI
  }
  return new Set(text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#')));
}

/**
 * @typedef {{ name: string, nesting: number, file?: string, skip?: string | boolean, todo?: string | boolean,
 *   details?: { type?: string, error?: { failureType?: string } } }} TestEventData
 * @typedef {{ type: string, data?: unknown }} TestEvent
 */

/**
 * The first line of a failure's error (its cause's, when the runner wraps it), cut to 300 characters, so the closing
 * lines of a CI log name what failed and why even when only the log's tail is kept.
 * @param {TestEventData} d
 */
function failureReason(d) {
  const err = /** @type {{ message?: string, cause?: { message?: string } } | undefined} */ (
    /** @type {{ error?: unknown }} */ (d.details ?? {}).error
  );
  const msg = err?.cause?.message ?? err?.message ?? '(no error message)';
  const line = String(msg).split('\n').find((l) => l.trim() !== '') ?? '(no error message)';
  return line.length > 300 ? `${line.slice(0, 300)}…` : line;
}

/**
 * Counts the leaf results of a test run; `ci` turns non-allow-listed skips and all todos into failures.
 * @param {TestEvent[]} events
 * @param {boolean} ci
 * @param {Set<string>} allow
 */
function tally(events, ci, allow) {
  const t = { passed: 0, failed: 0, skipped: 0, /** @type {string[]} */ notes: [] };
  for (const ev of events) {
    const d = /** @type {TestEventData} */ (ev.data);
    // A suite's own result repeats its children's, except a skipped suite, whose children never run.
    if (d.details?.type === 'suite' && d.skip === undefined) continue;
    // A parent failing because a subtest failed is already counted at the subtest.
    if (ev.type === 'test:fail' && d.details?.error?.failureType === 'subtestsFailed') continue;
    const where = `${d.file ? relative(REPO_ROOT, d.file) : '?'}: ${d.name}`;
    if (d.todo !== undefined && d.todo !== false) {
      const reason = typeof d.todo === 'string' ? d.todo : '(no reason)';
      if (ci) {
        t.failed++;
        t.notes.push(`FAIL (todo in CI)\t${where}\t${reason}`);
      } else {
        t.skipped++;
        t.notes.push(`todo\t${where}\t${reason}`);
      }
    } else if (d.skip !== undefined && d.skip !== false) {
      const reason = typeof d.skip === 'string' ? d.skip : '(no reason)';
      if (allow.has(reason)) {
        t.skipped++;
        t.notes.push(`skip (allow-listed)\t${where}\t${reason}`);
      } else if (ci) {
        t.failed++;
        t.notes.push(`FAIL (skip not in test/skip-allowlist.txt)\t${where}\t${reason}`);
      } else {
        t.skipped++;
        t.notes.push(`skip (fails under CI=true)\t${where}\t${reason}`);
      }
    } else if (ev.type === 'test:pass') {
      t.passed++;
    } else {
      t.failed++;
      t.notes.push(`FAIL\t${where}\t${failureReason(d)}`);
    }
  }
  return t;
}

/** @param {AsyncIterable<TestEvent>} source */
export default async function* summaryReporter(source) {
  /** @type {TestEvent[]} */
  const events = [];
  for await (const ev of source) if (ev.type === 'test:pass' || ev.type === 'test:fail') events.push(ev);
  const t = tally(events, process.env.CI === 'true', loadAllowlist());
  for (const n of t.notes) yield `note\t${n}\n`;
  // Seconds per file (its top-level tests), so a CI log shows where the suite's time goes.
  /** @type {Map<string, number>} */
  const perFile = new Map();
  for (const ev of events) {
    const d = /** @type {TestEventData & { details?: { duration_ms?: number } }} */ (ev.data);
    if (d.nesting !== 0 || !d.file) continue;
    const f = relative(REPO_ROOT, d.file);
    perFile.set(f, (perFile.get(f) ?? 0) + (d.details?.duration_ms ?? 0) / 1000);
  }
  for (const [f, s] of perFile) yield `filetime\t${f}\t${s.toFixed(1)}\n`;
  yield `passed=${t.passed}\nfailed=${t.failed}\nskipped=${t.skipped}\n`;
}
