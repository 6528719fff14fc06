#!/usr/bin/env bash
# HTTP end-to-end benchmark: requests per second of a minimal axum 0.8 server on loopback,
# bare and behind tower-throttle or tower_governor, measured with wrk.
#
#   bash benches/http.sh
#   ROUNDS=5 DURATION=5s CONNECTIONS=64 THREADS=1 WARMUP=1s bash benches/http.sh
#
# Each round runs every variant once, in an order rotated by one position per round and
# reversed every other round, each against a fresh server (examples/http_bench_server.rs)
# on a free port, after a short warm-up. Throughput on a shared machine drifts between runs,
# so the comparisons are ratios of two runs of the same round; the table reports their
# median and min-max over the rounds, plus the raw req/s of every run.
#
# Variants (VARIANTS overrides the list, space-separated):
#   bare           no limiter
#   throttle       RateLimitLayer: per-IP rule (PeerIp) + global rule
#   governor       tower_governor, PeerIpKeyExtractor
#   bare-keys      no limiter, requests from the many-keys wrk script (the baseline of the
#                  two below: it pays the same load-generator cost)
#   throttle-keys  RateLimitLayer: x-api-key header rule (Header) + global rule
#   governor-keys  tower_governor, custom KeyExtractor reading x-api-key
# Diagnostic extras: throttle-noheaders (no rate-limit headers), throttle-unwrapped and
# throttle-unwrapped-keys (unwrapped_body(): axum's body type kept, not boxed again),
# governor-headers (use_headers()). The many-keys variants send x-api-key drawn from 100,000 values
# (benches/http_keys.lua). Every quota admits every request; any non-2xx/3xx response or
# socket error is flagged and makes the script exit with status 1.
#
# Output: the tables on stdout and in target/bench-results/http.md; raw wrk output in
# target/bench-results/http-raw/.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-1s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-1}
VARIANTS=${VARIANTS:-"bare throttle governor bare-keys throttle-keys governor-keys"}
OUT_DIR=${OUT_DIR:-$ROOT/target/bench-results}
OUT=$OUT_DIR/http.md
RAW=$OUT_DIR/http-raw
KEYS_SCRIPT=$ROOT/benches/http_keys.lua

# Ratios reported: numerator denominator target (ratio >= target), "-" for no target.
RATIOS=(
    "throttle bare 0.95"
    "governor bare -"
    "throttle governor 1.0"
    "throttle-keys bare-keys 0.95"
    "governor-keys bare-keys -"
    "throttle-keys governor-keys 1.0"
    "throttle-noheaders bare -"
    "throttle-noheaders governor -"
    "throttle-unwrapped bare -"
    "throttle-unwrapped governor -"
    "throttle-unwrapped-keys bare-keys -"
    "throttle-unwrapped-keys governor-keys -"
    "throttle-like-governor bare -"
    "throttle-like-governor governor -"
    "governor-headers bare -"
    "throttle governor-headers -"
)

if ! command -v wrk >/dev/null 2>&1; then
    echo "wrk not found: installing it with apt-get" >&2
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
    $SUDO apt-get install -y wrk || { $SUDO apt-get update && $SUDO apt-get install -y wrk; }
fi

cargo build --release --example http_bench_server
BIN=$ROOT/target/release/examples/http_bench_server

mkdir -p "$OUT_DIR"
rm -rf "$RAW"
mkdir -p "$RAW"
RESULTS=$RAW/results.tsv # round variant req/s requests non2xx socket_errors cpu_us/req
: >"$RESULTS"

SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
}
trap cleanup EXIT INT TERM

# start_server VARIANT LOG: starts the server on a free port, sets SERVER_PID and ADDR.
start_server() {
    : >"$2"
    "$BIN" --variant "$1" --addr 127.0.0.1:0 >"$2" 2>&1 &
    SERVER_PID=$!
    ADDR=""
    for _ in $(seq 1 200); do
        ADDR=$(awk '/^listening on /{print $3; exit}' "$2")
        if [ -n "$ADDR" ]; then return 0; fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
        sleep 0.05
    done
    echo "server for variant $1 did not start:" >&2
    cat "$2" >&2
    exit 1
}

# CPU time (user + system, in clock ticks) the running server has used so far.
server_cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat"; }
TICK=$(getconf CLK_TCK)

# run_wrk OUTFILE DURATION URL [SCRIPT]
run_wrk() {
    local out=$1 dur=$2 url=$3 script=${4:-}
    local args=(-t"$THREADS" -c"$CONNECTIONS" -d"$dur" --latency)
    if [ -n "$script" ]; then args+=(-s "$script"); fi
    wrk "${args[@]}" "$url" >"$out" 2>&1
}

