#!/usr/bin/env bash
# make fuzz SECONDS=N: builds the cargo-fuzz targets in fuzz/ and runs each
# for N seconds, one after another. Prints per target the executions and the
# result; exits 1 if any target crashed, hung or ran out of memory (the input
# is kept in fuzz/artifacts/TARGET/, the log in fuzz/logs/TARGET.log).
#
#   scripts/fuzz.sh [--skip-missing] SECONDS [TARGET...]
#
# --skip-missing (CI): print SKIP and succeed when nightly or cargo-fuzz is absent.
# Corpora grow in fuzz/corpus/TARGET (not committed); fuzz/seeds/TARGET holds
# valid encodings made by the encoders (cargo +nightly run --example seeds).
set -uo pipefail
cd "$(dirname "$0")/../fuzz"

skip_missing=0
if [ "${1:-}" = "--skip-missing" ]; then
    skip_missing=1
    shift
fi
secs="${1:-}"
case "$secs" in
    '' | *[!0-9]*) echo "usage: $0 [--skip-missing] SECONDS [TARGET...]" >&2; exit 2 ;;
esac
shift

missing() {
    if [ "$skip_missing" = 1 ]; then
        echo "fuzz: SKIP ($1)"
        exit 0
    fi
    echo "fuzz: $1; install with: rustup toolchain install nightly && cargo +nightly install cargo-fuzz" >&2
    exit 1
}
cargo +nightly --version >/dev/null 2>&1 || missing "no nightly toolchain"
cargo +nightly fuzz --version >/dev/null 2>&1 || missing "cargo-fuzz not installed"

# Safe Rust only: the address sanitizer would find nothing and cost half the
# speed; panics, overflow checks (on by default) and libFuzzer's own timeout
# and RSS limits are what catch bugs here.
build=(--sanitizer none)
cargo +nightly fuzz build "${build[@]}" || { echo "fuzz: build failed" >&2; exit 1; }

targets=("$@")
if [ ${#targets[@]} = 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
mkdir -p logs

# One target: its corpus, then the committed seeds; prints one line, returns non-zero on a finding.
run_one() {
    local t=$1 log="logs/$1.log" start=$SECONDS rc runs took rss artifact why
    mkdir -p "corpus/$t"
    local dirs=("corpus/$t")
    [ -d "seeds/$t" ] && dirs+=("seeds/$t")
    # -timeout: one input taking 10 s is a hang; -rss_limit_mb: a leak or an untrusted allocation.
    cargo +nightly fuzz run "${build[@]}" "$t" "${dirs[@]}" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=1024 -print_final_stats=1 >"$log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    took=$((SECONDS - start))
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)
    if [ $rc = 0 ]; then
        printf 'fuzz: %-18s %12s runs in %4ss, peak RSS %5s MB: ok\n' "$t" "${runs:-?}" "$took" "${rss:-?}"
        return 0
    fi
    artifact=$(grep -o 'artifacts/[^ ]*' "$log" | tail -1)
    why=$(grep -m1 -E "panicked at|ERROR: libFuzzer|SUMMARY" "$log")
    printf 'fuzz: %-18s %12s runs: FAILED (%s) %s; see fuzz/%s\n' "$t" "${runs:-?}" "$why" "${artifact:+fuzz/$artifact}" "$log"
    return 1
}

# FUZZ_JOBS targets at a time (default 1: the figures are per core).
jobs=${FUZZ_JOBS:-1}
failed=0
running=0
for t in "${targets[@]}"; do
    if [ "$running" -ge "$jobs" ]; then
        wait -n || failed=1
        running=$((running - 1))
    fi
    run_one "$t" &
    running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
    wait -n || failed=1
    running=$((running - 1))
done
exit $failed
