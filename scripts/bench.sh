#!/usr/bin/env bash
# make bench: LMKtorrent's figures next to references measured in the same run,
# everything on 127.0.0.1. Each figure is the median of RUNS runs with min and max.
#
#   references   iperf3 (one loopback TCP stream), openssl speed -evp sha1 (one
#                core), curl of the same file from a local HTTP server
#   aria2c       one aria2c seeder -> one aria2c leecher, lmk-tracker as tracker
#   LMKtorrent   1 GiB from 1 and from 4 seeders: wall time, MB/s, peak RSS of the
#                leecher and seeders, leecher CPU seconds per GiB; leecher peak RSS
#                for a 4 GiB file; leecher peak RSS with 50 seeders sending at
#                once (256 MiB); seeder start-up (hash and publish 1 GiB)
#   trackers     BEP 15 announces/s under benches/tracker_load.rs and RSS per peer
#                after 100,000 distinct peers, lmk-tracker and opentracker; BEP 3
#                announces/s over HTTP under benches/http_load.rs (16 connections,
#                keep-alive where the tracker keeps them: lmk-tracker; a new
#                connection per announce where it closes them: opentracker)
#   status page  the first, a filtered and the last page of lmk-tracker's status
#                page with 100,000 files in its catalog (benches/http_load.rs)
#                after 100,000, 1,000,000 and 10,000,000 distinct peers, lmk-tracker
#                and opentracker, beside a per-datagram UDP echo server (the
#                ceiling of one recv_from and one send_to per datagram, sending
#                the tracker's bytes) and lmk-tracker's own batched loop with the
#                echo as its core; announce latency while 1,000,000 peers expire
#                (also with the server under SCHED_FIFO, when root); the same
#                trackers and echo under aquatic_udp_load_test (cargo install)
#
# Prints a table with the targets (ratios, PASS/MISS) and, last, one JSON object.
# Source and downloaded files live in a per-run directory on tmpfs (/dev/shm) so
# that the disk does not bound the figures; it is removed at the end. Pages are
# pre-faulted before each timed download (see prefault). Every process started
# here is stopped by its PID on exit. MB = 10^6 bytes. docs/BENCHMARKS.md has
# the method in full and the figures of a run.
#
# Env: RUNS (3), SIZE_MIB (1024), BIG_MIB (4096; 0 skips), BIG_RUNS (3),
#      TRACKER_SECONDS (5), TRACKER_PEERS (100000), TRACKER_BIG_RUNS (1: runs at
#      10,000,000 peers and of the expiry), SHM (/dev/shm), KEEP=1 keeps
#      the run directory, NO_INSTALL=1 never calls apt-get, PREFAULT=0 skips the
#      pre-faulting, LMK_BIN_DIR=dir with the lmk-* binaries (else cargo builds them),
#      TRACKERS_ONLY=1 runs only the UDP tracker sections (6), not transfers or HTTP,
#      TRANSFERS_ONLY=1 only the references and transfers (1-5), not the trackers,
#      MANY (50; 0 skips): seeders sending at once in section 5b.
set -euo pipefail

RUNS=${RUNS:-3}
SIZE_MIB=${SIZE_MIB:-1024}
BIG_MIB=${BIG_MIB:-4096}
BIG_RUNS=${BIG_RUNS:-3}
MANY=${MANY:-50}
BIG_ASKED=$BIG_MIB
TRACKER_SECONDS=${TRACKER_SECONDS:-5}
TRACKER_PEERS=${TRACKER_PEERS:-100000}
TRACKER_BIG_RUNS=${TRACKER_BIG_RUNS:-1}
TRACKER_BIG_PEERS=${TRACKER_BIG_PEERS:-10000000}
SHM=${SHM:-/dev/shm}
SEEDERS=4 # the many-seeder configuration
SLOTS=4   # slots per seeder

RUN="" PIDS=() FAILED=""
T0=$(date +%s)
fail() { FAILED="bench: FAIL: $*"; exit 1; }
log() { printf '[bench %4ds] %s\n' "$(($(date +%s) - T0))" "$*"; }
ms() { echo $(($(date +%s%N) / 1000000)); }
# Other work on this machine shows in the load average: printed with each section.
section() { log "== $* == (load average $(cut -d' ' -f1 /proc/loadavg))"; }

# Stops a process and whatever it started (e.g. /usr/bin/time -> timeout ->
# program), children first, by PID; KILL after 3 s; reaps it.
stop_tree() {
    local pid=$1 child
    # shellcheck disable=SC2013 # PIDs, one word each
    for child in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do stop_tree "$child"; done
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 30); do
        kill -0 "$pid" 2>/dev/null || break
        # A zombie child of ours is gone but for the reaping.
        [ "$(cut -d' ' -f3 /proc/"$pid"/stat 2>/dev/null)" != Z ] || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
# Stops PIDs started here and forgets them (a reaped PID is never signalled again).
stop() {
    local pid keep=() p
    for pid in "$@"; do stop_tree "$pid"; done
    for p in "${PIDS[@]}"; do
        for pid in "$@"; do [ "$p" != "$pid" ] || continue 2; done
        keep+=("$p")
    done
    PIDS=("${keep[@]}")
}
forget() { # a PID that was reaped by wait
    local keep=() p
    for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}
on_exit() {
    set +e # clean up whatever fails here
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_tree "${PIDS[i]}"; done
    if [ "$1" != 0 ] && [ -n "$RUN" ]; then
        for f in "$RUN"/*.log; do [ -s "$f" ] && { echo "--- ${f##*/}"; tail -n 8 "$f"; }; done >&2
    fi
    if [ -n "$RUN" ] && [ -n "${KEEP:-}" ]; then
        echo "bench: kept $RUN" >&2
    elif [ -n "$RUN" ]; then
        rm -rf "$RUN"
    fi
    if [ -n "$FAILED" ]; then echo "$FAILED" >&2; fi
}
trap 'on_exit $?' EXIT
trap 'FAILED="bench: FAIL: interrupted"; exit 130' INT
trap 'FAILED="bench: FAIL: terminated"; exit 143' TERM
cd "$(dirname "$0")/.."

