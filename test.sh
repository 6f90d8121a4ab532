#!/usr/bin/env bash
# Quick start, command 2: install what is missing, typecheck, lint, then run the whole test suite
# against real nats-server and etcd processes (the tests start them on ephemeral ports).
set -euo pipefail
cd "$(dirname "$0")"
bash deploy/ensure-deps.sh
npx tsc --noEmit -p .
npm run lint
exec npm test -- "$@"
