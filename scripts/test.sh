#!/usr/bin/env bash
# `npm test`: the type check, the import rules (scripts/check-imports.ts: no circles, one direction), the linter
# (biome.json), then every test file under test/ (unit, integration, e2e) with Node's runner.
# Node 20's --test has no glob support, so the file list is expanded here; a run of zero tests is a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
npx tsc --noEmit -p . || { echo "typecheck failed"; exit 1; }
npx tsx scripts/check-imports.ts || { echo "import check failed"; exit 1; }
npx biome lint . || { echo "lint failed (biome.json)"; exit 1; }
if [ $# -gt 0 ]; then files=("$@"); else mapfile -t files < <(find test -name '*.test.ts' -not -path '*/node_modules/*' | sort); fi
[ ${#files[@]} -gt 0 ] || { echo "no test files found"; exit 1; }
out=$(mktemp)
# Files run one at a time: disk and VM tests share loop devices and CPU.
node --import tsx --test --test-concurrency=1 --test-reporter=tap "${files[@]}" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
tests=$(grep -E '^# tests [0-9]+$' "$out" | tail -1 | awk '{print $3}')
rm -f "$out"
if [ -z "$tests" ] || [ "$tests" -eq 0 ]; then echo "test run executed no tests"; exit 1; fi
exit "$rc"
