#!/usr/bin/env bash
# Instructions per request of the HTTP benchmark server (examples/http_bench_server.rs),
# counted by callgrind: deterministic, unlike req/s on a shared machine.
#
#   bash benches/http_callgrind.sh [VARIANT...]
#   LOW=2000 HIGH=12000 CONNECTIONS=16 bash benches/http_callgrind.sh bare throttle
#
# For each variant the server runs twice under callgrind, serving LOW and then HIGH
# requests from examples/http_load.rs (CONNECTIONS keep-alive connections); the
# instructions per request are (Ir(HIGH) - Ir(LOW)) / (HIGH - LOW), so start-up and
# shutdown cancel (quanta's clock calibration, whose length varies between runs, is
# subtracted from each run first). Allocations per request likewise, counted by a second pass with
# valgrind's dhat when DHAT=1. Callgrind output stays in target/callgrind/ for
# callgrind_annotate (the HIGH run is callgrind.VARIANT.out).
set -euo pipefail
shopt -s inherit_errexit

cd "$(dirname "$0")/.."
ROOT=$(pwd)
LOW=${LOW:-2000}
HIGH=${HIGH:-12000}
CONNECTIONS=${CONNECTIONS:-16}
DHAT=${DHAT:-0}
OUT=$ROOT/target/callgrind
mkdir -p "$OUT"

if [ $# -eq 0 ]; then
    set -- bare governor throttle-like-governor throttle throttle-legacy throttle-ietf throttle-noheaders
fi

command -v valgrind >/dev/null || { echo "valgrind not found (apt-get install valgrind)" >&2; exit 1; }
cargo build --release --example http_bench_server --example http_load >&2
SERVER=$ROOT/target/release/examples/http_bench_server
LOAD=$ROOT/target/release/examples/http_load

# run TOOL VARIANT N OUTFILE: the server under valgrind TOOL, serving N requests.
run() {
    local tool=$1 variant=$2 n=$3 file=$4 log=$4.log pid addr=""
    local opts=(--tool="$tool")
    if [ "$tool" = callgrind ]; then
        opts+=(--callgrind-out-file="$file")
    else
        opts+=(--dhat-out-file="$file")
    fi
    : >"$log"
    valgrind "${opts[@]}" "$SERVER" --variant "$variant" >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 1 600); do
        addr=$(awk '/^listening on /{print $3; exit}' "$log")
        [ -n "$addr" ] && break
        sleep 0.1
    done
    [ -n "$addr" ] || { cat "$log" >&2; kill "$pid"; exit 1; }
    "$LOAD" --addr "$addr" --requests "$n" --connections "$CONNECTIONS" >/dev/null
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    if [ "$tool" = callgrind ]; then
        # Minus quanta's one-time TSC calibration (ours and governor's), whose length
        # varies from run to run.
        local total calib
        total=$(awk '/^summary:|^totals:/{print $2; exit}' "$file")
        calib=$(callgrind_annotate --inclusive=yes "$file" |
            awk '/ \?\?\?:(quanta::Clock::new|<quanta::Clock as core::default::Default>::default) / {
                gsub(/,/, "", $1); if ($1 + 0 > max) max = $1 + 0 } END { print max + 0 }')
        echo $((total - ${calib:-0}))
    else
        awk '/Total:/ && /bytes in/ {gsub(/,/, ""); print $6; exit}' "$log"
    fi
}

printf '%-24s %14s\n' variant "Ir/request" >&2
for v in "$@"; do
    lo=$(run callgrind "$v" "$LOW" "$OUT/callgrind.$v.low.out")
    hi=$(run callgrind "$v" "$HIGH" "$OUT/callgrind.$v.out")
    line=$(awk -v a="$lo" -v b="$hi" -v n=$((HIGH - LOW)) 'BEGIN { printf "%.0f", (b - a) / n }')
    if [ "$DHAT" = 1 ]; then
        blo=$(run dhat "$v" "$LOW" "$OUT/dhat.$v.low.out")
        bhi=$(run dhat "$v" "$HIGH" "$OUT/dhat.$v.out")
        allocs=$(awk -v a="$blo" -v b="$bhi" -v n=$((HIGH - LOW)) 'BEGIN { printf "%.2f", (b - a) / n }')
        line="$line  allocs/request $allocs"
    fi
    printf '%-24s %14s\n' "$v" "$line"
done
