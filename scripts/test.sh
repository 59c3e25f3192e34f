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

# Lanes side by side, each running its files one at a time (scripts/test-runner/lanes.ts): the machine lane
# (test/machine-lane.txt: QEMU VMs, many agent processes, real Ironic, namespaces — one at a time, as they need a
# core each) and light lanes (API, store, unit and single-agent tests, which mostly wait on sockets), balanced by
# test/lane-weights.txt. On 2 cores a VM under TCG keeps one core busy while the light lanes mostly wait, so three
# lanes roughly halve the suite. Files named on the command line run in one lane; BMTS_TEST_LANES=N overrides.
default_lanes=3
[ $# -gt 0 ] && default_lanes=1
declare -A lane_files=()
lane_names=()
while IFS=$'\t' read -r ln f; do
  [ -n "${lane_files[$ln]+x}" ] || lane_names+=("$ln")
  lane_files[$ln]+="$f"$'\n'
done < <(npx tsx scripts/test-runner/lanes.ts "${BMTS_TEST_LANES:-$default_lanes}" "${files[@]}")
[ ${#lane_names[@]} -gt 0 ] || { echo "no lanes: scripts/test-runner/lanes.ts failed"; exit 1; }

sweep before
pids=()
on_signal() {
  trap - INT TERM
  echo "test run interrupted: stopping the tests and sweeping up"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  wait
  sweep after
  rm -f "$run_dir".*.summary "$run_dir".*.tap "$run_dir".*.log
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
summary_line="lanes:"
for ln in "${lane_names[@]}"; do summary_line+=" $ln $(printf '%s' "${lane_files[$ln]}" | grep -c .)"; done
echo "$summary_line files (the machine lane's TAP below, the others' after it)"
for ln in "${lane_names[@]}"; do
  mapfile -t lf < <(printf '%s' "${lane_files[$ln]}")
  if [ "$ln" = machine ]; then
    lane machine stdout "${lf[@]}" &
  else
    lane "$ln" "$run_dir.$ln.tap" "${lf[@]}" > "$run_dir.$ln.log" &
  fi
  pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=$?; done
trap - INT TERM
for ln in "${lane_names[@]}"; do
  [ "$ln" = machine ] && continue
  echo "# ---- lane $ln ----"
  cat "$run_dir.$ln.tap" "$run_dir.$ln.log" 2>/dev/null
  rm -f "$run_dir.$ln.tap" "$run_dir.$ln.log"
done

sweep after
sweep_rc=$?

passed=0 failed=0 skipped=0 summaries=0
times=() notes=()
for summary in "$run_dir".*.summary; do
  [ -s "$summary" ] || continue
  summaries=$((summaries + 1))
  while IFS=$'\t' read -r kind verdict where reason; do
    [ "$kind" = note ] && notes+=("$verdict: $where: $reason")
    [ "$kind" = filetime ] && times+=("$where"$'\t'"$verdict")
  done < "$summary"
  passed=$((passed + $(sed -n 's/^passed=//p' "$summary")))
  failed=$((failed + $(sed -n 's/^failed=//p' "$summary")))
  skipped=$((skipped + $(sed -n 's/^skipped=//p' "$summary")))
  rm -f "$summary"
done
expected=${#lane_names[@]}
[ "$summaries" -eq "$expected" ] || echo "the test runner wrote $summaries of $expected summaries (exit code $rc)"
if [ ${#times[@]} -gt 0 ]; then
  echo "slowest files (seconds):"
  printf '%s\n' "${times[@]}" | sort -rn | head -25 | awk -F'\t' '{printf "  %7.1f  %s\n", $1, $2}'
fi
# Failures, skips and todos last, next to the closing line: a CI log's tail then names what failed.
[ ${#notes[@]} -gt 0 ] && printf '%s\n' "${notes[@]}"
# A crash the reporter never saw, or a leftover, is a failure the closing line must show.
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then echo "node --test exited with $rc"; failed=1; fi
if [ "$summaries" -ne "$expected" ] && [ "$failed" -eq 0 ]; then failed=1; fi
if [ "$sweep_rc" -ne 0 ]; then echo "leftovers after the tests count as a failure"; failed=$((failed + 1)); fi
[ "$passed" -gt 0 ] || echo "no test passed: a run must pass at least one test"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
