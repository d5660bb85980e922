#!/usr/bin/env bash
# Local swarm demo: one lmk-tracker, three lmk-seeders of a random 64 MiB file
# and two lmk-leechers downloading it at the same time, all on 127.0.0.1.
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
alive() { # the tracker and the seeders run until we stop them
    local i
    kill -0 "$TRACKER_PID" 2>/dev/null || fail "lmk-tracker exited early"
    for i in 1 2 3; do kill -0 "${SEEDERS[i - 1]}" 2>/dev/null || fail "seeder$i exited early"; done
}

# A short interval (2 s) so joins, heartbeats and status show up quickly.
start tracker "$BIN/lmk-tracker" --listen 127.0.0.1:0 --interval 2 --status 2
TRACKER_PID=$PID
until_ok 10 "'listening on' line from lmk-tracker" has_listening tracker
TRACKER=$(listening tracker)

mkdir -p "$TMP/share" "$TMP/dl1" "$TMP/dl2"
head -c 64M /dev/urandom >"$TMP/share/demo.bin"
SRC=$(sha1sum <"$TMP/share/demo.bin" | cut -d' ' -f1)

# One slot each (the default, as in the original design): when the two
# leechers ask the same seeder at once, the second is told Unavailable and
# retries a moment later, so both still finish; the seeders' "turned away"
# counters show it happening. --slots 2 would let both download side by side.
SEEDERS=()
for i in 1 2 3; do
    start "seeder$i" "$BIN/lmk-seeder" --tracker "$TRACKER" --listen 127.0.0.1:0 --status 2 "$TMP/share/demo.bin"
    SEEDERS+=("$PID")
done
# A leecher started too early finds no file in the catalog and gives up, so
# wait until every seeder has published its file and joined the swarm.
for i in 1 2 3; do
    until_ok 30 "'listening on' line from seeder$i" has_listening "seeder$i"
    until_ok 30 "catalog publish by seeder$i" grep -q "catalog published" "$TMP/seeder$i.log"
    until_ok 30 "join of seeder$i at the tracker" grep -q "seeder $(listening "seeder$i") joined" "$TMP/tracker.log"
done

START=$(ms) LEECHERS=()
for i in 1 2; do
    start "leecher$i" "$BIN/lmk-leecher" --tracker "$TRACKER" get demo.bin --out "$TMP/dl$i"
    LEECHERS+=("$PID")
done
while kill -0 "${LEECHERS[0]}" 2>/dev/null || kill -0 "${LEECHERS[1]}" 2>/dev/null; do
    [ $(($(ms) - START)) -lt $((DEADLINE * 1000)) ] || fail "leechers not done within $DEADLINE s"
    alive
    sleep 0.1
done
ELAPSED=$(($(ms) - START))
for i in 1 2; do
    wait "${LEECHERS[i - 1]}" || fail "leecher$i exited with status $?"
done
PIDS=("$TRACKER_PID" "${SEEDERS[@]}") # reaped leechers: never signal their PIDs again

# One more round of status lines with the final counts, then stop the
# seeders first so the tracker's table shows them leaving.
sleep 2.5
alive
for pid in "${SEEDERS[@]}"; do kill "$pid"; done
for i in 1 2 3; do wait "${SEEDERS[i - 1]}" || fail "seeder$i exited with status $? on SIGTERM"; done
sleep 0.5
kill "$TRACKER_PID" # it has no state to save: SIGTERM stops it, status 0
wait "$TRACKER_PID" || fail "lmk-tracker exited with status $? on SIGTERM"
PIDS=()
for pid in "${TAGS[@]}"; do wait "$pid" || true; done # every tagged line is out
TAGS=()

for i in 1 2; do
    GOT=$(sha1sum <"$TMP/dl$i/demo.bin" 2>/dev/null | cut -d' ' -f1) || true
    [ "$SRC" = "$GOT" ] || fail "leecher$i copy differs (sha1 ${GOT:-missing} != $SRC)"
    [ ! -e "$TMP/dl$i/demo.bin.part" ] || fail "leecher$i left demo.bin.part behind"
done
echo "demo: PASS: both leechers downloaded demo.bin ($(stat -c %s "$TMP/share/demo.bin") bytes, sha1 $SRC)" \
    "in $((ELAPSED / 1000)).$((ELAPSED % 1000 / 100)) s from a swarm of 3 seeders"
for i in 1 2; do sed -n "s/^demo.bin: done, /demo:   leecher$i: /p" "$TMP/leecher$i.out"; done
