#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh machine (redis-server, for the
# Redis store tests), then runs every test with every feature.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null; then
    echo "== installing redis-server (needed by the Redis store tests)"
    apt-get install -y redis-server || (apt-get update && apt-get install -y redis-server)
fi
redis-server --version

cargo test --all-features