# --- tools: install from Debian's packages what is missing (as root only) ------
need=()
command -v iperf3 >/dev/null || need+=(iperf3)
command -v aria2c >/dev/null || need+=(aria2)
command -v opentracker >/dev/null || need+=(opentracker)
command -v curl >/dev/null || need+=(curl)
command -v openssl >/dev/null || need+=(openssl)
[ -x /usr/bin/time ] || need+=(time)
command -v ss >/dev/null || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
    if [ -z "${NO_INSTALL:-}" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        log "installing ${need[*]} from Debian's packages"
        # iperf3's "start a daemon?" question defaults to no when noninteractive.
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"; } >/dev/null 2>&1 ||
            fail "apt-get install ${need[*]} failed"
    else
        fail "missing ${need[*]} (Debian packages; run as root or install them)"
    fi
fi
command -v python3 >/dev/null || fail "python3 is needed (torrent, HTTP server, summary)"

# --- build, then snapshot the binaries so a rebuild during the run changes nothing
if [ -n "${LMK_BIN_DIR:-}" ]; then
    SRC_BIN=$LMK_BIN_DIR
else
    log "cargo build --release"
    cargo build --release --quiet || fail "cargo build failed"
    SRC_BIN=target/release
fi
bench_exe() { # NAME: the executable cargo bench built for benches/NAME.rs
    cargo bench --quiet --bench "$1" --no-run --message-format=json | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == sys.argv[1] and m.get("executable"):
        print(m["executable"])' "$1" || true
}
log "cargo bench --no-run (benches/tracker_load.rs, http_load.rs, udp_echo.rs, expiry_stall.rs, announce_cost.rs)"
LOADGEN=$(bench_exe tracker_load)
[ -x "$LOADGEN" ] || fail "cargo bench --bench tracker_load --no-run built no executable"
HTTPGEN=$(bench_exe http_load)
[ -x "$HTTPGEN" ] || fail "cargo bench --bench http_load --no-run built no executable"
ECHO=$(bench_exe udp_echo)
[ -x "$ECHO" ] || fail "cargo bench --bench udp_echo --no-run built no executable"
STALL=$(bench_exe expiry_stall)
[ -x "$STALL" ] || fail "cargo bench --bench expiry_stall --no-run built no executable"
COST=$(bench_exe announce_cost)
[ -x "$COST" ] || fail "cargo bench --bench announce_cost --no-run built no executable"

MEM_AVAIL_MIB=$(($(awk '/^MemAvailable:/ {print $2}' /proc/meminfo) / 1024))
SHM_FREE_MIB=$(($(df -Pk "$SHM" | awk 'NR == 2 {print $4}') / 1024))
# Source and copy of the big file, the 1 GiB source, and some slack.
if [ "$BIG_MIB" -gt 0 ] && { [ $((BIG_MIB * 2 + SIZE_MIB + 1024)) -gt "$SHM_FREE_MIB" ] ||
    [ $((BIG_MIB * 2 + SIZE_MIB + 2048)) -gt "$MEM_AVAIL_MIB" ]; }; then
    log "WARNING: $SHM has $SHM_FREE_MIB MiB free, $MEM_AVAIL_MIB MiB available: skipping the $BIG_MIB MiB file"
    BIG_MIB=0
fi
[ $((SIZE_MIB * 2 + 512)) -le "$SHM_FREE_MIB" ] || fail "$SHM has only $SHM_FREE_MIB MiB free"
RUN=$(mktemp -d "$SHM/lmk-bench.XXXXXX")
mkdir -p "$RUN/bin" "$RUN/src" "$RUN/out"
cp "$SRC_BIN/lmk-tracker" "$SRC_BIN/lmk-seeder" "$SRC_BIN/lmk-leecher" "$RUN/bin/" || fail "no lmk-* binaries in $SRC_BIN"
cp "$LOADGEN" "$RUN/bin/tracker_load"
cp "$HTTPGEN" "$RUN/bin/http_load"
cp "$ECHO" "$RUN/bin/udp_echo"
cp "$STALL" "$RUN/bin/expiry_stall"
cp "$COST" "$RUN/bin/announce_cost"
BIN=$RUN/bin
SAMPLES=$RUN/samples.tsv
: >"$SAMPLES"
sample() { printf '%s\t%s\n' "$1" "$2" >>"$SAMPLES"; } # figure value
CPU_MODEL=$(lscpu | sed -n 's/^Model name: *//p' | head -n 1)
CORES=$(nproc)
log "machine: $CPU_MODEL, $CORES cores, $(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024)) MiB RAM; load average $(cut -d' ' -f1-3 /proc/loadavg)"
LOAD_START=$(cut -d' ' -f1 /proc/loadavg)
COMMIT=$(git describe --always --dirty 2>/dev/null || echo unknown)
log "binaries built from commit $COMMIT, copied to $RUN/bin for the whole run"
log "files on $(findmnt -no FSTYPE --target "$RUN" 2>/dev/null | head -n 1): $RUN (source and downloads), so the disk does not bound the figures"

SIZE=$((SIZE_MIB << 20))
NAME=bench-$SIZE_MIB.bin
# Random data, written in 4 MiB blocks (tmpfs page allocation dominates).
make_file() { dd if=/dev/urandom of="$1" bs=4M count=$(($2 / 4)) iflag=fullblock status=none; }
if [ -z "${TRACKERS_ONLY:-}" ]; then
    log "making $SIZE_MIB MiB of random data"
    make_file "$RUN/src/$NAME" "$SIZE_MIB"
fi
# This machine is a VM whose balloon takes freed memory back (free page
# reporting): the first write to such a page faults in the host, which made
# writing 1 GiB to tmpfs cost anywhere from 0.4 to 2.6 s. So right before each
# timed download (curl, aria2c, lmk-leecher alike) and each dd reference, as
# much zeros as the download is written to the tmpfs and deleted: every run
# starts from the same recently freed pages. PREFAULT=0 turns this off.
prefault() { # MiB
    [ "${PREFAULT:-1}" = 1 ] || return 0
    dd if=/dev/zero of="$RUN/prefault.bin" bs=1M count="$1" status=none
    rm -f "$RUN/prefault.bin"
}

# Free loopback ports, TCP and UDP alike free: prints N of them.
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
out, held = [], []
while len(out) < int(sys.argv[1]):
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM); t.bind(("127.0.0.1", 0))
    p = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", p)); out.append(p)
    except OSError:
        pass
    held += [t, u]
print(*out)
EOF
}
# wait_line FILE REGEX SECS PID: until FILE has a line matching REGEX.
wait_line() {
    local end=$(($(ms) + $3 * 1000))
    until grep -qE "$2" "$1" 2>/dev/null; do
        [ "$(ms)" -lt "$end" ] || return 1
        [ -z "${4:-}" ] || kill -0 "$4" 2>/dev/null || return 1
        sleep 0.02
    done
}
# Every socket of PID faces 127.0.0.0/8 (or is unbound/wildcard with no peer).
loopback_only() {
    local foreign
    foreign=$(ss -tunapH 2>/dev/null | grep -E "pid=$1," | awk '{print $5; print $6}' |
        grep -vE '^(127\.[0-9.]+|\*|0\.0\.0\.0):' || true)
    [ -z "$foreign" ] || fail "pid $1 has a socket beyond loopback: $foreign"
}
descendants() { # PIDs of the processes below PID
    local child
    # shellcheck disable=SC2013 # PIDs, one word each
    for child in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
        echo "$child"
        descendants "$child"
    done
}
# Figures parsed from /usr/bin/time -f '%e %U %S %M'.
read_time() { read -r T_WALL T_USER T_SYS T_RSS <"$1"; }
py() { python3 -c "$@"; }
status_kib() { awk -v k="$2:" '$1 == k {print $2}' /proc/"$1"/status; }

SERVER_PREFIX=() # a command the servers under test run through (chrt, for the realtime latency rows)
start_tracker() { # NAME ARGS...: sets TR_ADDR and TR_PID
    local name=$1
    shift
    "${SERVER_PREFIX[@]}" "$BIN/lmk-tracker" --listen 127.0.0.1:0 --status 0 "$@" >"$RUN/$name.out" 2>"$RUN/$name.log" &
    TR_PID=$!
    PIDS+=("$TR_PID")
    wait_line "$RUN/$name.out" '^listening on 127\.0\.0\.1:[0-9]+$' 10 "$TR_PID" || fail "$name did not start"
    TR_ADDR=$(sed -n 's/^listening on //p' "$RUN/$name.out")
}

if [ -z "${TRACKERS_ONLY:-}" ]; then # sections 1-5
# --- 1. references ---------------------------------------------------------------
section "references"
for i in $(seq "$RUNS"); do
    # One core's SHA-1 over 16 KiB blocks; openssl prints 1000s of bytes per second.
    k=$(openssl speed -evp sha1 -bytes 16384 -seconds 3 2>/dev/null | awk '/^sha1 / {sub(/k$/, "", $2); print $2}')
    [ -n "$k" ] || fail "openssl speed printed no sha1 line"
    v=$(py "print(round($k / 1000, 1))")
    sample sha1_MBps "$v"
    log "openssl speed -evp sha1 -bytes 16384, run $i/$RUNS: $v MB/s"
done

read -r IPERF_PORT HTTP_PORT < <(free_ports 2)
iperf3 -s -B 127.0.0.1 -p "$IPERF_PORT" >"$RUN/iperf3-server.log" 2>&1 &
IPERF_PID=$!
PIDS+=("$IPERF_PID")
for _ in $(seq 50); do ss -tlnH "sport = :$IPERF_PORT" | grep -q . && break; sleep 0.1; done
loopback_only "$IPERF_PID"
for i in $(seq "$RUNS"); do
    iperf3 -c 127.0.0.1 -B 127.0.0.1 -p "$IPERF_PORT" -P 1 -t 3 -J >"$RUN/iperf3.json" 2>"$RUN/iperf3.log" ||
        fail "iperf3 client failed"
    v=$(py "import json; print(round(json.load(open('$RUN/iperf3.json'))['end']['sum_received']['bits_per_second'] / 8e6, 1))")
    sample iperf3_MBps "$v"
    log "iperf3 one TCP stream over loopback, run $i/$RUNS: $v MB/s"
done
stop "$IPERF_PID"

for i in $(seq "$RUNS"); do
    # What writing new pages to tmpfs costs here: every download pays it too.
    prefault "$SIZE_MIB"
    t=$(ms)
    dd if=/dev/zero of="$RUN/out/zero.bin" bs=1M count="$SIZE_MIB" status=none
    t=$(($(ms) - t))
    rm -f "$RUN/out/zero.bin"
    v=$(py "print(round($SIZE / $t / 1e3, 1))")
    sample tmpfs_write_MBps "$v"
    log "dd if=/dev/zero bs=1M to tmpfs ($SIZE_MIB MiB), run $i/$RUNS: $v MB/s"
done

(cd "$RUN/src" && exec python3 -m http.server "$HTTP_PORT" --bind 127.0.0.1) >"$RUN/http.log" 2>&1 &
HTTP_PID=$!
PIDS+=("$HTTP_PID")
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$HTTP_PORT/" && break; sleep 0.1; done
loopback_only "$HTTP_PID"
for i in $(seq "$RUNS"); do
    rm -f "$RUN/out/$NAME"
    prefault "$SIZE_MIB"
    # Into a file on the same tmpfs, as the leechers do.
    read -r secs bytes < <(curl -sS -o "$RUN/out/$NAME" -w '%{time_total} %{size_download}\n' \
        "http://127.0.0.1:$HTTP_PORT/$NAME") || fail "curl failed"
    [ "$bytes" = "$SIZE" ] || fail "curl got $bytes bytes, not $SIZE"
    v=$(py "print(round($SIZE / $secs / 1e6, 1))")
    sample curl_MBps "$v"
    log "curl from python3 -m http.server, run $i/$RUNS: $v MB/s ($secs s)"
