#!/usr/bin/env bash
# make bench-swarm: one seed and N downloaders started at the same moment, each
# host in its own network namespace with its upload capped, for LMKtorrent,
# aria2c and libtorrent in the same run, each against the fluid bound T_p2p.
#
#   network   a bridge in its own namespace; a tracker host (10.77.0.1), a seed
#             host (10.77.0.2) and downloader hosts d1..dN (10.77.0.11...) each
#             in a namespace with a veth (eth0) to the bridge. Each host's uplink
#             (egress of its eth0) is capped by tc tbf at RATE_MIB MiB/s (the
#             slow half of the heterogeneous row: SLOW_MIB); downloads are not
#             capped. Every host and the bridge know every address from the
#             start (static ARP and bridge entries). Checked first with iperf3
#             between two namespaces.
#   rows      N = each of NS, all uplinks RATE_MIB; then N = HETERO_N with the
#             second half of the downloaders at SLOW_MIB. A SIZE_MIB random file
#             (half of it for N >= 16). Per run, for each system: a fresh
#             tracker, one seed, then N downloaders released at one moment t0.
#   LMK       lmk-tracker (--interval LMK_INTERVAL), lmk-seeder, lmk-leecher get;
#             defaults but for --listen HOST_IP:7000 (when the leecher has it);
#             done = its `NAME: done,` line (time-stamped as printed).
#   aria2c    opentracker over HTTP (Debian's build serves whitelisted info
#             hashes only: a whitelist with the torrents' hashes), a private
#             torrent with PIECE_KIB pieces, DHT/LPD/PEX off; done = its
#             --on-bt-download-complete hook (complete and verified). aria2c's
#             defaults otherwise (a downloader leaves at seed ratio 1.0).
#   libtorrent  Debian's python3-libtorrent under /usr/bin/python3, one
#             scripts/lt-peer.py per peer, same tracker and torrent; done = its
#             torrent_finished_alert. Default settings (uTP included) unless LT_SET.
#   figures   T_last (the last downloader done, seconds from t0) / T_p2p, mean
#             finish time / T_p2p, and the seed's copies: bytes sent on the seed
#             host's veth during the run / file size (the veth counts a GSO
#             packet's headers once: one copy is ~1.00, where tbf meters ~1.05
#             of whole frames); and how busy the machine's CPUs were from
#             t0 to the last finish (near 100%: the machine is the limit).
#             T_p2p = max(F/u_s, N*F/(u_s + sum u_i)) with u in bytes/s
#             (downloads uncapped: no F/d_min term). Beside each row, seed@T:
#             the copies a seed busy until T_p2p sends (u_s * T_p2p / F).
#
# Every copy is compared with the source (cmp). A run not done within DEADLINE
# seconds is marked TIMEOUT. When all downloaders are done every process of the
# run is stopped by its PID (leechers that would keep seeding included).
# Prints one line per run, a table (medians over RUNS) and, last, one JSON object.
#
# Env: RUNS (1), NS ("4 8 16"), HETERO_N (8; 0: no heterogeneous row), SLOW_ROW ("32:5:64":
#      N=32, seed and downloaders at 5 MiB/s, 64 MiB; "" for none),
#      RATE_MIB (20), SLOW_MIB (5), SIZE_MIB (256), PIECE_KIB (1024),
#      SYSTEMS ("lmk aria2c libtorrent"), DEADLINE (90), LMK_INTERVAL (2),
#      LMK_SEEDER_ARGS / LMK_LEECHER_ARGS (extra options; none by default),
#      LT_SET ("name=value ..." libtorrent settings for every peer; none by default,
#      e.g. "enable_outgoing_utp=false enable_incoming_utp=false" for TCP only),
#      LINKS=1 prints after each run every host's uplink second by second (MiB/s as its veth counts: the seed,
#      then the downloaders' least, median and most, the slow ones apart in the heterogeneous row),
#      SHM (/dev/shm), KEEP=1 keeps the run directory (the last run's logs at its top, earlier ones in
#      logs/rowR-SYSTEM-RUN), NO_INSTALL=1 never calls
#      apt-get, LMK_BIN_DIR=dir with the lmk-* binaries (else cargo builds them).
# Needs root (ip netns, tc). Every namespace, veth and bridge made here is
# removed on exit, and every process started here is stopped by its PID.
set -euo pipefail

RUNS=${RUNS:-1}
N_LIST=${NS:-"4 8 16"}
HETERO_N=${HETERO_N:-8}
# N:RATE:MIB: a row where the seed and every downloader have RATE MiB/s up (the N=32 row where a
# downloader once starved); "" for none.
SLOW_ROW=${SLOW_ROW-32:5:64}
IFS=: read -r SLOW_N SLOW_ROW_RATE SLOW_ROW_MIB <<<"${SLOW_ROW:-0:0:0}"
RATE_MIB=${RATE_MIB:-20}
SLOW_MIB=${SLOW_MIB:-5}
SIZE_MIB=${SIZE_MIB:-256}
PIECE_KIB=${PIECE_KIB:-1024}
SYSTEMS=${SYSTEMS:-"lmk aria2c libtorrent"}
DEADLINE=${DEADLINE:-90}
LMK_INTERVAL=${LMK_INTERVAL:-2}
LMK_SEEDER_ARGS=${LMK_SEEDER_ARGS:-}
LMK_LEECHER_ARGS=${LMK_LEECHER_ARGS:-}
LT_SET=${LT_SET:-}
LINKS=${LINKS:-0}
SHM=${SHM:-/dev/shm}
# tbf on every host's eth0: burst 256 KiB (several 64 KiB GSO frames, ~12 ms
# at 20 MiB/s), a queue of at most 50 ms.
TBF_BURST=256kb
TBF_LATENCY=50ms

