#!/usr/bin/env bash
# A cluster on one machine: installs what is missing, then `conveyor cluster` starts a 3-node NATS
# JetStream cluster and a 3-member etcd cluster on loopback (streams with 3 replicas), two gateways
# (8080, 8081), two workers and two shell drivers. `--servers-only` starts just the servers;
# `--nats-port 0` picks free ports (and keeps the data in a temporary directory).
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/ensure-deps.sh
exec node cli/bin.js cluster "$@"