done
rm -f "$RUN/out/$NAME"
stop "$HTTP_PID"

# --- 2. seeder start-up: hash and publish ------------------------------------------
section "lmk-seeder start-up: hash and publish $SIZE_MIB MiB"
start_seeder() { # NAME TRACKER FILE: sets SD_PID
    "$BIN/lmk-seeder" --tracker "$2" --listen 127.0.0.1:0 --slots "$SLOTS" --status 0 "$3" \
        >"$RUN/$1.out" 2>"$RUN/$1.log" &
    SD_PID=$!
    PIDS+=("$SD_PID")
}
# Trackers for LMK transfers: 1 s interval, as in the demo and the tests.
start_tracker tracker-startup --interval 1 -q
for i in $(seq "$RUNS"); do
    t=$(ms)
    start_seeder "startup-$i" "$TR_ADDR" "$RUN/src/$NAME"
    wait_line "$RUN/startup-$i.log" 'catalog published' 120 "$SD_PID" || fail "seeder $i never published"
    t=$(($(ms) - t))
    hashed=$(sed -nE 's/.* in [0-9]+ chunks, hashed in ([0-9.]+)s .*/\1/p' "$RUN/startup-$i.log" | head -n 1)
    [ -n "$hashed" ] || fail "no 'hashed in' line in the seeder log"
    stop "$SD_PID"
    v=$(py "print(round($SIZE / $hashed / 1e6, 1))")
    sample seeder_hash_MBps "$v"
    sample seeder_publish_s "$(py "print($t / 1000)")"
    log "seeder run $i/$RUNS: hashed in ${hashed}s ($v MB/s), 'catalog published' $((t / 1000)).$(printf %03d $((t % 1000)))s after start"
done
stop "$TR_PID"