RUN="" PIDS=() NETNS=() FAILED=""
P=lmksw$$ # namespace prefix: unique per bench process
BRNS=$P-br
TRACKER_IP=10.77.0.1 SEED_IP=10.77.0.2
T0=$(date +%s)
fail() { FAILED="bench-swarm: FAIL: $*"; exit 1; }
log() { printf '[bench-swarm %4ds] %s\n' "$(($(date +%s) - T0))" "$*"; }
ms() { echo $(($(date +%s%N) / 1000000)); }
now_ns() { local t=$EPOCHREALTIME; echo "${t/./}000"; }
dip() { echo "10.77.0.$((10 + $1))"; } # downloader i's address

alive() { # PID: running (not a zombie)
    local st
    [ -r /proc/"$1"/stat ] || return 1
    read -r _ _ st _ </proc/"$1"/stat 2>/dev/null || return 1
    [ "$st" != Z ]
}
tree() { # PID and whatever it started, children first
    local child
    # shellcheck disable=SC2013 # PIDs, one word each
    for child in $(cat /proc/"$1"/task/*/children 2>/dev/null); do tree "$child"; done
    echo "$1"
}
# Stops every process started here and what they started, by PID: TERM to all
# at once (children first), KILL to those left after 3 s, then reaps them.
stop_all() {
    local all=() pid i left
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        # shellcheck disable=SC2207 # PIDs, one word each
        all+=($(tree "${PIDS[i]}"))
    done
    for pid in "${all[@]}"; do kill "$pid" 2>/dev/null || true; done
    for _ in $(seq 30); do
        left=0
        for pid in "${all[@]}"; do if alive "$pid"; then left=1 && break; fi; done
        [ "$left" = 1 ] || break
        sleep 0.1
    done
    for pid in "${all[@]}"; do if alive "$pid"; then kill -9 "$pid" 2>/dev/null || true; fi; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
}
# Namespaces, newest first: a process still inside one is ours (only this
# script starts processes there) and is killed by its PID; then the veth (eth0,
# which takes its peer on the bridge along), the bridge, the namespace.
del_netns() {
    local ns pid i
    for ((i = ${#NETNS[@]} - 1; i >= 0; i--)); do
        ns=${NETNS[i]}
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
        ip -n "$ns" link del dev eth0 2>/dev/null || true
        ip -n "$ns" link del dev br0 2>/dev/null || true
        ip netns del "$ns" 2>/dev/null || true
    done
    NETNS=()
}
on_exit() {
    set +e # clean up whatever fails here
    exec 8>&-
    stop_all
    del_netns
    if [ "$1" != 0 ] && [ -n "$RUN" ]; then
        for f in "$RUN"/*.log; do [ -s "$f" ] && { echo "--- ${f##*/}"; tail -n 8 "$f"; }; done >&2
    fi
    if [ -n "$RUN" ] && [ -n "${KEEP:-}" ]; then
        echo "bench-swarm: kept $RUN" >&2
    elif [ -n "$RUN" ]; then
        rm -rf "$RUN"
    fi
    if [ -n "$FAILED" ]; then echo "$FAILED" >&2; fi
}
trap 'on_exit $?' EXIT
trap 'FAILED="bench-swarm: FAIL: interrupted"; exit 130' INT
trap 'FAILED="bench-swarm: FAIL: terminated"; exit 143' TERM
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || fail "needs root (ip netns, veth, tc)"
{ command -v ip && command -v tc; } >/dev/null || fail "needs ip and tc (Debian package iproute2)"
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3) || fail "python3 is needed (torrents, tracker probes, summary)"