# bad_responses WRK_OUTPUT: prints "non2xx socket_errors".
bad_responses() {
    awk '
        /Non-2xx or 3xx responses:/ { non += $NF }
        /Socket errors:/ { gsub(/,/, ""); err += $4 + $6 + $8 + $10 }
        END { printf "%d %d\n", non, err }
    ' "$1"
}

FLAGGED=0
read -r -a VLIST <<<"$VARIANTS"
N=${#VLIST[@]}
ORDERS=()

for round in $(seq 1 "$ROUNDS"); do
    # Rotate by one position per round; reverse every other round.
    order=()
    for i in $(seq 0 $((N - 1))); do
        order+=("${VLIST[$(((i + round - 1) % N))]}")
    done
    if [ $((round % 2)) -eq 0 ]; then
        rev=()
        for ((i = N - 1; i >= 0; i--)); do rev+=("${order[$i]}"); done
        order=("${rev[@]}")
    fi
    ORDERS+=("${order[*]}")
    echo "round $round/$ROUNDS: ${order[*]}" >&2
    for v in "${order[@]}"; do
        server=$v
        script=""
        case $v in
            bare-keys) server=bare script=$KEYS_SCRIPT ;;
            *-keys) script=$KEYS_SCRIPT ;;
        esac
        log=$RAW/r$round-$v.server.log
        start_server "$server" "$log"
        url="http://$ADDR/"
        run_wrk "$RAW/r$round-$v.warmup.txt" "$WARMUP" "$url" "$script"
        cpu0=$(server_cpu_ticks)
        run_wrk "$RAW/r$round-$v.txt" "$DURATION" "$url" "$script"
        cpu1=$(server_cpu_ticks)
        cleanup
        rps=$(awk '/^Requests\/sec:/{print $2}' "$RAW/r$round-$v.txt")
        reqs=$(awk '/requests in/{print $1; exit}' "$RAW/r$round-$v.txt")
        # Server CPU per request (microseconds) over the measured run: less sensitive to
        # the machine's drift than req/s, since it does not count time spent descheduled.
        cpu_us=$(awk -v t=$((cpu1 - cpu0)) -v hz="$TICK" -v n="$reqs" 'BEGIN { printf "%.3f", t * 1e6 / hz / n }')
        read -r non2xx errs < <(cat "$RAW/r$round-$v.warmup.txt" "$RAW/r$round-$v.txt" | bad_responses /dev/stdin)
        if [ -z "$rps" ]; then
            echo "wrk produced no result for $v:" >&2
            cat "$RAW/r$round-$v.txt" >&2
            exit 1
        fi
        if [ "$non2xx" != 0 ] || [ "$errs" != 0 ]; then
            FLAGGED=1
            echo "!!!!! round $round $v: $non2xx NON-2XX RESPONSES and $errs SOCKET ERRORS (warm-up + run): not every request was admitted !!!!!" >&2
        fi
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$v" "$rps" "$reqs" "$non2xx" "$errs" "$cpu_us" >>"$RESULTS"
        printf '  %-20s %12s req/s  %7s us CPU/req  (%s requests, non-2xx %s, socket errors %s)\n' \
            "$v" "$rps" "$cpu_us" "$reqs" "$non2xx" "$errs" >&2
    done
done

# rps ROUND VARIANT, cpu ROUND VARIANT
rps() { awk -v r="$1" -v v="$2" -F'\t' '$1 == r && $2 == v {print $3}' "$RESULTS"; }
cpu() { awk -v r="$1" -v v="$2" -F'\t' '$1 == r && $2 == v {print $7}' "$RESULTS"; }

# stats: reads numbers on stdin, prints "median min max".
stats() {
    sort -g | awk '{ a[NR] = $1 } END {
        if (NR == 0) exit
        m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
        printf "%.3f %.3f %.3f\n", m, a[1], a[NR]
    }'
}

# paired METRIC NUM DEN: "median min max" over the rounds of the ratio within each round:
# NUM/DEN for req/s (rps), DEN/NUM for CPU per request (cpu), so > 1 favours NUM in both.
paired() {
    local metric=$1 num=$2 den=$3 r a b
    for r in $(seq 1 "$ROUNDS"); do
        a=$("$metric" "$r" "$num")
        b=$("$metric" "$r" "$den")
        if [ "$metric" = cpu ]; then
            awk -v a="$a" -v b="$b" 'BEGIN { printf "%.6f\n", b / a }'
        else
            awk -v a="$a" -v b="$b" 'BEGIN { printf "%.6f\n", a / b }'
        fi
    done | stats
}

has_variant() { [[ " $VARIANTS " == *" $1 "* ]]; }

