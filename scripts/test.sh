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
sweep() { node --import tsx scripts/test-runner/sweep.ts --phase "$1" --run-dir "$run_dir" --mode "$sweep_mode"; }

# Two lanes, each running its files one at a time: the machine lane (test/machine-lane.txt: QEMU VMs, many agent
# processes, real Ironic, namespaces — what needs a core to itself) and the light lane (everything else: API,
# store, unit and single-agent tests, mostly waiting on sockets). A VM under TCG keeps one core busy while the
# light lane's tests mostly wait, so running the lanes side by side roughly halves the suite on 2 cores.
# Files named on the command line run in one lane unless BMTS_TEST_LANES=2; BMTS_TEST_LANES=1 forces one lane.
machine=() light=()
default_lanes=2
[ $# -gt 0 ] && default_lanes=1
if [ "${BMTS_TEST_LANES:-$default_lanes}" = 1 ]; then
  machine=("${files[@]}")
else
  declare -A heavy=()
  while read -r f _; do [ -n "$f" ] && [ "${f#\#}" = "$f" ] && heavy[$f]=1; done < test/machine-lane.txt
  for f in "${files[@]}"; do if [ -n "${heavy[$f]:-}" ]; then machine+=("$f"); else light+=("$f"); fi; done
fi

sweep before
pids=()
on_signal() {
  trap - INT TERM
  echo "test run interrupted: stopping the tests and sweeping up"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  wait
  sweep after
  rm -f "$run_dir".*.summary "$run_dir".light.tap
  exit 130
}
trap on_signal INT TERM

# Kept logs (test/fixtures/peer-ironic.ts) live outside the run dir, which the sweep removes.
export BMTS_ARTIFACTS_DIR=${BMTS_ARTIFACTS_DIR:-$tmp_parent/bmts-artifacts}
# lane NAME TAP-DESTINATION FILE...
lane() {
  local name=$1 out=$2
  shift 2
  BMTS_TEST_RUN=$(basename "$run_dir") TMPDIR=$run_dir \
    node --import tsx --test --test-concurrency=1 \
    --test-reporter=tap --test-reporter-destination="$out" \
    --test-reporter=./scripts/test-runner/summary-reporter.mjs --test-reporter-destination="$run_dir.$name.summary" \
    "$@" 2>&1
}
rcs=()
if [ ${#light[@]} -gt 0 ]; then
  echo "lanes: ${#machine[@]} files in the machine lane (TAP below), ${#light[@]} in the light lane (TAP after it)"
  lane light "$run_dir.light.tap" "${light[@]}" > "$run_dir.light.log" &
  pids+=($!)
fi
if [ ${#machine[@]} -gt 0 ]; then
  lane machine stdout "${machine[@]}" &
  pids+=($!)
fi
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=$?; done
trap - INT TERM
if [ ${#light[@]} -gt 0 ]; then
  echo "# ---- light lane ----"
  cat "$run_dir.light.tap" "$run_dir.light.log" 2>/dev/null
  rm -f "$run_dir.light.tap" "$run_dir.light.log"
fi

sweep after
sweep_rc=$?

passed=0 failed=0 skipped=0 summaries=0
times=()
for summary in "$run_dir".*.summary; do
  [ -s "$summary" ] || continue
  summaries=$((summaries + 1))
  while IFS=$'\t' read -r kind verdict where reason; do
    [ "$kind" = note ] && printf '%s: %s: %s\n' "$verdict" "$where" "$reason"
    [ "$kind" = filetime ] && times+=("$where"$'\t'"$verdict")
  done < "$summary"
  passed=$((passed + $(sed -n 's/^passed=//p' "$summary")))
  failed=$((failed + $(sed -n 's/^failed=//p' "$summary")))
  skipped=$((skipped + $(sed -n 's/^skipped=//p' "$summary")))
  rm -f "$summary"
done
expected=$(( (${#machine[@]} > 0) + (${#light[@]} > 0) ))
[ "$summaries" -eq "$expected" ] || echo "the test runner wrote $summaries of $expected summaries (exit code $rc)"
if [ ${#times[@]} -gt 0 ]; then
  echo "slowest files (seconds):"
  printf '%s\n' "${times[@]}" | sort -rn | head -15 | awk -F'\t' '{printf "  %7.1f  %s\n", $1, $2}'
fi
# A crash the reporter never saw, or a leftover, is a failure the closing line must show.
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then echo "node --test exited with $rc"; failed=1; fi
if [ "$summaries" -ne "$expected" ] && [ "$failed" -eq 0 ]; then failed=1; fi
if [ "$sweep_rc" -ne 0 ]; then echo "leftovers after the tests count as a failure"; failed=$((failed + 1)); fi
[ "$passed" -gt 0 ] || echo "no test passed: a run must pass at least one test"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
