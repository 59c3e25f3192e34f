#!/usr/bin/env bash
# `npm run setup`: Debian packages, npm ci, build, ramdisk. Idempotent; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-system.sh
npm ci --no-audit --no-fund
npx tsc -p .
if [ -f ramdisk-build/build.ts ]; then npx tsx ramdisk-build/build.ts; fi
# The conductor's default data dir (.data): http_basic admin password (printed once, kept 0600) and the API's CA.
npx tsx conductor/main.ts --init
echo "setup: done"