# --- 3. LMKtorrent transfers ----------------------------------------------------------
# content id of a published file, from a seeder log
content_id() { sed -nE 's/.*content id ([0-9a-f]{40}).*/\1/p' "$1" | head -n 1; }
# seeders the tracker lists for an info hash (BEP 15 scrape)
scrape_seeders() { # TRACKER HASH
    python3 - "$1" "$2" <<'EOF'
import socket, struct, sys
host, port = sys.argv[1].rsplit(":", 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1)
s.sendto(struct.pack(">QII", 0x41727101980, 0, 7), (host, int(port)))
action, tid, conn = struct.unpack(">IIQ", s.recv(64))
s.sendto(struct.pack(">QII", conn, 2, 8) + bytes.fromhex(sys.argv[2]), (host, int(port)))
print(struct.unpack(">IIIII", s.recv(64)[:20])[2])
EOF
}
# start_seeders N TRACKER FILE TAG: N more seeders, all published and announced.
SEEDER_PIDS=()
start_seeders() {
    local n=$1 i id want
    want=$((${#SEEDER_PIDS[@]} + n))
    for ((i = ${#SEEDER_PIDS[@]} + 1; i <= want; i++)); do
        start_seeder "seeder-$4-$i" "$2" "$3"
        SEEDER_PIDS+=("$SD_PID")
    done
    for ((i = 1; i <= want; i++)); do
        wait_line "$RUN/seeder-$4-$i.log" 'catalog published' 300 "${SEEDER_PIDS[i - 1]}" ||
            fail "seeder $i of $4 never published"
        loopback_only "${SEEDER_PIDS[i - 1]}"
    done
    id=$(content_id "$RUN/seeder-$4-1.log")
    for _ in $(seq 100); do
        [ "$(scrape_seeders "$2" "$id" 2>/dev/null || echo 0)" -ge "$want" ] && return 0
        sleep 0.1
    done
    fail "the tracker does not list $want seeders of $4"
}
# leech LABEL TRACKER NAME BYTES SOURCE RUN SEEDERS [LEECHER OPTION...]: one verified download, timed.
leech() {
    local label=$1 pid rc mbps cpu used extra=("${@:8}")
    rm -rf "$RUN/out" && mkdir -p "$RUN/out"
    prefault $(($4 >> 20))
    # time(1) reports the leecher's wall time, user+sys and peak RSS (timeout adds ~1 MB, not more).
    # Not -q: its "done" line says how many peers sent (off a terminal, a plain progress line every few seconds).
    /usr/bin/time -f '%e %U %S %M' -o "$RUN/leech.time" timeout -k 5 300 \
        "$BIN/lmk-leecher" --tracker "$2" --listen 127.0.0.1:0 --seed-ratio 0 "${extra[@]}" get "$3" --out "$RUN/out" >"$RUN/leech.out" 2>"$RUN/leech.log" &
    pid=$!
    PIDS+=("$pid")
    rc=0
    wait "$pid" || rc=$?
    forget "$pid"
    [ "$rc" = 0 ] || fail "lmk-leecher exited with status $rc ($label run $6)"
    [ "$(stat -c %s "$RUN/out/$3")" = "$4" ] || fail "lmk-leecher wrote a file of the wrong size"
    if [ "$6" = 1 ]; then cmp -s "$5" "$RUN/out/$3" || fail "lmk-leecher copy differs from the source"; fi
    rm -f "$RUN/out/$3" # drop the copy before the next run
    read_time "$RUN/leech.time"
    used=$(cat "$RUN/leech.out" "$RUN/leech.log" | sed -nE 's/.*done, .* from ([0-9]+) (seeder|peer).*/\1/p' | tail -n 1)
    [ "${used:-0}" -ge "$7" ] || log "WARNING: $label run $6 used ${used:-?} seeder(s) of $7"
    mbps=$(py "print(round($4 / $T_WALL / 1e6, 1))")
    cpu=$(py "print(round(($T_USER + $T_SYS) / ($4 / 2**30), 2))")
    sample "${label}_wall_s" "$T_WALL"
    sample "${label}_MBps" "$mbps"
    sample "${label}_leecher_rss_KiB" "$T_RSS"
    sample "${label}_cpu_s_per_GiB" "$cpu"
    log "$label run $6: ${T_WALL}s, $mbps MB/s from ${used:-?} seeder(s), leecher peak RSS $((T_RSS / 1024)) MiB, CPU ${cpu}s/GiB (user ${T_USER}s sys ${T_SYS}s)"
}
seeders_hwm() { # largest VmHWM over SEEDER_PIDS
    local p m=0 v
    for p in "${SEEDER_PIDS[@]}"; do
        v=$(status_kib "$p" VmHWM)
        [ "${v:-0}" -le "$m" ] || m=$v
    done
    echo "$m"
}

section "LMKtorrent: $SIZE_MIB MiB, 1 seeder then $SEEDERS seeders (--slots $SLOTS), one leecher"
# Section 5b's seeders all announce from 127.0.0.1.
start_tracker tracker-lmk --interval 1 -q --max-peers-per-ip-in-swarm $((MANY + SEEDERS))
LMK_TRACKER_PID=$TR_PID LMK_TRACKER=$TR_ADDR
start_seeders 1 "$LMK_TRACKER" "$RUN/src/$NAME" 1g
for i in $(seq "$RUNS"); do leech lmk1 "$LMK_TRACKER" "$NAME" "$SIZE" "$RUN/src/$NAME" "$i" 1; done
sample lmk1_seeder_rss_KiB "$(seeders_hwm)"
start_seeders $((SEEDERS - 1)) "$LMK_TRACKER" "$RUN/src/$NAME" 1g
for i in $(seq "$RUNS"); do leech lmk4 "$LMK_TRACKER" "$NAME" "$SIZE" "$RUN/src/$NAME" "$i" "$SEEDERS"; done
sample lmk4_seeder_rss_KiB "$(seeders_hwm)"
log "seeders' peak RSS (VmHWM, hashing included): 1-seeder runs $(($(awk '$1=="lmk1_seeder_rss_KiB"{print $2}' "$SAMPLES") / 1024)) MiB, $SEEDERS-seeder runs $(($(awk '$1=="lmk4_seeder_rss_KiB"{print $2}' "$SAMPLES") / 1024)) MiB (largest)"
stop "${SEEDER_PIDS[@]}"
SEEDER_PIDS=()

# --- 4. aria2c -> aria2c through lmk-tracker -------------------------------------------
section "aria2c: $SIZE_MIB MiB from one aria2c seeder to one aria2c leecher, lmk-tracker as UDP tracker"
# Its own tracker at info level: the log says when the seeder has announced.
start_tracker tracker-aria --interval 2
ARIA_TRACKER_PID=$TR_PID
ARIA_PORT=${TR_ADDR##*:}
# A private torrent (BEP 27: tracker-only peers) with 1 MiB pieces (aria2c fetches 16 KiB blocks of
# them; LMK hashes this file in its default 128 KiB chunks).
python3 scripts/mktorrent.py "$RUN/src/$NAME" "udp://127.0.0.1:$ARIA_PORT/announce" "$RUN/bench.torrent" $((1 << 20)) >/dev/null
# aria2c speaks UDP trackers over its DHT socket only, so DHT is on, with a fresh
# routing table and no entry point; LPD, PEX and IPv6 off; sockets on 127.0.0.1.
aria_args() { # NAME TCP UDP DIR: sets ARIA_ARGS (a fresh DHT file each time)
    rm -f "$RUN/$1.dht"
    ARIA_ARGS=(--no-conf=true --dir="$4" --listen-port="$2" --interface=127.0.0.1
        --enable-dht=true --dht-listen-port="$3" --dht-file-path="$RUN/$1.dht"
        --enable-dht6=false --disable-ipv6=true --bt-enable-lpd=false --enable-peer-exchange=false
        --bt-external-ip=127.0.0.1 --async-dns=false --file-allocation=none --summary-interval=0
        --bt-save-metadata=false --console-log-level=warn --log="$RUN/$1.log" --log-level=notice)
}
# aria2c runs this hook once the download is complete and verified, before it
# seeds and exits (its exit comes 1-2 s later): the end of its transfer time.
printf '#!/bin/sh\ndate +%%s%%N >"%s"\n' "$RUN/aria-done.ns" >"$RUN/aria-done.sh"
chmod +x "$RUN/aria-done.sh"
read -r SEED_TCP SEED_UDP < <(free_ports 2)
# The seeder verifies its copy, then seeds until stopped.
aria_args aria-seeder "$SEED_TCP" "$SEED_UDP" "$RUN/src"
aria2c "${ARIA_ARGS[@]}" --check-integrity=true --seed-ratio=0.0 "$RUN/bench.torrent" >"$RUN/aria-seeder.out" 2>&1 &
ARIA_SEEDER=$!
PIDS+=("$ARIA_SEEDER")
wait_line "$RUN/tracker-aria.log" "seeder 127\.0\.0\.1:$SEED_TCP joined" 120 "$ARIA_SEEDER" ||
    fail "the aria2c seeder never announced to lmk-tracker"
for i in $(seq "$RUNS"); do
    read -r LEECH_TCP LEECH_UDP < <(free_ports 2)
    rm -rf "$RUN/out" && mkdir -p "$RUN/out"
    prefault "$SIZE_MIB"
    rm -f "$RUN/aria-done.ns"
    aria_args aria-leecher "$LEECH_TCP" "$LEECH_UDP" "$RUN/out"
    # --seed-time=0: exits once complete (and its tracker says it stopped).
    t0=$(date +%s%N)
    /usr/bin/time -f '%e %U %S %M' -o "$RUN/aria.time" timeout -k 5 300 \
        aria2c "${ARIA_ARGS[@]}" --seed-time=0 --on-bt-download-complete="$RUN/aria-done.sh" \
        "$RUN/bench.torrent" >"$RUN/aria-leecher.out" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    # Meanwhile every aria2c socket must face 127.0.0.0/8.
    while kill -0 "$pid" 2>/dev/null && [ "$(cut -d' ' -f3 /proc/"$pid"/stat 2>/dev/null)" != Z ]; do
        for p in "$ARIA_SEEDER" $(descendants "$pid"); do loopback_only "$p"; done
        sleep 0.25
    done
    rc=0
    wait "$pid" || rc=$?
    forget "$pid"
    [ "$rc" = 0 ] || fail "aria2c leecher exited with status $rc"
    [ "$(stat -c %s "$RUN/out/$NAME")" = "$SIZE" ] || fail "aria2c wrote a file of the wrong size"
    if [ "$i" = 1 ]; then cmp -s "$RUN/src/$NAME" "$RUN/out/$NAME" || fail "aria2c copy differs from the source"; fi
    rm -rf "$RUN/out"
    read_time "$RUN/aria.time"
    [ -s "$RUN/aria-done.ns" ] || fail "aria2c never ran its download-complete hook"
    done_s=$(py "print(round(($(cat "$RUN/aria-done.ns") - $t0) / 1e9, 3))")
    v=$(py "print(round($SIZE / $done_s / 1e6, 1))")
    sample aria_done_s "$done_s"
    sample aria_MBps "$v"
    sample aria_wall_s "$T_WALL"
    sample aria_exit_MBps "$(py "print(round($SIZE / $T_WALL / 1e6, 1))")"
    log "aria2c run $i/$RUNS: complete after ${done_s}s, $v MB/s (exit after ${T_WALL}s; leecher peak RSS $((T_RSS / 1024)) MiB, user ${T_USER}s sys ${T_SYS}s)"
done
# The aria2c logs name no address outside 127.0.0.0/8 (but the host's own interfaces).
foreign=$(grep -vh "Found configured address" "$RUN"/aria-*.log |
    grep -ohE '\b[0-9]{1,3}(\.[0-9]{1,3}){3}\b' | grep -v '^127\.' | sort -u || true)
[ -z "$foreign" ] || fail "aria2c logs mention non-loopback addresses: $foreign"
stop "$ARIA_SEEDER" "$ARIA_TRACKER_PID"

# --- 5. LMKtorrent: leecher peak RSS with a big file --------------------------------
if [ "$BIG_MIB" -gt 0 ]; then
    BIG=$((BIG_MIB << 20))
    BIG_NAME=bench-$BIG_MIB.bin
    section "LMKtorrent: $BIG_MIB MiB from $SEEDERS seeders, $BIG_RUNS run(s): leecher peak RSS"
    log "making $BIG_MIB MiB of random data"
    make_file "$RUN/src/$BIG_NAME" "$BIG_MIB"
    start_seeders "$SEEDERS" "$LMK_TRACKER" "$RUN/src/$BIG_NAME" big
    for i in $(seq "$BIG_RUNS"); do leech lmkbig "$LMK_TRACKER" "$BIG_NAME" "$BIG" "$RUN/src/$BIG_NAME" "$i" "$SEEDERS"; done
    sample lmkbig_seeder_rss_KiB "$(seeders_hwm)"
    stop "${SEEDER_PIDS[@]}"
    SEEDER_PIDS=()
    rm -f "$RUN/src/$BIG_NAME"
fi
# --- 5b. LMKtorrent: leecher peak RSS with many seeders sending at once --------------
if [ "$MANY" -gt 0 ]; then
    section "LMKtorrent: 256 MiB from $MANY seeders sending at once, $RUNS run(s): leecher peak RSS"
    make_file "$RUN/src/many.bin" 256
    start_seeders "$MANY" "$LMK_TRACKER" "$RUN/src/many.bin" many
    # A downloader dials at most half of --max-peers-per-file (the rest is for callers): twice MANY dials them all.
    for i in $(seq "$RUNS"); do
        leech lmkmany "$LMK_TRACKER" many.bin $((256 << 20)) "$RUN/src/many.bin" "$i" "$MANY" --max-peers-per-file $((2 * MANY))
    done
    stop "${SEEDER_PIDS[@]}"
    SEEDER_PIDS=()
    rm -f "$RUN/src/many.bin"
fi
stop "$LMK_TRACKER_PID"
fi # sections 1-5
rm -rf "$RUN/src" "$RUN/out"

# --- 6. trackers under load ---------------------------------------------------------
if [ -z "${TRANSFERS_ONLY:-}" ]; then # sections 6-7
section "trackers: BEP 15 announces/s (tracker_load: 4 sockets, window 64, 1000 hashes, ${TRACKER_SECONDS}s) and RSS after $TRACKER_PEERS peers"
mkdir -p "$RUN/ot" "$RUN/aq"
"$BIN/tracker_load" --hashes 1000 --whitelist-out "$RUN/ot/whitelist.txt" || fail "tracker_load --whitelist-out failed"
alive() { kill -0 "$1" 2>/dev/null && [ "$(cut -d' ' -f3 /proc/"$1"/stat 2>/dev/null)" != Z ]; }
# opentracker, bound to 127.0.0.1 only (TCP and UDP), chrooted in its directory
# with its whitelist (Debian's build only serves listed hashes). A free port can
# be taken before opentracker binds it: then another port, up to 5 times.
start_opentracker() { # [DIR]: sets OT_PID and OT_PORT
    local attempt dir=${1:-$RUN/ot}
    for attempt in 1 2 3 4 5; do
        read -r OT_PORT < <(free_ports 1)
        (cd "$dir" && exec opentracker -i 127.0.0.1 -p "$OT_PORT" -P "$OT_PORT" -d "$dir" -w whitelist.txt) \
            >"$RUN/opentracker.log" 2>&1 &
        OT_PID=$!
        PIDS+=("$OT_PID")
        for _ in $(seq 100); do
            ss -ulnpH | grep -q "pid=$OT_PID," && return 0
            alive "$OT_PID" || break
            sleep 0.05
        done
        log "opentracker did not start on port $OT_PORT (attempt $attempt): $(tr '\n' ' ' <"$RUN/opentracker.log")"
        stop "$OT_PID"
    done
    fail "opentracker did not start"
}
ot_only_loopback() { # every socket of opentracker is on 127.0.0.1:OT_PORT
    local others
    others=$(ss -tuanpH | grep "pid=$OT_PID," | awk '{print $5}' | grep -v "^127\.0\.0\.1:$OT_PORT$" || true)
    [ -z "$others" ] || fail "opentracker has sockets beyond 127.0.0.1:$OT_PORT: $others"
}
# The per-datagram ceiling: benches/udp_echo.rs, one recv_from and one send_to per datagram,
# its answers as long as lmk-tracker's (50 peers to a leecher, none to a seeder: the
# generator's seeders and leechers sit in separate swarms), so both send the same bytes.
start_echo() { # [ARGS]: sets EC_PID and EC_ADDR
    rm -f "$RUN/echo.out" # else the last echo's line may be read before this one's shell truncates it
    "${SERVER_PREFIX[@]}" "$BIN/udp_echo" --listen 127.0.0.1:0 --peers 50 "$@" >"$RUN/echo.out" 2>"$RUN/echo.log" &
    EC_PID=$!
    PIDS+=("$EC_PID")
    wait_line "$RUN/echo.out" '^listening on 127\.0\.0\.1:[0-9]+$' 10 "$EC_PID" || fail "udp_echo did not start"
    EC_ADDR=$(sed -n 's/^listening on //p' "$RUN/echo.out")
}
# Our generator against one server: NAME ADDR PID RUN PEERS SOCKETS WINDOW [ARGS]; sets p999 and APS.
load() {
    local name=$1 tracker=$2 pid=$3 run=$4 peers=$5 sockets=$6 window=$7 aps bpp cpu
    shift 7
    "$BIN/tracker_load" --tracker "$tracker" --seconds "$TRACKER_SECONDS" --sockets "$sockets" --window "$window" \
        --hashes 1000 --peers "$peers" --pid "$pid" --fill-timeout 400 "$@" >"$RUN/load.json" 2>"$RUN/load.log" || {
        cat "$RUN/load.json" "$RUN/load.log" >&2
        fail "tracker_load against $name failed"
    }
    loopback_only "$pid"
    read -r aps bpp cpu p999 maxl < <(python3 - "$RUN/load.json" "$peers" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
peers = int(sys.argv[2])
bpp = (d["rss_after_fill_kb"] - d["rss_before_kb"]) * 1024 / peers if peers else 0
print(d["announces_per_sec"], round(bpp, 1), d["tracker_cpu_pct"] or 0, d.get("latency_us_p999", 0), d.get("latency_us_max", 0))
EOF
    )
    APS=$aps
    sample "${name}_announces_per_s" "$aps"
    [ "$peers" = 0 ] || sample "${name}_bytes_per_peer" "$bpp"
    sample "${name}_cpu_pct" "$cpu"
    # Throughput per CPU-second of the server: what it could do were the load generator not the limit.
    sample "${name}_announces_per_cpu_s" "$(py "print(round($aps / max($cpu, 1) * 100))")"
    log "$name run $run: $aps announces/s (server CPU $cpu%), $bpp bytes/peer, p99.9 ${p999} us; $(cat "$RUN/load.json")"
}
# The caps a bench fill needs raised: 10,000,000 peers (the default total is 1,000,000)
# from 64 addresses, 157 per address in each of 1000 swarms.
BIG_CAPS=(--max-peers 11000000 --max-peers-per-ip 200000 --max-peers-per-ip-in-swarm 200)
for i in $(seq "$RUNS"); do
    start_echo
    load echo "$EC_ADDR" "$EC_PID" "$i/$RUNS" 0 4 64
    stop "$EC_PID"
    # What batching alone does here: lmk-tracker's loop (epoll, recvmmsg, sendmmsg) with the echo as its core.
    start_echo --batch
    load echo_batch "$EC_ADDR" "$EC_PID" "$i/$RUNS" 0 4 64
    stop "$EC_PID"
    # lmk-tracker with its default interval (10 s; peers expire after 30 s).
    start_tracker "tracker-load-$i" -q
    load lmk_tracker "$TR_ADDR" "$TR_PID" "$i/$RUNS" "$TRACKER_PEERS" 4 64
    stop "$TR_PID"
    start_opentracker
    ot_only_loopback
    load opentracker "127.0.0.1:$OT_PORT" "$OT_PID" "$i/$RUNS" "$TRACKER_PEERS" 4 64
    ot_only_loopback
    stop "$OT_PID"
done

section "trackers at 1,000,000 and 10,000,000 peers (tracker_load: 64 sockets on 127.0.0.2-65, window 4)"
for size in 1m 10m; do
    peers=$([ $size = 1m ] && echo 1000000 || echo "$TRACKER_BIG_PEERS")
    runs=$([ $size = 1m ] && echo "$RUNS" || echo "$TRACKER_BIG_RUNS")
    for i in $(seq "$runs"); do
        start_tracker "tracker-$size-$i" -q "${BIG_CAPS[@]}"
        load "lmk_tracker_$size" "$TR_ADDR" "$TR_PID" "$i/$runs" "$peers" 64 4
        stop "$TR_PID"
        start_opentracker
        load "opentracker_$size" "127.0.0.1:$OT_PORT" "$OT_PID" "$i/$runs" "$peers" 64 4
        ot_only_loopback
        stop "$OT_PID"
    done
done

section "lmk-tracker while 1,000,000 peers expire: announce latency of 6400 live peers"
# Peers expire 20 s after their announce (--foreign-expiry; the generator's peer id is not
# LMK's): fill 1,000,000, then for 30 s only the first 100 peers of each of 64 sockets
# announce while the rest expire. Twice: a closed loop with 2 announces in flight per
# socket keeps the tracker saturated, so a round trip is mostly the time spent queued
# behind the other 127 (in flight / rate); then an open loop at half the rate the closed
# loop reached, announces sent on schedule whatever comes back: the tracker's own latency.
# The echo server under each same load is the floor, for the same 30 s: a tail of 0.1% is
# set by the machine's rare stalls of a few ms, and a shorter run sees fewer of them (at
# 195,000/s the echo alone gave 260, 1,061 and 5,001 us in three 30 s runs, 278 once in
# 10 s). The peers left come from /stats.json.
peers_left() {
    curl -s --max-time 5 "http://$TR_ADDR/stats.json" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["figures"]["peers"])' 2>/dev/null || echo 0
}
expiry_run() { # NAME RUN WINDOW [ARGS]: a fresh lmk-tracker, filled, then 30 s of probes while the rest expire
    local name=$1 run=$2 window=$3 left
    shift 3
    start_tracker "tracker-$name-${run%%/*}" -q --interval 5 --foreign-expiry 20 "${BIG_CAPS[@]}"
    TRACKER_SECONDS=30 load "$name" "$TR_ADDR" "$TR_PID" "$run" 1000000 64 "$window" --probe 100 "$@"
    sample "${name}_latency_p999_us" "$p999"
    sample "${name}_latency_max_us" "$maxl"
    left=$(peers_left)
    sample "${name}_peers_left" "${left:-0}"
    log "$name run $run: p99.9 announce latency $p999 us while 1,000,000 peers expired (${left:-?} peers left)"
    stop "$TR_PID"
}
for i in $(seq "$TRACKER_BIG_RUNS"); do
    run="$i/$TRACKER_BIG_RUNS"
    # The floor on this machine: the echo server under the same 128 announces in flight.
    start_echo
    TRACKER_SECONDS=30 load echo_probe "$EC_ADDR" "$EC_PID" "$run" 0 64 2
    sample echo_probe_latency_p999_us "$p999"
    stop "$EC_PID"
    expiry_run lmk_expiry "$run" 2
    APS_CLOSED=$APS
    half=$(py "print(max(1000, round($APS / 2)))")
    sample expiry_open_rate "$half"
    log "open loop: $half announces/s offered (half of the closed loop's $APS), at most 16 in flight per socket"
    start_echo
    TRACKER_SECONDS=30 load echo_open "$EC_ADDR" "$EC_PID" "$run" 0 64 16 --rate "$half"
    sample echo_open_latency_p999_us "$p999"
    stop "$EC_PID"
    expiry_run lmk_expiry_open "$run" 16 --rate "$half"
    sample lmk_expiry_open_lost "$(py "import json; print(json.load(open('$RUN/load.json'))['lost'])")"
    # The same open loop with the server under SCHED_FIFO (chrt; root only): a datagram
    # wakes it at once instead of after a neighbour's scheduler tick, so on a shared
    # machine the tail is the server's, not the neighbours'. At half and a quarter of the
    # closed loop's rate. (The generator stays a normal process: under SCHED_FIFO too, it
    # and the server took turns and the server woke for every datagram.)
    if chrt -f 20 true 2>/dev/null; then
        SERVER_PREFIX=(chrt -f 20)
        for part in half quarter; do
            rate=$([ $part = half ] && echo "$half" || py "print(max(1000, round($APS_CLOSED / 4)))")
            sample "expiry_rt_${part}_rate" "$rate"
            start_echo
            TRACKER_SECONDS=30 load "echo_rt_$part" "$EC_ADDR" "$EC_PID" "$run" 0 64 16 --rate "$rate"
            sample "echo_rt_${part}_latency_p999_us" "$p999"
            sample "echo_rt_${part}_latency_max_us" "$maxl"
            stop "$EC_PID"
            expiry_run "lmk_expiry_rt_$part" "$run" 16 --rate "$rate"
        done
        SERVER_PREFIX=()
    else
        log "chrt -f 20 is refused here (not root?): the realtime latency rows are skipped"
    fi
done

# The same on the core alone, no sockets and no other process in between (benches/expiry_stall.rs).
"$BIN/expiry_stall" >"$RUN/stall.json" 2>"$RUN/stall.log" || fail "expiry_stall failed: $(tail -n 3 "$RUN/stall.log")"
read -r stall_t stall_d < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["timeout_us_p999"], d["datagram_us_p999"])' "$RUN/stall.json")
sample core_expiry_timeout_us_p999 "$stall_t"
sample core_expiry_datagram_us_p999 "$stall_d"
log "core alone while 1,000,000 peers expire: $(cat "$RUN/stall.json")"
# What one announce costs the core alone (user space only; no sockets): benches/announce_cost.rs.
"$BIN/announce_cost" --rounds 15 >"$RUN/cost.json" 2>"$RUN/cost.log" || fail "announce_cost failed: $(tail -n 3 "$RUN/cost.log")"
sample core_announce_ns "$(py "import json; print(json.load(open('$RUN/cost.json'))['ns_per_announce_median'])")"
log "core alone, one announce of 100,000 peers, 50 wanted: $(cat "$RUN/cost.json")"

section "aquatic_udp_load_test (aquatic's own generator: 1 worker, 4 sockets, 100,000 peers in 1000 swarms, announces only)"
AQUATIC=$(command -v aquatic_udp_load_test || true)
if [ -z "$AQUATIC" ] && [ -z "${NO_INSTALL:-}" ] && command -v cargo >/dev/null; then
    log "cargo install aquatic_udp_load_test (once; a few minutes)"
    cargo install --quiet aquatic_udp_load_test >"$RUN/aquatic-install.log" 2>&1 || true
    AQUATIC=$(command -v aquatic_udp_load_test || true)
    [ -n "$AQUATIC" ] || log "aquatic_udp_load_test did not install: $(tail -n 3 "$RUN/aquatic-install.log" | tr '\n' ' ')"
fi
if [ -n "$AQUATIC" ]; then
    aquatic() { # NAME ADDR PID RUN
        local c0 c1 v
        cat >"$RUN/aq/config.toml" <<EOF
server_address = "$2"
log_level = "error"
workers = 1
duration = $((TRACKER_SECONDS + 2))
summarize_last = $TRACKER_SECONDS
extra_statistics = false
[network]
multiple_client_ipv4s = true
sockets_per_worker = 4
recv_buffer = 8000000
[requests]
number_of_torrents = 1000
number_of_peers = 100000
scrape_max_torrents = 10
announce_peers_wanted = 50
weight_connect = 0
weight_announce = 100
weight_scrape = 0
peer_seeder_probability = 0.25
EOF
        c0=$(awk '{print $14 + $15}' "/proc/$3/stat")
        timeout $((TRACKER_SECONDS + 30)) "$AQUATIC" -c "$RUN/aq/config.toml" >"$RUN/aq/out.txt" 2>&1 ||
            fail "aquatic_udp_load_test against $1 failed: $(tail -n 3 "$RUN/aq/out.txt" | tr '\n' ' ')"
        c1=$(awk '{print $14 + $15}' "/proc/$3/stat")
        v=$(sed -n 's/^Average responses per second: \([0-9.]*\)$/\1/p' "$RUN/aq/out.txt" | tail -n 1)
        [ -n "$v" ] || fail "no report from aquatic_udp_load_test against $1"
        sample "aq_${1}_responses_per_s" "$v"
        log "aquatic against $1, run $4: $v responses/s (server CPU over its whole run: $(((c1 - c0) / (TRACKER_SECONDS + 2)))%)"
    }
    # The echo server learns which info hashes aquatic uses: opentracker's whitelist.
    start_echo --record-hashes "$RUN/aq/whitelist.txt"
    aquatic learn "$EC_ADDR" "$EC_PID" "0 (learning its info hashes)"
    stop "$EC_PID"
    log "aquatic used $(wc -l <"$RUN/aq/whitelist.txt") info hashes: opentracker gets them as its whitelist"
    for i in $(seq "$RUNS"); do
        start_echo
        aquatic echo "$EC_ADDR" "$EC_PID" "$i/$RUNS"
        stop "$EC_PID"
        # aquatic's peers come from 4 addresses, hundreds per swarm: the per-address caps raised.
        start_tracker "tracker-aq-$i" -q --max-peers-per-ip 1000000 --max-peers-per-ip-in-swarm 100000 --max-swarms-per-ip 100000
        aquatic lmk_tracker "$TR_ADDR" "$TR_PID" "$i/$RUNS"
        stop "$TR_PID"
        start_opentracker "$RUN/aq"
        aquatic opentracker "127.0.0.1:$OT_PORT" "$OT_PID" "$i/$RUNS"
        ot_only_loopback
        stop "$OT_PID"
    done
else
    log "aquatic_udp_load_test is not installed: its rows are skipped"
fi

# --- 7. HTTP announces and the status page ----------------------------------------------
if [ -z "${TRACKERS_ONLY:-}" ]; then
section "trackers over HTTP: BEP 3 announces/s (http_load: 16 connections, ${TRACKER_SECONDS}s); lmk-tracker's status page of 100,000 files"
http_load() { # NAME TRACKER PID RUN
    "$BIN/http_load" --tracker "$2" --seconds "$TRACKER_SECONDS" --conns 16 --hashes 1000 --peers 16000 --pid "$3" \
        >"$RUN/http.json" 2>"$RUN/http.log" || {
        cat "$RUN/http.json" "$RUN/http.log" >&2
        fail "http_load against $1 failed"
    }
    loopback_only "$3"
    read -r aps cpu < <(python3 -c 'import json,sys; d = json.load(open(sys.argv[1])); print(d["announces_per_sec"], d["tracker_cpu_pct"] or 0)' "$RUN/http.json")
    sample "${1}_http_announces_per_s" "$aps"
    sample "${1}_http_cpu_pct" "$cpu"
    log "$1 HTTP run $4/$RUNS: $aps announces/s (tracker CPU $cpu%); $(cat "$RUN/http.json")"
}
for i in $(seq "$RUNS"); do
    start_tracker "tracker-http-$i" -q
    http_load lmk_tracker "$TR_ADDR" "$TR_PID" "$i"
    stop "$TR_PID"

    start_opentracker
    ot_only_loopback
    http_load opentracker "127.0.0.1:$OT_PORT" "$OT_PID" "$i"
    stop "$OT_PID"

    start_tracker "tracker-page-$i" -q --open --max-files-per-ip 100000 # http_load publishes unsigned
    "$BIN/http_load" --tracker "$TR_ADDR" --publish 100000 --page-runs 5 --pid "$TR_PID" >"$RUN/page.json" 2>"$RUN/page.log" || {
        cat "$RUN/page.json" "$RUN/page.log" >&2
        fail "http_load --publish against lmk-tracker failed"
    }
    read -r first filtered last < <(python3 -c 'import json,sys; d = json.load(open(sys.argv[1])); print(d["first_page_ms"], d["filtered_page_ms"], d["last_page_ms"])' "$RUN/page.json")
    sample status_first_page_ms "$first"
    sample status_filtered_page_ms "$filtered"
    sample status_last_page_ms "$last"
    log "status page run $i/$RUNS: $(cat "$RUN/page.json")"
    stop "$TR_PID"
done
fi
fi # sections 6-7

# --- 8. summary ------------------------------------------------------------------------
ELAPSED=$(($(date +%s) - T0))
log "done in ${ELAPSED}s; load average $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$SAMPLES" <<EOF
import json, statistics, sys
S = {}
for line in open(sys.argv[1]):
    k, v = line.split("\t")
    S.setdefault(k, []).append(float(v))
def med(k): return statistics.median(S[k]) if k in S else None
FIG = [  # key, label, unit
    ("iperf3_MBps", "loopback TCP, one stream (iperf3)", "MB/s"),
    ("tmpfs_write_MBps", "writing new pages to tmpfs (dd if=/dev/zero bs=1M)", "MB/s"),
    ("sha1_MBps", "SHA-1, one core (openssl speed -evp sha1, 16 KiB)", "MB/s"),
    ("curl_MBps", "curl <- python3 http.server, $SIZE_MIB MiB", "MB/s"),
    ("aria_MBps", "aria2c -> aria2c, $SIZE_MIB MiB (start to complete)", "MB/s"),
    ("aria_done_s", "aria2c, start to download complete (hook)", "s"),
    ("aria_wall_s", "aria2c, start to exit", "s"),
    ("aria_exit_MBps", "aria2c, MB/s counting up to its exit", "MB/s"),
    ("lmk1_MBps", "LMK 1 seeder -> leecher, $SIZE_MIB MiB", "MB/s"),
    ("lmk1_wall_s", "LMK 1 seeder, wall (start to verified exit)", "s"),
    ("lmk1_leecher_rss_KiB", "LMK 1 seeder, leecher peak RSS", "KiB"),
    ("lmk1_cpu_s_per_GiB", "LMK 1 seeder, leecher CPU (user+sys) per GiB", "s"),
    ("lmk1_seeder_rss_KiB", "LMK 1 seeder, seeder peak RSS", "KiB"),
    ("lmk4_MBps", "LMK $SEEDERS seeders -> leecher, $SIZE_MIB MiB", "MB/s"),
    ("lmk4_wall_s", "LMK $SEEDERS seeders, wall (start to verified exit)", "s"),
    ("lmk4_leecher_rss_KiB", "LMK $SEEDERS seeders, leecher peak RSS", "KiB"),
    ("lmk4_cpu_s_per_GiB", "LMK $SEEDERS seeders, leecher CPU (user+sys) per GiB", "s"),
    ("lmk4_seeder_rss_KiB", "LMK $SEEDERS seeders, largest seeder peak RSS", "KiB"),
    ("lmkbig_MBps", "LMK $SEEDERS seeders -> leecher, $BIG_MIB MiB", "MB/s"),
    ("lmkbig_leecher_rss_KiB", "LMK $SEEDERS seeders, $BIG_MIB MiB, leecher peak RSS", "KiB"),
    ("lmkbig_cpu_s_per_GiB", "LMK $SEEDERS seeders, $BIG_MIB MiB, leecher CPU per GiB", "s"),
    ("lmkbig_seeder_rss_KiB", "LMK $SEEDERS seeders, $BIG_MIB MiB, largest seeder RSS", "KiB"),
    ("lmkmany_leecher_rss_KiB", "LMK $MANY seeders at once, 256 MiB, leecher peak RSS", "KiB"),
    ("lmkmany_MBps", "LMK $MANY seeders -> leecher, 256 MiB", "MB/s"),
    ("seeder_hash_MBps", "lmk-seeder hashing $SIZE_MIB MiB (its log)", "MB/s"),
    ("seeder_publish_s", "lmk-seeder start to 'catalog published'", "s"),
    ("echo_announces_per_s", "per-datagram UDP echo (ceiling) answers/s", "1/s"),
    ("echo_cpu_pct", "per-datagram UDP echo CPU", "%"),
    ("echo_announces_per_cpu_s", "per-datagram UDP echo answers per CPU-second", "1/s"),
    ("echo_batch_announces_per_s", "batched echo (lmk-tracker's loop, no core) answers/s", "1/s"),
    ("echo_batch_cpu_pct", "batched echo CPU", "%"),
    ("echo_batch_announces_per_cpu_s", "batched echo answers per CPU-second", "1/s"),
    ("lmk_tracker_announces_per_s", "lmk-tracker announces/s", "1/s"),
    ("opentracker_announces_per_s", "opentracker announces/s", "1/s"),
    ("lmk_tracker_cpu_pct", "lmk-tracker CPU during the timed phase", "%"),
    ("opentracker_cpu_pct", "opentracker CPU during the timed phase", "%"),
    ("lmk_tracker_announces_per_cpu_s", "lmk-tracker announces per CPU-second", "1/s"),
    ("opentracker_announces_per_cpu_s", "opentracker announces per CPU-second", "1/s"),
    ("lmk_tracker_bytes_per_peer", "lmk-tracker RSS per peer ($TRACKER_PEERS peers)", "B"),
    ("opentracker_bytes_per_peer", "opentracker RSS per peer ($TRACKER_PEERS peers)", "B"),
    ("lmk_tracker_http_announces_per_s", "lmk-tracker HTTP announces/s (keep-alive)", "1/s"),
    ("opentracker_http_announces_per_s", "opentracker HTTP announces/s (a connection each)", "1/s"),
    ("lmk_tracker_http_cpu_pct", "lmk-tracker CPU during the HTTP load", "%"),
    ("opentracker_http_cpu_pct", "opentracker CPU during the HTTP load", "%"),
    ("status_first_page_ms", "status page of 100,000 files: first page", "ms"),
    ("status_filtered_page_ms", "status page of 100,000 files: ?q=gamma&page=3", "ms"),
    ("status_last_page_ms", "status page of 100,000 files: last page", "ms"),
    ("lmk_tracker_1m_announces_per_s", "lmk-tracker announces/s, 1,000,000 peers", "1/s"),
    ("opentracker_1m_announces_per_s", "opentracker announces/s, 1,000,000 peers", "1/s"),
    ("lmk_tracker_1m_cpu_pct", "lmk-tracker CPU, 1,000,000 peers", "%"),
    ("opentracker_1m_cpu_pct", "opentracker CPU, 1,000,000 peers", "%"),
    ("lmk_tracker_1m_bytes_per_peer", "lmk-tracker RSS per peer, 1,000,000 peers", "B"),
    ("opentracker_1m_bytes_per_peer", "opentracker RSS per peer, 1,000,000 peers", "B"),
    ("lmk_tracker_10m_announces_per_s", "lmk-tracker announces/s, 10,000,000 peers", "1/s"),
    ("opentracker_10m_announces_per_s", "opentracker announces/s, 10,000,000 peers", "1/s"),
    ("lmk_tracker_10m_cpu_pct", "lmk-tracker CPU, 10,000,000 peers", "%"),
    ("opentracker_10m_cpu_pct", "opentracker CPU, 10,000,000 peers", "%"),
    ("lmk_tracker_10m_bytes_per_peer", "lmk-tracker RSS per peer, 10,000,000 peers", "B"),
    ("opentracker_10m_bytes_per_peer", "opentracker RSS per peer, 10,000,000 peers", "B"),
    ("lmk_expiry_latency_p999_us", "lmk-tracker p99.9, 1M expiring, closed loop (saturated)", "us"),
    ("lmk_expiry_peers_left", "lmk-tracker peers left after that expiry", "peers"),
    ("echo_probe_latency_p999_us", "UDP echo p99.9, same closed loop (floor)", "us"),
    ("expiry_open_rate", "open loop: offered rate (half the closed loop's)", "1/s"),
    ("lmk_expiry_open_latency_p999_us", "lmk-tracker p99.9, 1M expiring, open loop", "us"),
    ("lmk_expiry_open_lost", "lmk-tracker announces lost in that open loop", "count"),
    ("lmk_expiry_open_latency_max_us", "lmk-tracker worst round trip in that open loop", "us"),
    ("lmk_expiry_open_peers_left", "lmk-tracker peers left after the open-loop expiry", "peers"),
    ("echo_open_latency_p999_us", "UDP echo p99.9, same open loop (floor)", "us"),
    ("expiry_rt_half_rate", "realtime server: offered rate (half the closed loop's)", "1/s"),
    ("lmk_expiry_rt_half_latency_p999_us", "lmk-tracker p99.9, 1M expiring, realtime, half", "us"),
    ("lmk_expiry_rt_half_latency_max_us", "lmk-tracker worst round trip in it", "us"),
    ("lmk_expiry_rt_half_peers_left", "lmk-tracker peers left after it", "peers"),
    ("echo_rt_half_latency_p999_us", "UDP echo p99.9, realtime, same rate (floor)", "us"),
    ("echo_rt_half_latency_max_us", "UDP echo worst round trip in it", "us"),
    ("expiry_rt_quarter_rate", "realtime server: offered rate (a quarter)", "1/s"),
    ("lmk_expiry_rt_quarter_latency_p999_us", "lmk-tracker p99.9, 1M expiring, realtime, quarter", "us"),
    ("lmk_expiry_rt_quarter_latency_max_us", "lmk-tracker worst round trip in it", "us"),
    ("lmk_expiry_rt_quarter_peers_left", "lmk-tracker peers left after it", "peers"),
    ("echo_rt_quarter_latency_p999_us", "UDP echo p99.9, realtime, same rate (floor)", "us"),
    ("echo_rt_quarter_latency_max_us", "UDP echo worst round trip in it", "us"),
    ("core_announce_ns", "core alone: one announce, 100,000 peers, 50 wanted", "ns"),
    ("core_expiry_timeout_us_p999", "core alone: p99.9 handle_timeout while 1M expire", "us"),
    ("core_expiry_datagram_us_p999", "core alone: p99.9 announce while 1M expire", "us"),
    ("aq_echo_responses_per_s", "aquatic_udp_load_test -> UDP echo (ceiling)", "1/s"),
    ("aq_lmk_tracker_responses_per_s", "aquatic_udp_load_test -> lmk-tracker", "1/s"),
    ("aq_opentracker_responses_per_s", "aquatic_udp_load_test -> opentracker", "1/s"),
]
def fmt(v):
    if v is None: return "-"
    return f"{v:.0f}" if abs(v) >= 1000 else f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}"
print()
print("Figures: median of runs [min, max] ($RUNS runs; $BIG_MIB MiB: $BIG_RUNS); MB = 10^6 bytes; files on tmpfs ($SHM)")
print(f"{'figure':<58} {'median':>10} {'min':>10} {'max':>10} {'runs':>4}  unit")
figures = {}
for k, label, unit in FIG:
    if k not in S: continue
    v = S[k]
    figures[k] = {"label": label, "unit": unit, "median": med(k), "min": min(v), "max": max(v), "runs": v}
    print(f"{label:<58} {fmt(med(k)):>10} {fmt(min(v)):>10} {fmt(max(v)):>10} {len(v):>4}  {unit}")
# Targets: ratios of medians measured in this run.
T = []
def target(name, measured, ratio, op, threshold):
    if ratio is None:
        T.append({"target": name, "measured": measured, "ratio": None, "threshold": threshold, "verdict": "n/a"}); return
    ok = ratio >= threshold if op == ">=" else ratio <= threshold
    T.append({"target": name, "measured": measured, "ratio": round(ratio, 3), "threshold": threshold, "op": op,
              "verdict": "PASS" if ok else "MISS"})
def ratio(a, b): return med(a) / med(b) if a in S and b in S and med(b) else None
l4 = med("lmk4_MBps")
target("leecher $SIZE_MIB MiB/$SEEDERS seeders >= 0.65 x openssl SHA-1", f"{fmt(l4)} vs {fmt(med('sha1_MBps'))} MB/s", ratio("lmk4_MBps", "sha1_MBps"), ">=", 0.65)
target("leecher $SIZE_MIB MiB/$SEEDERS seeders >= 7 x aria2c", f"{fmt(l4)} vs {fmt(med('aria_MBps'))} MB/s", ratio("lmk4_MBps", "aria_MBps"), ">=", 7)
target("leecher $SIZE_MIB MiB/$SEEDERS seeders >= 2 x curl over HTTP", f"{fmt(l4)} vs {fmt(med('curl_MBps'))} MB/s", ratio("lmk4_MBps", "curl_MBps"), ">=", 2)
rss = S.get("lmk1_leecher_rss_KiB", []) + S.get("lmk4_leecher_rss_KiB", [])
target("leecher peak RSS <= 32 MiB (largest, all $SIZE_MIB MiB runs)", f"{max(rss) / 1024:.1f} MiB" if rss else "-", max(rss) / 1024 / 32 if rss else None, "<=", 1.0)
big = ratio("lmkbig_leecher_rss_KiB", "lmk4_leecher_rss_KiB")
target("leecher peak RSS $BIG_ASKED MiB within 10% of $SIZE_MIB MiB", f"{fmt(med('lmkbig_leecher_rss_KiB'))} vs {fmt(med('lmk4_leecher_rss_KiB'))} KiB", None if big is None else abs(big - 1), "<=", 0.10)
many = med("lmkmany_leecher_rss_KiB")
target("leecher peak RSS <= 32 MiB with $MANY seeders sending", f"{many / 1024:.1f} MiB" if many else "-", many / 1024 / 32 if many else None, "<=", 1.0)
target("seeder hashing >= 0.85 x openssl SHA-1", f"{fmt(med('seeder_hash_MBps'))} vs {fmt(med('sha1_MBps'))} MB/s", ratio("seeder_hash_MBps", "sha1_MBps"), ">=", 0.85)
target("lmk-tracker >= 1.5 x opentracker announces/s", f"{fmt(med('lmk_tracker_announces_per_s'))} vs {fmt(med('opentracker_announces_per_s'))} /s", ratio("lmk_tracker_announces_per_s", "opentracker_announces_per_s"), ">=", 1.5)
bpp = med("lmk_tracker_bytes_per_peer")
target("lmk-tracker <= 100 bytes of RSS per peer", f"{fmt(bpp)} B/peer", None if bpp is None else bpp / 100, "<=", 1.0)
target("lmk-tracker HTTP >= 1.5 x opentracker HTTP announces/s", f"{fmt(med('lmk_tracker_http_announces_per_s'))} vs {fmt(med('opentracker_http_announces_per_s'))} /s", ratio("lmk_tracker_http_announces_per_s", "opentracker_http_announces_per_s"), ">=", 1.5)
page = med("status_first_page_ms")
target("status page of 100,000 files, first page < 50 ms", f"{fmt(page)} ms", None if page is None else page / 50, "<=", 1.0)
target("lmk-tracker >= 1.5 x opentracker announces/s, aquatic's generator", f"{fmt(med('aq_lmk_tracker_responses_per_s'))} vs {fmt(med('aq_opentracker_responses_per_s'))} /s", ratio("aq_lmk_tracker_responses_per_s", "aq_opentracker_responses_per_s"), ">=", 1.5)
target("lmk-tracker above the per-datagram echo ceiling", f"{fmt(med('lmk_tracker_announces_per_s'))} vs {fmt(med('echo_announces_per_s'))} /s", ratio("lmk_tracker_announces_per_s", "echo_announces_per_s"), ">=", 1.0)
target("lmk-tracker above the echo ceiling, aquatic's generator", f"{fmt(med('aq_lmk_tracker_responses_per_s'))} vs {fmt(med('aq_echo_responses_per_s'))} /s", ratio("aq_lmk_tracker_responses_per_s", "aq_echo_responses_per_s"), ">=", 1.0)
for size in ("1m", "10m"):
    bpp = med(f"lmk_tracker_{size}_bytes_per_peer")
    target(f"lmk-tracker <= 12 bytes of RSS per IPv4 peer at {size.upper()}", f"{fmt(bpp)} B/peer", None if bpp is None else bpp / 12, "<=", 1.0)
p999 = med("lmk_expiry_open_latency_p999_us")
target("lmk-tracker p99.9 < 1 ms while 1M expire (open loop)", f"{fmt(p999)} us", None if p999 is None else p999 / 1000, "<=", 1.0)
for part in ("half", "quarter"):
    v = med(f"lmk_expiry_rt_{part}_latency_p999_us")
    target(f"lmk-tracker p99.9 < 1 ms while 1M expire, realtime, {part} rate", f"{fmt(v)} us", None if v is None else v / 1000, "<=", 1.0)
floor = med("echo_open_latency_p999_us")
target("UDP echo p99.9 < 1 ms, same open loop (the floor)", f"{fmt(floor)} us", None if floor is None else floor / 1000, "<=", 1.0)
# Whether the tracker adds to the machine's tail: its p99.9 beside the echo's under the same load.
for row, label in (("open", "open loop"), ("rt_half", "realtime, half"), ("rt_quarter", "realtime, quarter")):
    ours, echo = f"lmk_expiry_{row}_latency_p999_us", f"echo_{row}_latency_p999_us"
    target(f"lmk-tracker p99.9 within the echo's, {label}", f"{fmt(med(ours))} vs {fmt(med(echo))} us", ratio(ours, echo), "<=", 1.0)
core = med("core_expiry_datagram_us_p999")
target("core alone: p99.9 announce < 1 ms while 1M expire", f"{fmt(core)} us", None if core is None else core / 1000, "<=", 1.0)
print()
print("Targets: ratios of medians from this run (for RSS: measured / limit; for the big file: |big/1 GiB - 1|)")
print(f"{'target':<58} {'measured':>26} {'ratio':>8} {'need':>8}  verdict")
for t in T:
    r = "-" if t["ratio"] is None else f"{t['ratio']:.3f}"
    need = f"{t.get('op', '')} {t['threshold']:.2f}"
    print(f"{t['target']:<58} {t['measured']:>26} {r:>8} {need:>8}  {t['verdict']}")
print()
summary = {
    "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "commit": "$COMMIT", "machine": {"cpu": "$CPU_MODEL", "cores": $CORES},
    "files_on": "tmpfs ($SHM)", "runs": $RUNS, "size_mib": $SIZE_MIB, "big_mib": $BIG_MIB, "big_runs": $BIG_RUNS,
    "seconds": $ELAPSED, "loadavg_start": $LOAD_START, "loadavg_end": $(cut -d' ' -f1 /proc/loadavg), "figures": {k: {kk: round(f[kk], 3) if kk != "unit" else f[kk] for kk in ("median", "min", "max", "unit")} for k, f in figures.items()},
    "targets": T, "passed": sum(t["verdict"] == "PASS" for t in T), "missed": sum(t["verdict"] == "MISS" for t in T),
}
print(json.dumps(summary, separators=(",", ":")))
EOF
