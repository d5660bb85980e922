#!/usr/bin/env bash
# Local swarm demo: one lmk-tracker, one lmk-seeder of a random 64 MiB file
# whose upload is limited to 16 MiB/s, and four lmk-leechers started at the
# same moment that fetch from the seeder and from each other, all on 127.0.0.1.
# The summary shows how much each leecher got from the seeder and from the
# other leechers, and how many copies of the file the seeder itself sent.
# Each process's stdout (status table, status lines, progress) is shown with a
# [role] tag; logs (stderr) go to files in the temp dir.
# Env: LMK_BIN_DIR=dir with the binaries (else target/release, built if missing);
#      DEADLINE=secs for the downloads (60); VERBOSE=1 shows the logs too;
#      KEEP=1 keeps the temp dir.
set -euo pipefail

DEADLINE=${DEADLINE:-60}
TMP="" PIDS=() TAGS=() FAILED=""
fail() { FAILED="demo: FAIL: $*"; exit 1; }
on_exit() {
    set +e # clean up whatever fails here
    local pid
    # Programs first; a tagger ends by itself once its program is gone, but
    # one whose program never opened its pipe would wait forever: kill it too.
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    for pid in "${TAGS[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${TAGS[@]}"; do wait "$pid" 2>/dev/null; done
    if [ "$1" != 0 ] && [ -n "$TMP" ] && [ -z "${VERBOSE:-}" ]; then
        for f in "$TMP"/*.log; do echo "--- ${f##*/}"; tail -n 15 "$f"; done >&2
    fi
    if [ -n "$TMP" ] && [ -n "${KEEP:-}" ]; then
        echo "demo: kept $TMP" >&2
    elif [ -n "$TMP" ]; then
        rm -rf "$TMP"
    fi
    if [ -n "$FAILED" ]; then echo "$FAILED" >&2; fi
}
trap 'on_exit $?' EXIT
trap 'FAILED="demo: FAIL: interrupted"; exit 130' INT
trap 'FAILED="demo: FAIL: terminated"; exit 143' TERM
cd "$(dirname "$0")/.."

BIN=${LMK_BIN_DIR:-target/release}
if ! [ -x "$BIN/lmk-tracker" ] || ! [ -x "$BIN/lmk-seeder" ] || ! [ -x "$BIN/lmk-leecher" ]; then
    [ -z "${LMK_BIN_DIR:-}" ] || fail "LMK_BIN_DIR=$LMK_BIN_DIR lacks an lmk-* binary"
    cargo build --release --quiet || fail "cargo build failed"
fi
TMP=$(mktemp -d "${TMPDIR:-/tmp}/lmk-demo.XXXXXX")

# tag NAME FILE: copy stdin to FILE and to stdout, each line tagged [NAME].
tag() {
    local line
    while IFS= read -r line || [ -n "$line" ]; do
        printf '%s\n' "$line" >>"$2"
        printf '[%s] %s\n' "$1" "$line"
    done
}
# start NAME CMD...: CMD in the background, stdout through a FIFO to its own
# tagger (a FIFO, not a pipe, so both are children of this shell and can be
# waited for), stderr to NAME.log (also tagged on screen with VERBOSE=1).
start() {
    local name=$1 err=$TMP/$1.log
    shift
    mkfifo "$TMP/$name.fifo"
    [ -z "${VERBOSE:-}" ] || { err=$TMP/$name.efifo; mkfifo "$err"; }
    "$@" >"$TMP/$name.fifo" 2>"$err" &
    PID=$!
    PIDS+=("$PID")
    tag "$name" "$TMP/$name.out" <"$TMP/$name.fifo" &
    TAGS+=($!)
    [ -z "${VERBOSE:-}" ] || { tag "$name" "$TMP/$name.log" <"$err" & TAGS+=($!); }
}
# until_ok SECS WHAT CMD...: poll CMD every 0.1 s; fail naming WHAT after SECS.
until_ok() {
    local i secs=$1 what=$2
    shift 2
    for ((i = 0; i < secs * 10; i++)); do
        if "$@" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    fail "no $what within $secs s"
}
listening() { sed -n 's/^listening on //p' "$TMP/$1.out" 2>/dev/null; }
has_listening() { [ -n "$(listening "$1")" ]; }
ms() { echo $(($(date +%s%N) / 1000000)); }
alive() { # the tracker and the seeder run until we stop them
    kill -0 "$TRACKER_PID" 2>/dev/null || fail "lmk-tracker exited early"
    kill -0 "$SEEDER_PID" 2>/dev/null || fail "lmk-seeder exited early"
}