{
    echo "## HTTP end-to-end: axum 0.8 on loopback, wrk"
    echo
    echo "Recorded $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) cores ($(uname -m)), $(wrk --version 2>&1 | head -1 | awk '{print $1, $2}')."
    echo "Command: \`ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP CONNECTIONS=$CONNECTIONS THREADS=$THREADS bash benches/http.sh\`"
    echo "(variants: $VARIANTS; each run a fresh server, multi-thread tokio runtime; wrk -t$THREADS -c$CONNECTIONS)."
    echo
    echo "Ratios of req/s within each round, over $ROUNDS rounds:"
    echo
    echo "| ratio | median | min - max | target | met (median) |"
    echo "|---|---|---|---|---|"
    for spec in "${RATIOS[@]}"; do
        read -r num den target <<<"$spec"
        has_variant "$num" && has_variant "$den" || continue
        read -r med lo hi < <(paired rps "$num" "$den")
        if [ "$target" = - ]; then
            t="-" met="-"
        else
            t=">= $target"
            met=$(awk -v m="$med" -v t="$target" 'BEGIN { print (m >= t) ? "yes" : "NO" }')
        fi
        echo "| $num / $den | $med | $lo - $hi | $t | $met |"
    done
    echo
    echo "Server CPU time per request (user + system, us; median and min - max over rounds), and"
    echo "the same ratios computed from it (den CPU/req over num CPU/req, so > 1 means num is cheaper):"
    echo
    echo "| variant | CPU us/req median | min - max |"
    echo "|---|---|---|"
    for v in "${VLIST[@]}"; do
        read -r med lo hi < <(for r in $(seq 1 "$ROUNDS"); do cpu "$r" "$v"; done | stats)
        echo "| $v | $med | $lo - $hi |"
    done
    echo
    echo "| ratio (from CPU/req) | median | min - max | target |"
    echo "|---|---|---|---|"
    for spec in "${RATIOS[@]}"; do
        read -r num den target <<<"$spec"
        has_variant "$num" && has_variant "$den" || continue
        read -r med lo hi < <(paired cpu "$num" "$den")
        if [ "$target" = - ]; then t="-"; else t=">= $target"; fi
        echo "| $num / $den | $med | $lo - $hi | $t |"
    done
    echo
    echo "Raw req/s per round (run order in the last column):"
    echo
    header="| round |"
    sep="|---|"
    for v in "${VLIST[@]}"; do
        header+=" $v |"
        sep+="---|"
    done
    echo "$header order |"
    echo "$sep---|"
    for r in $(seq 1 "$ROUNDS"); do
        line="| $r |"
        for v in "${VLIST[@]}"; do line+=" $(rps "$r" "$v") |"; done
        echo "$line ${ORDERS[$((r - 1))]} |"
    done
    echo
    if [ "$FLAGGED" = 1 ]; then
        echo "**WARNING: some runs had non-2xx responses or socket errors; not every request was admitted:**"
        echo
        awk -F'\t' '$5 != 0 || $6 != 0 { printf "- round %s %s: non-2xx %s, socket errors %s\n", $1, $2, $5, $6 }' "$RESULTS"
    else
        echo "Every response of every run (warm-ups included) was 2xx/3xx, with no socket errors."
    fi
} >"$OUT"

# The same ratios as JSON rows for benches/report.py (median of the paired ratios; the
# figures beside it are the median req/s of each side).
{
    echo "["
    first=1
    for spec in "${RATIOS[@]}"; do
        read -r num den target <<<"$spec"
        has_variant "$num" && has_variant "$den" || continue
        read -r med _ _ < <(paired rps "$num" "$den")
        read -r ours _ _ < <(for r in $(seq 1 "$ROUNDS"); do rps "$r" "$num"; done | stats)
        read -r peer _ _ < <(for r in $(seq 1 "$ROUNDS"); do rps "$r" "$den"; done | stats)
        if [ "$target" = - ]; then min=null; else min=$target; fi
        [ "$first" = 1 ] || echo ","
        first=0
        printf '{"metric": "req/s %s / %s (median of %s paired rounds)", "ours": %s, "peer": %s, "ratio": %s, "peer_name": "%s", "unit": "req/s", "min_ratio": %s, "max_ratio": null, "max_ours": null}' \
            "$num" "$den" "$ROUNDS" "$ours" "$peer" "$med" "$den" "$min"
    done
    echo
    echo "]"
} >"$OUT_DIR/http.json"

echo >&2
cat "$OUT"
echo >&2
echo "written to $OUT and $OUT_DIR/http.json (raw wrk output in $RAW)" >&2
if [ "$FLAGGED" = 1 ]; then
    echo "!!!!! NON-2XX RESPONSES OR SOCKET ERRORS: see above !!!!!" >&2
    exit 1
fi
