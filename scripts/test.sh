#!/usr/bin/env bash
# `npm test`: the type check, the import rules (scripts/check-imports.ts: no circles, one direction), the linter (biome.json),
# then every test file under test/ (unit, integration, e2e) with Node's runner.
# Node 20's --test has no glob support, so the file list is expanded here.
#
# The tests run with TMPDIR=<a run dir> and BMTS_TEST_RUN=<its name>, so scripts/test-runner/sweep.ts finds exactly
# what this run started (processes, mounts, md arrays, loop devices, temp dirs): before the tests it removes what
# dead earlier runs left, after them (and on SIGINT/SIGTERM) it removes this run's leftovers and fails the run.
# BMTS_SWEEP=report only lists them (developing on a shared machine).
#
# scripts/test-runner/summary-reporter.mjs counts the results; with CI=true a skip whose reason is not in
# test/skip-allowlist.txt, and every todo, is a failure. The last line is exactly `N passed, N failed, N skipped`;
# the run fails unless failed is 0 and passed is at least 1.
set -uo pipefail
cd "$(dirname "$0")/.."
npx tsc --noEmit -p . || { echo "typecheck failed"; exit 1; }
npx tsx scripts/check-imports.ts || { echo "import check failed"; exit 1; }
npx biome lint . || { echo "lint failed (biome.json)"; exit 1; }
if [ $# -gt 0 ]; then files=("$@"); else mapfile -t files < <(find test -name '*.test.ts' -not -path '*/node_modules/*' | sort); fi
[ ${#files[@]} -gt 0 ] || { echo "no test files found"; exit 1; }

sweep_mode=${BMTS_SWEEP:-clean}
tmp_parent=${TMPDIR:-/tmp}
run_dir=$(mktemp -d "$tmp_parent/bmts-test-run-$$-XXXXXX")
summary="$run_dir.summary"
sweep() { node --import tsx scripts/test-runner/sweep.ts --phase "$1" --run-dir "$run_dir" --mode "$sweep_mode"; }

sweep before
node_pid=
on_signal() {
  trap - INT TERM
  echo "test run interrupted: stopping the tests and sweeping up"
  [ -n "$node_pid" ] && kill -TERM "$node_pid" 2>/dev/null
  sweep after
  rm -f "$summary"
  exit 130
}
trap on_signal INT TERM

# Kept logs (test/fixtures/peer-ironic.ts) live outside the run dir, which the sweep removes.
export BMTS_ARTIFACTS_DIR=${BMTS_ARTIFACTS_DIR:-$tmp_parent/bmts-artifacts}
# Files run one at a time: disk and VM tests share loop devices and CPU.
BMTS_TEST_RUN=$(basename "$run_dir") TMPDIR=$run_dir \
  node --import tsx --test --test-concurrency=1 \
  --test-reporter=tap --test-reporter-destination=stdout \
  --test-reporter=./scripts/test-runner/summary-reporter.mjs --test-reporter-destination="$summary" \
  "${files[@]}" 2>&1 &
node_pid=$!
wait "$node_pid"
rc=$?
trap - INT TERM

sweep after
sweep_rc=$?

passed=0 failed=0 skipped=0
if [ -s "$summary" ]; then
  while IFS=$'\t' read -r kind verdict where reason; do
    [ "$kind" = note ] && printf '%s: %s: %s\n' "$verdict" "$where" "$reason"
  done < "$summary"
  passed=$(sed -n 's/^passed=//p' "$summary")
  failed=$(sed -n 's/^failed=//p' "$summary")
  skipped=$(sed -n 's/^skipped=//p' "$summary")
else
  echo "the test runner wrote no summary (exit code $rc)"
fi
rm -f "$summary"
# A crash the reporter never saw, or a leftover, is a failure the closing line must show.
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then echo "node --test exited with $rc"; failed=1; fi
if [ "$sweep_rc" -ne 0 ]; then echo "leftovers after the tests count as a failure"; failed=$((failed + 1)); fi
[ "$passed" -gt 0 ] || echo "no test passed: a run must pass at least one test"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
