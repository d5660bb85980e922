#!/usr/bin/env bash
# Interop check: stock BitTorrent clients use lmk-tracker as their BEP 15 UDP
# tracker and as their BEP 3 HTTP tracker, all on 127.0.0.1 (no DHT, LSD,
# PEX, UPnP or NAT-PMP; private torrents; sockets bound to 127.0.0.1 and
# watched). The parts run at once since the lifecycle waits 60 s and the
# others fit inside that:
#   aria2c      scripts/aria2-interop.sh: an aria2c seeder and leecher, over
#               udp:// and again over http://
#   libtorrent  scripts/lt-interop.py http: a seeder announcing over http://
#               and a leecher over udp:// meet through the tracker
#   transmission scripts/transmission-interop.sh: Transmission over http://
#               fetches from a libtorrent seeder over udp://, in a network
#               namespace of its own (Transmission takes no 127.0.0.0/8 peer)
#   libtorrent  scripts/lt-interop.py separate: a seeder and a leecher in two
#               processes, then the lifecycle (with libtorrent's own 300 s
#               interval, the tracker still lists both 60 s later)
#   libtorrent  scripts/lt-interop.py together: two sessions in one process
#               (libtorrent keeps one connection id per tracker per process)
# A client that cannot be had (not installed, and no root + apt-get to install
# it from Debian's packages) prints SKIP. Every check prints one
# `real-client: PASS|FAIL|SKIP ...` line; the exit status is 1 if any failed.
# Env: LMK_BIN_DIR=dir holding lmk-tracker (else cargo builds it);
#      DEADLINE=secs bounding the whole check (150); KEEP=1 keeps the logs.
set -euo pipefail

DEADLINE=${DEADLINE:-150}
TMP="" PIDS=()
cleanup() {
    set +e
    local pid
    # Each part stops the processes it started when it is terminated.
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    if [ -n "$TMP" ] && [ -n "${KEEP:-}" ]; then
        echo "real-client: logs kept in $TMP"
    elif [ -n "$TMP" ]; then
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
trap 'echo "real-client: FAIL: interrupted"; exit 130' INT
trap 'echo "real-client: FAIL: terminated"; exit 143' TERM
cd "$(dirname "$0")/.."

if [ -n "${LMK_BIN_DIR:-}" ]; then
    TRACKER=$LMK_BIN_DIR/lmk-tracker
else
    # cargo is a no-op when the binary is fresh, and never tests a stale one.
    cargo build --release --quiet --bin lmk-tracker || { echo "real-client: FAIL: cargo build of lmk-tracker failed"; exit 1; }
    TRACKER=target/release/lmk-tracker
fi
[ -x "$TRACKER" ] || { echo "real-client: FAIL: no executable $TRACKER"; exit 1; }
TRACKER=$(realpath "$TRACKER")

# Debian's python3-libtorrent is built for Debian's /usr/bin/python3, which
# need not be the python3 on PATH (pyenv, venvs).
lt_python() {
    local py
    for py in /usr/bin/python3 python3; do
        if command -v "$py" >/dev/null && "$py" -c 'import libtorrent' 2>/dev/null; then
            command -v "$py"
            return 0
        fi
    done
    return 1
}
NEED=()
command -v aria2c >/dev/null || NEED+=(aria2)
lt_python >/dev/null || NEED+=(python3-libtorrent)
command -v transmission-cli >/dev/null || NEED+=(transmission-cli)
if [ ${#NEED[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "real-client: installing ${NEED[*]} from Debian's packages"
    { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "${NEED[@]}"; } >/dev/null 2>&1 || true
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/real-client.XXXXXX")
NAMES=()
part() { # name command...: runs in the background, output kept for the end
    local name=$1
    shift
    "$@" >"$TMP/$name.result" 2>&1 &
    PIDS+=($!)
    NAMES+=("$name")
}
part aria2c bash scripts/aria2-interop.sh "$TRACKER"
part aria2c-http bash scripts/aria2-interop.sh "$TRACKER" http
if LT_PY=$(lt_python); then
    mkdir "$TMP/lt-together" "$TMP/lt-separate" "$TMP/lt-http"
    part lt-together "$LT_PY" scripts/lt-interop.py "$TRACKER" "$TMP/lt-together" together
    part lt-separate "$LT_PY" scripts/lt-interop.py "$TRACKER" "$TMP/lt-separate" separate
    part lt-http "$LT_PY" scripts/lt-interop.py "$TRACKER" "$TMP/lt-http" http
    part transmission bash scripts/transmission-interop.sh "$TRACKER" "$LT_PY"
    echo "real-client: aria2c (udp://, http://), libtorrent in one process, two processes, a 60 s lifecycle and over http://, Transmission over http://, all at once"
else
    echo "real-client: SKIP libtorrent: python3-libtorrent not available (Debian's package, for /usr/bin/python3)"
    echo "real-client: SKIP transmission: its seeder is libtorrent, not available"
    echo "real-client: aria2c (udp://, http://)"
fi

# Wait for every part, within the deadline; a part still running then is
# terminated (it stops its own processes) and reported.
END=$(($(date +%s) + DEADLINE))
STATUS=()
for i in "${!PIDS[@]}"; do
    while kill -0 "${PIDS[$i]}" 2>/dev/null && [ "$(date +%s)" -lt "$END" ]; do sleep 0.5; done
    if kill -0 "${PIDS[$i]}" 2>/dev/null; then
        kill "${PIDS[$i]}" 2>/dev/null || true
        echo "real-client: FAIL ${NAMES[$i]}: still running after the check's $DEADLINE s" >>"$TMP/${NAMES[$i]}.result"
    fi
    rc=0
    wait "${PIDS[$i]}" || rc=$?
    STATUS+=("$rc")
done
PIDS=() # all reaped: never signal these PIDs again

# Each part's output (logs first, its verdict lines last), then the summary.
FAILS=0 CHECKS=0
for i in "${!NAMES[@]}"; do
    f="$TMP/${NAMES[$i]}.result"
    grep -v '^real-client: ' "$f" >&2 || true
    grep '^real-client: ' "$f" || true
    if [ "${STATUS[$i]}" != 0 ] && [ -d "$TMP/${NAMES[$i]}" ]; then
        # The tail of the failed part's logs (aria2c shows its own).
        for log in "$TMP/${NAMES[$i]}"/*.log "$TMP/${NAMES[$i]}"/*.out; do
            echo "--- ${NAMES[$i]}: ${log##*/}"
            tail -n 15 "$log"
        done >&2
    fi
    if [ "${STATUS[$i]}" != 0 ] && ! grep -q '^real-client: FAIL' "$f"; then
        echo "real-client: FAIL ${NAMES[$i]}: exited with status ${STATUS[$i]} and no verdict"
        FAILS=$((FAILS + 1))
    fi
    CHECKS=$((CHECKS + $(grep -c '^real-client: \(PASS\|FAIL\)' "$f" || true)))
    FAILS=$((FAILS + $(grep -c '^real-client: FAIL' "$f" || true)))
done
if [ "$FAILS" -gt 0 ]; then
    echo "real-client: FAIL: $FAILS of $CHECKS checks failed"
    exit 1
fi
echo "real-client: PASS ($CHECKS checks)"
