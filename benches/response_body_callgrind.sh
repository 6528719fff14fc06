#!/usr/bin/env bash
# Instructions per request of benches/response_body.rs's cases, counted by callgrind:
# deterministic, unlike wall-clock time on a shared machine.
#
#   bash benches/response_body_callgrind.sh [N]
#
# Each case/side pair runs twice under callgrind (RESPONSE_BODY_PROFILE=<case>/<side>/<n>),
# with 0 and N requests (default 20,000); Ir per request = (Ir(N) - Ir(0)) / N, so
# start-up cancels.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
N=${1:-20000}
command -v valgrind >/dev/null || { echo "valgrind not found (apt-get install valgrind)" >&2; exit 1; }
cargo bench --bench response_body --no-run >&2
BIN=$(ls -t target/release/deps/response_body-* | grep -v '\.d$' | head -1)
OUT=target/callgrind
mkdir -p "$OUT"

ir() { # ir CASE SIDE N
    local file=$OUT/response_body.$1.$2.$3.out
    RESPONSE_BODY_PROFILE=$1/$2/$3 valgrind --tool=callgrind --callgrind-out-file="$file" \
        "$BIN" --bench >/dev/null 2>"$file.log"
    grep -m1 '^summary:' "$file" | awk '{print $2}'
}

printf '%-20s %-11s %12s %8s\n' case side Ir/request "vs head"
for case in json_1k json_16k_16_chunks; do
    base=""
    for side in head_only reads_body reads_json; do
        zero=$(ir "$case" "$side" 0)
        full=$(ir "$case" "$side" "$N")
        per=$(( (full - zero) / N ))
        [ -z "$base" ] && base=$per
        ratio=$(awk -v a="$per" -v b="$base" 'BEGIN { printf "%.2f", a / b }')
        printf '%-20s %-11s %12d %8s\n' "$case" "$side" "$per" "${ratio}x"
    done
done
