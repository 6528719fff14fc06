#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh machine (redis-server, for the
# Redis store tests), then builds every example users can build with default features and
# runs the tests in each feature configuration a user can pick: none, the default, all.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null; then
    echo "== installing redis-server (needed by the Redis store tests)"
    apt-get install -y redis-server || (apt-get update && apt-get install -y redis-server)
fi
redis-server --version

echo "== cargo build --examples (default features)"
cargo build --examples
echo "== cargo test --no-default-features"
cargo test --no-default-features
echo "== cargo test (default features)"
cargo test
echo "== cargo test --all-features"
cargo test --all-features
