#!/usr/bin/env bash
# Quick start, command 1: install what is missing, then run Conveyor (etcd + NATS + every role).
set -euo pipefail
cd "$(dirname "$0")"
bash deploy/ensure-deps.sh
exec npx conveyor up "$@"
