#!/usr/bin/env bash
# Runs every benchmark of the crate in one go and prints one table of ratios, ours vs the
# named peer measured in the same run (benches/report.py). The table is also written to
# target/bench-results/report.md.
#
#   bash benches/run.sh              # everything (about 15 minutes on 2 cores)
#   SKIP_HTTP=1 bash benches/run.sh  # without the wrk end-to-end rounds
#
# Not part of CI (too slow and too noisy); CI compiles every bench through
# `cargo clippy --all-targets`.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=target/bench-results
mkdir -p "$OUT"
# Results of an earlier run must not leak into this table.
rm -f "$OUT"/*.json "$OUT"/report.md
rm -rf target/criterion

echo "== engine: one keyed check vs governor (criterion)"
cargo bench --bench engine
echo "== client stack overhead (criterion)"
cargo bench --bench client_stack
echo "== contention: two threads vs governor"
cargo bench --bench contention
echo "== memory per key vs governor"
cargo bench --bench memory
if [ -z "${SKIP_HTTP:-}" ]; then
    echo "== HTTP end to end: axum bare / tower-throttle / tower_governor (wrk)"
    # The issue's variants plus the apples-to-apples pairs: tower_governor writes no
    # rate-limit headers by default (compare throttle-noheaders), and governor-headers
    # writes its x-ratelimit-* ones (compare throttle); throttle-unwrapped is the axum
    # setting that keeps the response body type; throttle-like-governor is one per-IP rule
    # with neither headers nor a wrapped body, like tower_governor's defaults.
    VARIANTS=${VARIANTS:-"bare throttle governor throttle-noheaders governor-headers throttle-unwrapped throttle-like-governor bare-keys throttle-keys governor-keys"} \
        bash benches/http.sh
fi

echo
echo "== machine"
nproc
grep -m1 "model name" /proc/cpuinfo || true
echo "clocksource: $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null || echo unknown)"
echo
python3 benches/report.py | tee "$OUT/report.md"