# --- tools: install from Debian's packages what is missing (as root only) --------
want() { case " $SYSTEMS " in *" $1 "*) return 0 ;; esac; return 1; }
has_lt() { [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import libtorrent' 2>/dev/null; }
need=()
command -v iperf3 >/dev/null || need+=(iperf3)
if want aria2c; then command -v aria2c >/dev/null || need+=(aria2); fi
if want aria2c || want libtorrent; then command -v opentracker >/dev/null || need+=(opentracker); fi
if want libtorrent; then has_lt || need+=(python3-libtorrent); fi
if [ ${#need[@]} -gt 0 ]; then
    if [ -z "${NO_INSTALL:-}" ] && command -v apt-get >/dev/null; then
        log "installing ${need[*]} from Debian's packages"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"; } >/dev/null 2>&1 ||
            log "WARNING: apt-get install ${need[*]} failed; what is missing is skipped"
    else
        log "missing ${need[*]} (NO_INSTALL set or no apt-get): what needs them is skipped"
    fi
fi

# --- binaries: built, then copied so that a rebuild during the run changes nothing
if [ -n "${LMK_BIN_DIR:-}" ]; then
    SRC_BIN=$LMK_BIN_DIR
elif want lmk; then
    log "cargo build --release"
    cargo build --release --quiet || log "WARNING: cargo build failed; using the last binaries in target/release"
    SRC_BIN=target/release
fi

# --- the run directory (tmpfs) ----------------------------------------------------
HALF_MIB=$((SIZE_MIB / 2))
MAX_N=0
for n in $N_LIST $HETERO_N $SLOW_N; do [ "$n" -le "$MAX_N" ] || MAX_N=$n; done
[ "$MAX_N" -ge 1 ] || fail "no rows: NS='$N_LIST' HETERO_N=$HETERO_N"
[ "$MAX_N" -le 200 ] || fail "at most 200 downloaders (10.77.0.11-210)"
SHM_FREE_MIB=$(($(df -Pk "$SHM" | awk 'NR == 2 {print $4}') / 1024))
[ $((SIZE_MIB * (MAX_N + 3))) -le "$SHM_FREE_MIB" ] || fail "$SHM has only $SHM_FREE_MIB MiB free"
RUN=$(mktemp -d "$SHM/lmk-bench-swarm.XXXXXX")
mkdir -p "$RUN/bin" "$RUN/src" "$RUN/out" "$RUN/ot"
cp scripts/lt-peer.py "$RUN/bin/"

SKIP=() # "system: reason"
skip() { SKIP+=("$1: $2"); log "SKIP $1: $2"; }
LEECHER_LISTEN=0
if want lmk; then
    if cp "$SRC_BIN/lmk-tracker" "$SRC_BIN/lmk-seeder" "$SRC_BIN/lmk-leecher" "$RUN/bin/" 2>/dev/null; then
        # The leecher takes --listen once it uploads to other leechers.
        if "$RUN/bin/lmk-leecher" --help 2>&1 | grep -q -- '--listen'; then LEECHER_LISTEN=1; fi
    else
        skip lmk "no lmk-* binaries in $SRC_BIN"
    fi
fi
if want aria2c; then
    command -v aria2c >/dev/null || skip aria2c "aria2c missing (Debian package aria2)"
    command -v opentracker >/dev/null || skip aria2c "opentracker missing"
fi
if want libtorrent; then
    has_lt || skip libtorrent "python3-libtorrent missing for /usr/bin/python3"
    command -v opentracker >/dev/null || skip libtorrent "opentracker missing"
fi
skipped() { local s; for s in "${SKIP[@]}"; do [ "${s%%:*}" != "$1" ] || return 0; done; return 1; }
ACTIVE=()
for s in $SYSTEMS; do
    case $s in lmk | aria2c | libtorrent) ;; *) fail "unknown system $s (SYSTEMS: lmk aria2c libtorrent)" ;; esac
    skipped "$s" || ACTIVE+=("$s")
done

CPU_MODEL=$(lscpu | sed -n 's/^Model name: *//p' | head -n 1)
CORES=$(nproc)
COMMIT=$(git describe --always --dirty 2>/dev/null || echo unknown)
log "machine: $CPU_MODEL, $CORES cores, $(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024)) MiB RAM, kernel $(uname -r); load average $(cut -d' ' -f1-3 /proc/loadavg)"
log "commit $COMMIT; run directory $RUN (tmpfs); systems: ${ACTIVE[*]:-none}${SKIP[*]:+; skipped: ${SKIP[*]}}"
VERSIONS=""
if want lmk && ! skipped lmk; then
    VERSIONS+="lmk: binaries from $SRC_BIN, leecher --listen: $([ $LEECHER_LISTEN = 1 ] && echo yes || echo 'no (downloads from the seeder only)'); "
fi
if want aria2c && ! skipped aria2c; then VERSIONS+="$(aria2c --version | head -n 1); "; fi
if want libtorrent && ! skipped libtorrent; then VERSIONS+="libtorrent $(/usr/bin/python3 -c 'import libtorrent; print(libtorrent.__version__)'); "; fi
if command -v opentracker >/dev/null; then VERSIONS+="opentracker $(dpkg-query -W -f '${Version}' opentracker 2>/dev/null || echo '?')"; fi
log "versions: $VERSIONS"

# --- files and torrents ---------------------------------------------------------------
make_file() { dd if=/dev/urandom of="$1" bs=1M count="$2" iflag=fullblock status=none; }
declare -A SHA HASH
file_name() { echo "swarm-$1.bin"; } # by size in MiB
row_mib() { if [ "$1" -ge 16 ]; then echo "$HALF_MIB"; else echo "$SIZE_MIB"; fi; } # file size of a row of N
SIZES=$( (for n in $N_LIST $HETERO_N; do if [ "$n" -gt 0 ]; then row_mib "$n"; fi; done
    [ "$SLOW_N" = 0 ] || echo "$SLOW_ROW_MIB") | sort -nu)
for mib in $SIZES; do
    f=$RUN/src/$(file_name "$mib")
    log "making $mib MiB of random data: ${f##*/}"
    make_file "$f" "$mib"
    SHA[$mib]=$(sha1sum "$f" | cut -d' ' -f1)
    HASH[$mib]=$("$PY" scripts/mktorrent.py "$f" "http://$TRACKER_IP:6969/announce" "$f.torrent" $((PIECE_KIB * 1024)))
    echo "${HASH[$mib]}" >>"$RUN/ot/whitelist.txt"
done

# --- the network ------------------------------------------------------------------------
mkns() {
    ip netns add "$1" || fail "ip netns add $1 failed"
    NETNS+=("$1")
    ip -n "$1" link set lo up
}
# host NAME IP: namespace P-NAME with eth0 (IP/24), its peer v-NAME on the bridge;
# IP[NAME] holds the address.
declare -A IP
host() {
    IP[$1]=$2
    mkns "$P-$1"
    ip link add eth0 netns "$P-$1" type veth peer name "v-$1" netns "$BRNS" || fail "veth for $1"
    ip -n "$BRNS" link set dev "v-$1" master br0 up || fail "v-$1 on the bridge"
    ip -n "$P-$1" addr add "$2/24" dev eth0 || fail "address of $1"
    ip -n "$P-$1" link set dev eth0 up || fail "eth0 of $1 up"
}
BPS() { awk -v m="$1" 'BEGIN {printf "%d", m * 1048576}'; } # MiB/s -> bytes/s
# set_rate NAME MiB/s: tbf on the host's uplink. tc's unit "bps" is bytes per second.
set_rate() {
    tc -n "$P-$1" qdisc replace dev eth0 root tbf rate "$(BPS "$2")bps" burst $TBF_BURST latency $TBF_LATENCY ||
        fail "tc tbf on $1"
}
tx_bytes() { ip netns exec "$P-$1" cat /sys/class/net/eth0/statistics/tx_bytes; }
# links_start N: with LINKS=1, a sampler in the bridge's namespace writes to RUN/links.txt, once a
# second until stopped (or DEADLINE + 5 s), the time and what each host (s, d1..dN) has sent: the
# bridge's side of its veth receives what its eth0 sends. One process reading sysfs, so that the
# sampling costs the machine next to nothing.
links_start() {
    [ "$LINKS" = 1 ] || return 0
    # shellcheck disable=SC2016 # expanded by the sampler's shell
    ip netns exec "$BRNS" bash -c '
        end=$((SECONDS + $1 + 5)); shift
        while [ "$SECONDS" -lt "$end" ]; do
            line=$EPOCHREALTIME
            for h in "$@"; do read -r b <"/sys/class/net/v-$h/statistics/rx_bytes"; line+=" $b"; done
            echo "$line"
            sleep 1
        done' _ "$DEADLINE" s $(seq -f 'd%g' 1 "$1") >"$RUN/links.txt" 8>&- &
    PIDS+=("$!")
}
# cpu_ticks: "busy total" jiffies of all CPUs so far (/proc/stat; idle = idle + iowait).
cpu_ticks() {
    local _cpu user nice sys idle iowait irq softirq steal
    read -r _cpu user nice sys idle iowait irq softirq steal _ </proc/stat
    echo "$((user + nice + sys + irq + softirq + steal)) $((user + nice + sys + idle + iowait + irq + softirq + steal))"
}
log "network: bridge in namespace $BRNS, hosts t (tracker $TRACKER_IP), s (seed $SEED_IP), d1..d$MAX_N ($(dip 1)...)"
mkns "$BRNS"
ip -n "$BRNS" link add br0 type bridge || fail "cannot make a bridge"
ip -n "$BRNS" link set dev br0 up
host t "$TRACKER_IP"
host s "$SEED_IP"
for ((i = 1; i <= MAX_N; i++)); do host "d$i" "$(dip "$i")"; done
HOSTS=(t s)
for ((i = 1; i <= MAX_N; i++)); do HOSTS+=("d$i"); done
# Every host is told every other's MAC address up front. The kernel keeps one
# ARP table for all namespaces, capped by net.ipv4.neigh.default.gc_thresh3
# (1024 entries by default), and 34 hosts learning 33 neighbours each
# overflowed it ("neighbor table overflow!" in dmesg): a host whose entries
# could not be made reached no peer by TCP for 30 s (d18, d25 in N=32 runs).
# Permanent entries do not count against the cap. With no ARP request to
# learn from, the bridge is told where each address is too, or it floods every
# host's frames to every port until that host sends (without it the first run
# of the N=4 row ended 1.2-1.3 s late, twice; with it 1.05-1.08 x in 4 runs).
declare -A NEIGH
for h in "${HOSTS[@]}"; do
    mac=$(ip netns exec "$P-$h" cat /sys/class/net/eth0/address)
    NEIGH[$h]="${IP[$h]} lladdr $mac"
    bridge -n "$BRNS" fdb replace "$mac" dev "v-$h" master static || fail "bridge entry for $h"
done
for h in "${HOSTS[@]}"; do
    for o in "${HOSTS[@]}"; do
        [ "$o" = "$h" ] || echo "neigh replace ${NEIGH[$o]} dev eth0 nud permanent"
    done >"$RUN/neigh-$h"
    ip -n "$P-$h" -batch "$RUN/neigh-$h" || fail "static ARP entries on $h"
done
for h in "${HOSTS[@]}"; do set_rate "$h" "$RATE_MIB"; done
log "tbf on every eth0: $(tc -n "$P-s" qdisc show dev eth0 | head -n 1)"

# spawn NAME NS CMD...: CMD in namespace NS in the background, stdout and stderr
# to RUN/NAME.out and RUN/NAME.log; sets SP_PID. (fd 8, the start gate, closed.)
spawn() {
    local name=$1 ns=$2
    shift 2
    ip netns exec "$ns" "$@" >"$RUN/$name.out" 2>"$RUN/$name.log" 8>&- &
    SP_PID=$!
    PIDS+=("$SP_PID")
}
# until_ok SECS WHAT CMD...: polls CMD every 0.1 s; after SECS says it waited
# in vain for WHAT and returns 1.
until_ok() {
    local secs=$1 end=$(($(ms) + $1 * 1000)) what=$2
    shift 2
    until "$@" 2>/dev/null; do
        [ "$(ms)" -lt "$end" ] || { log "timed out after ${secs}s waiting for $what"; return 1; }
        sleep 0.1
    done
}

# --- tbf check: iperf3 between two namespaces -------------------------------------------
TBF_JSON="null"
iperf_check() { # FROM TO MiB/s: one 4 s TCP stream FROM -> TO (the first second omitted)
    local from=$1 to=$2 mib=$3 ip=${IP[$2]} tx0 tx1 t0 t1
    spawn "iperf3-server-$to" "$P-$to" iperf3 -s -B "$ip" -1
    until_ok 10 "iperf3 server listening" bash -c "ip netns exec $P-$to ss -tlnH 'sport = :5201' | grep -q ." ||
        fail "iperf3 server did not start"
    tx0=$(tx_bytes "$from") t0=$(ms)
    ip netns exec "$P-$from" iperf3 -c "$ip" -t 4 -O 1 -J >"$RUN/iperf3-$from.json" 2>"$RUN/iperf3-$from.log" 8>&- ||
        fail "iperf3 $from -> $to failed"
    tx1=$(tx_bytes "$from") t1=$(ms)
    "$PY" - "$RUN/iperf3-$from.json" "$mib" "$((tx1 - tx0))" "$((t1 - t0))" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
mib, tx, ms = float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
got = d["end"]["sum_received"]["bytes"] / d["end"]["sum_received"]["seconds"] / 2**20
wire = tx / (ms / 1000) / 2**20
print(json.dumps({"configured_MiBps": mib, "iperf3_payload_MiBps": round(got, 3), "payload_ratio": round(got / mib, 4),
                  "veth_tx_MiBps_whole_test": round(wire, 3)}))
EOF
}
if command -v iperf3 >/dev/null; then
    r1=$(iperf_check s d1 "$RATE_MIB")
    log "tbf check, iperf3 s -> d1 (4 s, first omitted): $r1"
    TBF_JSON="{\"fast\":$r1"
    if [ "$HETERO_N" -gt 0 ] && [ "$MAX_N" -ge 2 ]; then
        set_rate d2 "$SLOW_MIB"
        r2=$(iperf_check d2 d1 "$SLOW_MIB")
        log "tbf check, iperf3 d2 -> d1 at the slow rate: $r2"
        TBF_JSON+=",\"slow\":$r2"
        set_rate d2 "$RATE_MIB"
    fi
    TBF_JSON+="}"
    stop_all
else
    log "tbf check: SKIP (no iperf3)"
fi
FLOOR=$("$PY" -c 'print(f"{1514 / 1448:.3f}")')
log "practical floor: tbf meters whole frames, and a full TCP segment carries 1448 payload bytes in a 1514-byte frame (0.956), so about $FLOOR x T_p2p; uplinks also carry the ACKs of their host's downloads"

# --- tracker and seed per system ---------------------------------------------------------
start_opentracker() { # in the tracker namespace; checks that the whitelist is loaded
    (cd "$RUN/ot" && exec ip netns exec "$P-t" opentracker -i "$TRACKER_IP" -p 6969 -P 6969 -d "$RUN/ot" -w whitelist.txt) \
        >"$RUN/$1.out" 2>"$RUN/$1.log" 8>&- &
    PIDS+=($!)
    # An announce (then its stopped) that only a whitelisted hash gets an answer to.
    until_ok 10 "opentracker answer with the whitelist loaded" \
        ip netns exec "$P-t" "$PY" - "$TRACKER_IP" "${HASH[$2]}" <<'EOF'
import sys, urllib.parse, urllib.request
ih = urllib.parse.quote(bytes.fromhex(sys.argv[2]))
base = f"http://{sys.argv[1]}:6969/announce?info_hash={ih}&peer_id=-PROBE0-000000000000&port=9&uploaded=0&downloaded=0&compact=1"
r = urllib.request.urlopen(base + "&left=1&event=started", timeout=1).read()
urllib.request.urlopen(base + "&left=1&event=stopped", timeout=1).read()
sys.exit(b"failure" in r)
EOF
}
ot_seeders() { # MIB: complete count in an opentracker scrape (>= 1 once the seed announced)
    ip netns exec "$P-t" "$PY" - "$TRACKER_IP" "${HASH[$1]}" <<'EOF'
import re, sys, urllib.parse, urllib.request
ih = urllib.parse.quote(bytes.fromhex(sys.argv[2]))
r = urllib.request.urlopen(f"http://{sys.argv[1]}:6969/scrape?info_hash={ih}", timeout=1).read()
m = re.search(rb"8:completei(\d+)e", r)
sys.exit(0 if m and int(m.group(1)) >= 1 else 1)
EOF
}
lmk_listed() { # NAME: the catalog lists it
    ip netns exec "$P-d1" "$RUN/bin/lmk-leecher" -q --tracker "$TRACKER_IP:6969" --timeout 2 list 2>/dev/null 8>&- |
        grep -q "^$1 "
}

# peer.sh GO READY DONE PATTERN CMD...: one downloader (see its comment).
cat >"$RUN/bin/peer.sh" <<'EOF'
#!/usr/bin/env bash
# Opens the fifo GO, creates READY, waits for end-of-file on GO (the bench closes
# its end at t0, so that every downloader starts at the same moment), then runs
# CMD. With a PATTERN, CMD's stdout is passed through and the time (ns since the
# epoch) of its first line starting with PATTERN is written to DONE.
set -o pipefail
exec 9<"$1"
: >"$2"
read -r -u 9 _ || true
exec 9<&-
done_file=$3 pat=$4
shift 4
[ -n "$pat" ] || exec "$@"
"$@" | {
    seen=
    while IFS= read -r line; do
        printf '%s\n' "$line"
        if [ -z "$seen" ] && [[ $line == "$pat"* ]]; then
            t=$EPOCHREALTIME
            printf '%s000\n' "${t/./}" >"$done_file.tmp" && mv "$done_file.tmp" "$done_file"
            seen=1
        fi
    done
}
EOF
chmod +x "$RUN/bin/peer.sh"

# --- one run ------------------------------------------------------------------------------
# run_one SYSTEM ROW N MIB RUN_NO: appends a line to RUN/results.tsv.
RESULTS=$RUN/results.tsv
: >"$RESULTS"
run_one() {
    local sys=$1 row=$2 n=$3 mib=$4 k=$5 name src i status="ok" tx0 tx1 t0 end busy0 total0 busy1 total1 cpu
    name=$(file_name "$mib") src=$RUN/src/$name
    if [ -n "${KEEP:-}" ] && [ -n "${LAST_RUN:-}" ]; then
        # The previous run's logs, for a run that was slow for no reason seen in the table.
        mkdir -p "$RUN/logs/$LAST_RUN"
        mv "$RUN"/*.out "$RUN"/*.log "$RUN/logs/$LAST_RUN/" 2>/dev/null || true
    fi
    LAST_RUN=row$row-$sys-$k
    rm -rf "$RUN/out" "$RUN"/done.* "$RUN"/ready.* "$RUN"/*.out "$RUN"/*.log "$RUN/go"
    mkdir -p "$RUN/out"
    for ((i = 1; i <= n; i++)); do mkdir -p "$RUN/out/d$i"; done

    # tracker and seed, ready before the downloaders start
    case $sys in
    lmk)
        spawn tracker "$P-t" "$RUN/bin/lmk-tracker" --listen "$TRACKER_IP:6969" --interval "$LMK_INTERVAL"
        until_ok 10 "'listening on' from lmk-tracker" grep -q '^listening on' "$RUN/tracker.out" || status="FAIL: tracker"
        # shellcheck disable=SC2086 # extra options, split on purpose
        spawn seeder "$P-s" "$RUN/bin/lmk-seeder" --tracker "$TRACKER_IP:6969" --listen "$SEED_IP:7000" $LMK_SEEDER_ARGS "$src"
        [ "$status" != ok ] || until_ok 60 "$name in the catalog" lmk_listed "$name" || status="FAIL: seed not listed"
        ;;
    aria2c | libtorrent)
        start_opentracker tracker "$mib" || status="FAIL: opentracker"
        if [ "$sys" = aria2c ]; then
            spawn seeder "$P-s" aria2c "${ARIA_ARGS[@]}" --dir="$RUN/src" --log="$RUN/seeder.aria.log" \
                --check-integrity=true --seed-ratio=0.0 "$src.torrent"
        else
            spawn seeder "$P-s" "$PY" "$RUN/bin/lt-peer.py" "$src.torrent" "$RUN/src" "$SEED_IP:6881" --seed "${LT_ARGS[@]}"
            [ "$status" != ok ] || until_ok 60 "'ready' from the libtorrent seed" grep -q '^ready' "$RUN/seeder.out" ||
                status="FAIL: seed not ready"
        fi
        [ "$status" != ok ] || until_ok 60 "the seed in an opentracker scrape" ot_seeders "$mib" || status="FAIL: seed not announced"
        ;;
    esac

    # downloaders, each waiting at the gate
    mkfifo "$RUN/go"
    exec 8<>"$RUN/go"
    local dl_pids=()
    for ((i = 1; i <= n; i++)); do
        [ "$status" = ok ] || break
        local ip
        ip=$(dip "$i")
        case $sys in
        lmk)
            local listen=()
            [ $LEECHER_LISTEN = 0 ] || listen=(--listen "$ip:7000")
            # shellcheck disable=SC2086 # extra options, split on purpose
            spawn "d$i" "$P-d$i" "$RUN/bin/peer.sh" "$RUN/go" "$RUN/ready.$i" "$RUN/done.$i" "$name: done," \
                "$RUN/bin/lmk-leecher" --tracker "$TRACKER_IP:6969" "${listen[@]}" $LMK_LEECHER_ARGS \
                get "$name" --out "$RUN/out/d$i"
            ;;
        aria2c)
            # shellcheck disable=SC2016 # $t belongs to the hook
            printf '#!/bin/sh\nt=$(date +%%s%%N)\necho "$t" >"%s.tmp" && mv "%s.tmp" "%s"\n' \
                "$RUN/done.$i" "$RUN/done.$i" "$RUN/done.$i" >"$RUN/bin/hook.$i.sh"
            chmod +x "$RUN/bin/hook.$i.sh"
            spawn "d$i" "$P-d$i" "$RUN/bin/peer.sh" "$RUN/go" "$RUN/ready.$i" "$RUN/done.$i" "" \
                aria2c "${ARIA_ARGS[@]}" --dir="$RUN/out/d$i" --log="$RUN/d$i.aria.log" \
                --on-bt-download-complete="$RUN/bin/hook.$i.sh" "$src.torrent"
            ;;
        libtorrent)
            spawn "d$i" "$P-d$i" "$PY" "$RUN/bin/lt-peer.py" "$src.torrent" "$RUN/out/d$i" "$ip:6881" \
                --done "$RUN/done.$i" --gate "$RUN/go" "$RUN/ready.$i" "${LT_ARGS[@]}"
            ;;
        esac
        dl_pids+=("$SP_PID")
    done
    if [ "$status" = ok ]; then
        for ((i = 1; i <= n; i++)); do
            until_ok 60 "d$i at the start gate" test -e "$RUN/ready.$i" || { status="FAIL: d$i never reached the gate"; break; }
        done
    fi

    # go: t0, then every downloader starts at once
    local done_ns=() finished=0 failed_dl="" ns
    [ "$status" != ok ] || links_start "$n"
    tx0=$(tx_bytes s)
    read -r busy0 total0 < <(cpu_ticks)
    t0=$(now_ns)
    exec 8>&-
    end=$((t0 / 1000000 + DEADLINE * 1000))
    while [ "$status" = ok ] && [ "$finished" -lt "$n" ]; do
        for ((i = 1; i <= n; i++)); do
            [ -z "${done_ns[i]:-}" ] || continue
            if ! [ -s "$RUN/done.$i" ] && ! alive "${dl_pids[i - 1]}"; then
                sleep 0.5 # its done line or hook may be on the way
                if ! [ -s "$RUN/done.$i" ]; then
                    status="FAIL: d$i exited before it was done"
                    failed_dl=d$i
                    break
                fi
            fi
            if [ -s "$RUN/done.$i" ]; then
                read -r ns <"$RUN/done.$i"
                done_ns[i]=$ns
                finished=$((finished + 1))
            fi
        done
        [ "$finished" -lt "$n" ] || break
        if [ "$(ms)" -ge "$end" ]; then
            status="TIMEOUT: $finished/$n done after ${DEADLINE}s"
            break
        fi
        sleep 0.05
    done
    tx1=$(tx_bytes s)
    read -r busy1 total1 < <(cpu_ticks)
    cpu=$(((busy1 - busy0) * 100 / (total1 - total0 > 0 ? total1 - total0 : 1)))
    stop_all
    rm -f "$RUN/go"

    # every copy byte-exact
    if [ "$status" = ok ]; then
        for ((i = 1; i <= n; i++)); do
            cmp -s "$src" "$RUN/out/d$i/$name" || { status="FAIL: the copy of d$i differs from the source"; failed_dl=d$i; break; }
        done
    fi
    local times=""
    for ((i = 1; i <= n; i++)); do
        if [ -n "${done_ns[i]:-}" ]; then times+="$(( (done_ns[i] - t0) / 1000000 )),"; else times+="-,"; fi
    done
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$sys" "$row" "$k" "$status" "$((tx1 - tx0))" "${times%,}" "$cpu" >>"$RESULTS"
    "$PY" - "$sys" "$row" "$k" "$status" "$((tx1 - tx0))" "${times%,}" "$mib" "${TP2P[$row]}" "$cpu" <<'EOF'
import sys
sys_, row, k, status, tx, times, mib, tp, cpu = sys.argv[1:]
t = [int(x) / 1000 for x in times.split(",") if x != "-"]
F, tp = int(mib) * 2**20, float(tp)
line = f"  {sys_:<10} run {k}: {status}"
if t:
    line += f"; last {max(t):.2f}s ({max(t) / tp:.2f} x T_p2p), mean {sum(t) / len(t):.2f}s ({sum(t) / len(t) / tp:.2f} x)"
line += f", seed sent {int(tx) / F:.2f} copies, CPU {cpu}% busy; done at " + " ".join(f"{x:.1f}" for x in t)
print(line)
EOF
    if [ "$LINKS" = 1 ] && [ -s "$RUN/links.txt" ]; then
        "$PY" - "$RUN/links.txt" "$t0" "${times%,}" "${ROW_SLOW[$row]}" <<'EOF'
import statistics, sys
path, t0, times, first_slow = sys.argv[1], int(sys.argv[2]) / 1e9, sys.argv[3], int(sys.argv[4])
last = max([int(x) / 1000 for x in times.split(",") if x != "-"] or [0.0])
rows = [[float(v) for v in l.split()] for l in open(path) if l.strip()]
rows = [r for r in rows if len(r) == len(rows[0])]  # a line cut short when the sampler stopped
n = len(rows[0]) - 2 if rows else 0
fast = [i for i in range(1, n + 1) if not first_slow or i < first_slow]
slow = [i for i in range(1, n + 1) if first_slow and i >= first_slow]
def spread(v): return f"{min(v):5.1f} {statistics.median(v):5.1f} {max(v):5.1f}"
head = f"    {'t (s)':>11} {'seed':>5} | {'downloaders' + (' (fast)' if slow else ''):<17}"
print(head + (f" | {'slow':<17}" if slow else "") + "   uplinks, MiB/s as the veths count (about the payload): least, median, most")
for a, b in zip(rows, rows[1:]):
    if a[0] - t0 > last + 1:
        break
    rate = [(y - x) / (b[0] - a[0]) / 2**20 for x, y in zip(a[1:], b[1:])]
    line = f"    {a[0] - t0:5.1f}-{b[0] - t0:<5.1f} {rate[0]:5.1f} | {spread([rate[i] for i in fast])}"
    print(line + (f" | {spread([rate[i] for i in slow])}" if slow else ""))
EOF
        rm -f "$RUN/links.txt"
    fi
    if [ "$status" != ok ]; then
        [ -n "$failed_dl" ] || failed_dl=$(for ((i = 1; i <= n; i++)); do [ -n "${done_ns[i]:-}" ] || { echo "d$i"; break; }; done)
        for f in "$RUN/tracker.log" "$RUN/seeder.out" "$RUN/seeder.log" ${failed_dl:+"$RUN/$failed_dl.out" "$RUN/$failed_dl.log"}; do
            [ -s "$f" ] && { echo "    --- ${f##*/} (tail)"; tail -n 6 "$f" | sed 's/^/    /'; }
        done >&2
    fi
    rm -rf "$RUN/out"
}

# aria2c: peers from the tracker only; no DHT (HTTP tracker), LPD, PEX or IPv6.
ARIA_ARGS=(--no-conf=true --enable-dht=false --enable-dht6=false --disable-ipv6=true --bt-enable-lpd=false
    --enable-peer-exchange=false --async-dns=false --file-allocation=none --summary-interval=0
    --bt-save-metadata=false --console-log-level=warn --log-level=notice --listen-port=6881)

# libtorrent: extra settings for every peer (LT_SET="name=value ...").
LT_ARGS=()
for kv in $LT_SET; do LT_ARGS+=(--set "$kv"); done
if want libtorrent && ! skipped libtorrent; then
    if [ -z "$LT_SET" ]; then
        log "libtorrent: default settings, uTP included (LEDBAT yields to the tbf queue; LT_SET='enable_outgoing_utp=false enable_incoming_utp=false' for TCP only)"
    else
        log "libtorrent settings: $LT_SET"
    fi
fi

# --- rows ------------------------------------------------------------------------------------
ROW_N=() ROW_MIB=() ROW_SLOW=() ROW_LABEL=() ROW_RATE=()
declare -A TP2P
for n in $N_LIST; do
    ROW_N+=("$n") ROW_MIB+=("$(row_mib "$n")") ROW_SLOW+=(0) ROW_RATE+=("$RATE_MIB")
    ROW_LABEL+=("N=$n homogeneous")
done
if [ "$HETERO_N" -gt 0 ]; then
    ROW_N+=("$HETERO_N") ROW_MIB+=("$(row_mib "$HETERO_N")") ROW_RATE+=("$RATE_MIB")
    ROW_SLOW+=($((HETERO_N - HETERO_N / 2 + 1)))
    ROW_LABEL+=("N=$HETERO_N heterogeneous, d$((HETERO_N - HETERO_N / 2 + 1))-d$HETERO_N up $SLOW_MIB MiB/s")
fi
if [ "$SLOW_N" -gt 0 ]; then
    ROW_N+=("$SLOW_N") ROW_MIB+=("$SLOW_ROW_MIB") ROW_SLOW+=(0) ROW_RATE+=("$SLOW_ROW_RATE")
    ROW_LABEL+=("N=$SLOW_N homogeneous, all up $SLOW_ROW_RATE MiB/s")
fi
: >"$RUN/rows.tsv"
for r in "${!ROW_N[@]}"; do
    n=${ROW_N[r]} mib=${ROW_MIB[r]} first_slow=${ROW_SLOW[r]} up=${ROW_RATE[r]}
    TP2P[$r]=$("$PY" -c "
n, F, us, uf, usl, fs = $n, $mib * 2**20, $up * 2**20, $up * 2**20, $SLOW_MIB * 2**20, $first_slow
ups = [usl if fs and i >= fs else uf for i in range(1, n + 1)]
print(round(max(F / us, n * F / (us + sum(ups))), 4))")
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$n" "$mib" "${TP2P[$r]}" "$up" "${ROW_LABEL[r]}" >>"$RUN/rows.tsv"
    set_rate s "$up"
    for ((i = 1; i <= n; i++)); do
        rate=$up
        [ "$first_slow" = 0 ] || [ "$i" -lt "$first_slow" ] || rate=$SLOW_MIB
        set_rate "d$i" "$rate"
    done
    log "== row $r: ${ROW_LABEL[r]}, $mib MiB, seed up $up MiB/s, T_p2p $(printf %.2f "${TP2P[$r]}")s (load average $(cut -d' ' -f1 /proc/loadavg)) =="
    for k in $(seq "$RUNS"); do
        for sys in "${ACTIVE[@]}"; do run_one "$sys" "$r" "$n" "$mib" "$k"; done
    done
    for h in s $(seq -f 'd%g' 1 "$n"); do set_rate "$h" "$RATE_MIB"; done
done

# The seed's source files are unchanged (no client wrote to them).
for mib in "${!SHA[@]}"; do
    [ "$(sha1sum "$RUN/src/$(file_name "$mib")" | cut -d' ' -f1)" = "${SHA[$mib]}" ] ||
        fail "the source file of $mib MiB changed during the bench"
done

# --- summary ---------------------------------------------------------------------------------
ELAPSED=$(($(date +%s) - T0))
log "done in ${ELAPSED}s; load average $(cut -d' ' -f1-3 /proc/loadavg)"
: >"$RUN/skip.txt"
[ ${#SKIP[@]} -eq 0 ] || printf '%s\n' "${SKIP[@]}" >"$RUN/skip.txt"
export VERSIONS CPU_MODEL COMMIT
"$PY" - "$RUN/rows.tsv" "$RESULTS" "$RUN/skip.txt" <<EOF
import json, os, statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
res = [l.rstrip("\n").split("\t") for l in open(sys.argv[2])]
systems = "${ACTIVE[*]}".split()
skipped = [s for s in "$SYSTEMS".split() if s not in systems]
out_rows = []
def f2(v): return "-" if v is None else f"{v:.2f}"
hdr = f"{'row':<44} {'MiB':>4} {'T_p2p':>7} {'seed@T':>6}"
for s in "$SYSTEMS".split():
    hdr += f" | {s + ': last':>16} {'mean':>5} {'seed':>5} {'cpu%':>4}"
print()
print("Swarm: 1 seed + N downloaders released together; uplinks capped by tbf at $RATE_MIB MiB/s (slow: $SLOW_MIB), downloads uncapped.")
print("last, mean: the last and the mean downloader's finish time / T_p2p; seed: the seed's veth tx bytes / file size (about its payload: one copy ~1.00);")
print("cpu%: the machine's CPUs busy from t0 to the last finish (all $CORES cores; near 100: the machine, not the network, is the limit).")
print("T_p2p = max(F/u_s, N*F/(u_s + sum u_i)); floor ~$FLOOR x T_p2p (TCP payload is 0.956 of a tbf rate). Medians over $RUNS run(s).")
print("seed@T: the copies a seed sending at its full rate until T_p2p uploads (u_s * T_p2p / F). 1 where the seed's uplink is the bound;")
print("above 1 the peers' uplinks are, and finishing at T_p2p takes that much of the seed: fewer copies leave more to the peers.")
print(hdr)
print("-" * len(hdr))
for r, n, mib, tp, up, label in rows:
    tp = float(tp)
    at_bound = int(up) * tp / int(mib)  # MiB/s x s / MiB
    line = f"{label:<44} {mib:>4} {tp:>6.2f}s {at_bound:>6.2f}"
    js = {"row": label, "n": int(n), "size_mib": int(mib), "t_p2p_s": tp, "seed_copies_at_bound": round(at_bound, 3), "systems": {}}
    for s in "$SYSTEMS".split():
        if s not in systems:
            line += f" | {'SKIP':>16} {'':>5} {'':>5} {'':>4}"
            js["systems"][s] = {"status": "SKIP"}
            continue
        runs = [x for x in res if x[0] == s and x[1] == r]
        ok = [x for x in runs if x[3] == "ok"]
        lasts, means, seeds, cpus, rj = [], [], [], [], []
        for x in runs:
            t = [int(v) / 1000 for v in x[5].split(",") if v != "-"]
            rec = {"run": int(x[2]), "status": x[3], "seed_tx_bytes": int(x[4]), "cpu_busy_pct": int(x[6]),
                   "finish_s": [None if v == "-" else int(v) / 1000 for v in x[5].split(",")]}
            if x[3] == "ok":
                lasts.append(max(t) / tp); means.append(sum(t) / len(t) / tp); seeds.append(int(x[4]) / (int(mib) * 2**20))
                cpus.append(int(x[6]))
                rec.update(t_last_s=max(t), t_mean_s=round(sum(t) / len(t), 3))
            rj.append(rec)
        if ok:
            med = lambda v: statistics.median(v)
            bad = len(runs) - len(ok)
            line += f" | {f2(med(lasts)) + ('*' if bad else ''):>16} {f2(med(means)):>5} {f2(med(seeds)):>5} {med(cpus):>4.0f}"
            js["systems"][s] = {"status": "ok" if not bad else f"{bad} of {len(runs)} runs failed", "last_over_tp2p": round(med(lasts), 3),
                                "mean_over_tp2p": round(med(means), 3), "seed_copies": round(med(seeds), 3),
                                "cpu_busy_pct": med(cpus), "runs": rj}
        else:
            st = runs[0][3].split(":")[0] if runs else "none"
            if st == "TIMEOUT":
                st += " " + runs[0][3].split()[1]  # TIMEOUT k/N
            line += f" | {st:>16} {'':>5} {'':>5} {'':>4}"
            js["systems"][s] = {"status": st, "runs": rj}
    out_rows.append(js)
    print(line)
if any(x[3] != "ok" for x in res):
    print("* some runs failed or timed out (see the run lines above); figures from the others")
for s in open(sys.argv[3]).read().splitlines():
    print("SKIP " + s)
print()
summary = {
    "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "commit": os.environ["COMMIT"], "machine": {"cpu": os.environ["CPU_MODEL"], "cores": $CORES},
    "rate_mib": $RATE_MIB, "slow_mib": $SLOW_MIB, "size_mib": $SIZE_MIB, "piece_kib": $PIECE_KIB, "runs": $RUNS,
    "deadline_s": $DEADLINE, "lmk_interval_s": $LMK_INTERVAL, "lt_set": "$LT_SET", "lmk_leecher_listen": bool($LEECHER_LISTEN),
    "tbf": {"burst": "$TBF_BURST", "latency": "$TBF_LATENCY", "check": $TBF_JSON}, "floor": $FLOOR,
    "seconds": $ELAPSED, "versions": os.environ["VERSIONS"], "skipped": skipped, "rows": out_rows,
    "failed_runs": sum(x[3] != "ok" for x in res),
}
print(json.dumps(summary, separators=(",", ":")))
EOF