# A short interval (2 s) so joins, heartbeats and status show up quickly.
start tracker "$BIN/lmk-tracker" --listen 127.0.0.1:0 --interval 2 --status 2
TRACKER_PID=$PID
until_ok 10 "'listening on' line from lmk-tracker" has_listening tracker
TRACKER=$(listening tracker)

N=4 UP=16M
mkdir -p "$TMP/share"
head -c 64M /dev/urandom >"$TMP/share/demo.bin"
SRC=$(sha1sum <"$TMP/share/demo.bin" | cut -d' ' -f1)

# One seeder with a slow uplink: alone it needs 4 x 4 s to hand each leecher
# a copy; in a swarm it sends each chunk about once and the leechers pass the
# chunks on, so all four finish in about the time of one copy.
start seeder "$BIN/lmk-seeder" --tracker "$TRACKER" --listen 127.0.0.1:0 --up-limit "$UP" --status 2 \
    "$TMP/share/demo.bin"
SEEDER_PID=$PID
# A leecher started too early finds no file in the catalog and gives up, so
# wait until the seeder has published its file and joined the swarm.
until_ok 30 "'listening on' line from the seeder" has_listening seeder
until_ok 30 "catalog publish by the seeder" grep -q "catalog published" "$TMP/seeder.log"
until_ok 30 "join of the seeder at the tracker" grep -q "seeder $(listening seeder) joined" "$TMP/tracker.log"

# Each leecher keeps serving for 3 s after it is complete (or until it has
# uploaded one copy), so the last ones still find sources.
START=$(ms) LEECHERS=()
for i in $(seq 1 $N); do
    mkdir -p "$TMP/dl$i"
    start "leecher$i" "$BIN/lmk-leecher" --tracker "$TRACKER" --listen 127.0.0.1:0 --up-limit "$UP" \
        --seed-time 3 get demo.bin --out "$TMP/dl$i"
    LEECHERS+=("$PID")
done
running() { local pid; for pid in "${LEECHERS[@]}"; do kill -0 "$pid" 2>/dev/null && return 0; done; return 1; }
while running; do
    [ $(($(ms) - START)) -lt $((DEADLINE * 1000)) ] || fail "leechers not done within $DEADLINE s"
    alive
    sleep 0.1
done
for i in $(seq 1 $N); do
    wait "${LEECHERS[i - 1]}" || fail "leecher$i exited with status $?"
done
LAST=0
for i in $(seq 1 $N); do
    t=$(sed -n 's/^demo.bin: done, .* in \([0-9.]*\)s .*/\1/p' "$TMP/leecher$i.out")
    LAST=$(echo "$t $LAST" | awk '{print ($1 > $2) ? $1 : $2}')
done
PIDS=("$TRACKER_PID" "$SEEDER_PID") # reaped leechers: never signal their PIDs again

# Stop the seeder first so the tracker's table shows it leaving; its last
# status line has the final count of copies sent.
kill "$SEEDER_PID"
wait "$SEEDER_PID" || fail "lmk-seeder exited with status $? on SIGTERM"
sleep 0.5
kill "$TRACKER_PID" # it has no state to save: SIGTERM stops it, status 0
wait "$TRACKER_PID" || fail "lmk-tracker exited with status $? on SIGTERM"
PIDS=()
for pid in "${TAGS[@]}"; do wait "$pid" || true; done # every tagged line is out
TAGS=()

for i in $(seq 1 $N); do
    GOT=$(sha1sum <"$TMP/dl$i/demo.bin" 2>/dev/null | cut -d' ' -f1) || true
    [ "$SRC" = "$GOT" ] || fail "leecher$i copy differs (sha1 ${GOT:-missing} != $SRC)"
    [ ! -e "$TMP/dl$i/.lmk" ] || fail "leecher$i left its scratch directory .lmk behind"
done
SENT=$(grep -E '^([0-9TZ:-]+ )?seeder:' "$TMP/seeder.out" | tail -n 1 | sed -n 's/.*| sent \([^|]*\) |.*/\1/p')
echo "demo: PASS: $N leechers downloaded demo.bin ($(stat -c %s "$TMP/share/demo.bin") bytes, sha1 $SRC);" \
    "the last finished after ${LAST}s; one copy through the seeder's $UP/s uplink takes 4.0s"
echo "demo:   seeder: sent $SENT"
for i in $(seq 1 $N); do sed -n "s/^demo.bin: done, /demo:   leecher$i: /p" "$TMP/leecher$i.out"; done
