#!/usr/bin/env bash
# Quick start, command 2: install what is missing, typecheck, lint, then run the whole test suite
# (npm test, then the short fault suites) against real nats-server and etcd processes that the
# tests start on ephemeral ports. Arguments run only those tests of `npm test`.
set -euo pipefail
cd "$(dirname "$0")"
bash deploy/ensure-deps.sh
npx tsc --noEmit -p .
npm run lint
npm test -- "$@"
# With no arguments, the whole suite: the fault suites too, in their short version (about 4 minutes;
# `npm run test:faults` runs them in full), and a short fuzz run.
if [ "$#" -eq 0 ]; then
  FAULTS_SHORT=1 npm run test:faults
  # Hostile input, a short seeded run (`npm run test:fuzz` sends 10,000 requests).
  FUZZ_RUNS=2000 npm run test:fuzz
fi
