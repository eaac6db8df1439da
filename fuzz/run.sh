#!/usr/bin/env bash
# Runs every cargo-fuzz target (or the ones named) for a bounded time each, seeded from the
# samples in ../shared/data (copied into a scratch corpus at run time) and from seeds/.
# Exits 1 if any target finds a crash (its input is left in $FUZZ_WORK/artifacts/<target>/);
# prints each target's runs and executions per second.
#
#   fuzz/run.sh [seconds-per-target] [target...]        (default 60 s, every target)
#
# Toolchain: cargo-fuzz (`cargo install cargo-fuzz`) needs nightly flags
# (-Zsanitizer, -Cpasses=sancov-module). The only toolchain here is stable, so the build runs
# with RUSTC_BOOTSTRAP=1. Sanitizer: none by default (`-s none`): bursar forbids unsafe code,
# so the findings are panics, overflows (debug assertions are on), stack overflows, leaks
# of time (-timeout) and memory (-rss_limit_mb); FUZZ_SANITIZER=address builds with ASan.
# The first build instruments every dependency (~15 min on two cores): it runs at nice 19
# in its own target dir, $FUZZ_TARGET_DIR (default /var/tmp/target-fuzz).
#
# Not part of CI (.ci/run): too slow. Whatever a target finds is fixed in the product and
# kept as a regression test in the normal suite (tests/fuzz-regressions/).
set -uo pipefail

secs=${1:-60}
shift $(( $# > 0 ? 1 : 0 ))
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
data=${BURSAR_SAMPLES:-$root/../shared/data}
work=${FUZZ_WORK:-/var/tmp/bursar-fuzz}
target_dir=${FUZZ_TARGET_DIR:-/var/tmp/target-fuzz}
sanitizer=${FUZZ_SANITIZER:-none}
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is not installed: cargo install cargo-fuzz" >&2
    exit 2
fi
if [[ ! -d $data ]]; then
    echo "no samples at $data (set BURSAR_SAMPLES)" >&2
    exit 2
fi
if (( $# > 0 )); then
    targets=("$@")
else
    mapfile -t targets < <(cd "$here" && cargo fuzz list --fuzz-dir "$here")
fi

fuzz() {
    nice -n 19 cargo fuzz "$1" --fuzz-dir "$here" -s "$sanitizer" --target-dir "$target_dir" "${@:2}"
}

# seed TARGET DIR: fills DIR with the target's starting inputs.
seed() {
    local t=$1 dir=$2 f i=0
    # A billing input is a selector byte (bit 0: named .jsonl, bit 1: format detected, not
    # given) followed by the file; CSV samples are cut to their first 30 lines.
    billing() {
        for f in "$@"; do
            [[ -f $f ]] || continue
            i=$((i + 1))
            { printf '\x00'; head -n 30 "$f"; } >"$dir/csv-$i"
            { printf '\x02'; head -n 30 "$f"; } >"$dir/csv-detect-$i"
            python3 - "$f" "$dir/jsonl-$i" <<'PY'
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1], newline="", encoding="utf-8-sig")))[:5]
with open(sys.argv[2], "wb") as out:
    out.write(b"\x01")
    for r in rows:
        out.write(json.dumps(r).encode() + b"\n")
PY
        done
    }
    case $t in
    billing_focus) billing "$data"/focus-sample/spec-examples/*/*.csv "$data"/focus-sample/multi-provider/*.csv ;;
    billing_cur) billing "$data"/native-billing/aws/*.csv ;;
    billing_gcp) billing "$data"/native-billing/gcp/*.csv ;;
    billing_azure) billing "$data"/native-billing/azure/*.csv "$data"/native-billing/azure/opencost-headersets/*.csv ;;
    aws_ondemand) cp "$data"/price-api-samples/aws/pricelist_item_*.json "$dir/" ;;
    aws_spot) cp "$data"/price-api-samples/aws/describe_spot_price_history_*.sdk.json "$dir/" ;;
    aws_advisor) cp "$data"/price-api-samples/aws/spot-advisor-data*.json "$dir/" ;;
    azure_retail) cp "$data"/price-api-samples/azure/*.json "$dir/" ;;
    gcp_catalog) cp "$data"/price-api-samples/gcp/*.json "$dir/" ;;
    skypilot)
        local p n=0
        for p in aws gcp azure; do
            { printf "\\x$(printf %02x $n)"; head -n 40 "$data/skypilot-catalog/$p/vms.csv"; } >"$dir/$p"
            n=$((n + 1))
        done
        ;;
    dcgm) cp "$data"/gpu-metrics/*.prom "$dir/" ;;
    prometheus) cp "$data"/gpu-metrics/prometheus-query-*.json "$dir/" ;;
    esac
    if [[ -d $here/seeds/$t ]]; then
        cp "$here/seeds/$t"/* "$dir/"
    fi
}

echo "building ${#targets[@]} targets (sanitizer: $sanitizer, target dir: $target_dir)"
fuzz build || exit 1

status=0
summary=()
for t in "${targets[@]}"; do
    corpus=$work/corpus/$t
    artifacts=$work/artifacts/$t
    mkdir -p "$corpus" "$artifacts"
    seed "$t" "$corpus"
    log=$work/$t.log
    echo "== $t: ${secs}s, corpus $corpus"
    fuzz run "$t" "$corpus" -- \
        -max_total_time="$secs" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$artifacts/" >"$log" 2>&1
    rc=$?
    runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
    eps=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
    if (( rc != 0 )); then
        status=1
        echo "!! $t: crash (exit $rc); input in $artifacts/, log $log"
        grep -m5 -E 'panicked|ERROR: libFuzzer|SUMMARY' "$log" | sed 's/^/   /'
    fi
    line=$(printf '%-16s runs %10s  exec/s %6s  cov %5s  %s' "$t" "${runs:-?}" "${eps:-?}" "${cov:-?}" \
        "$( ((rc == 0)) && echo ok || echo CRASH)")
    echo "$line"
    summary+=("$line")
done
echo
printf '%s\n' "${summary[@]}"
exit $status
