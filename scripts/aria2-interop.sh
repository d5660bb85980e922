#!/usr/bin/env bash
# aria2c part of the real-client check (scripts/real-client.sh): a stock
# BitTorrent client (aria2c, from Debian) uses lmk-tracker as its BEP 15 UDP
# tracker, and one aria2c leecher fetches an ~8 MiB file from one aria2c seeder
# whose address it can only have learnt from lmk-tracker.
# Everything stays on 127.0.0.1: no DHT entry point, no LPD, no PEX, a private
# torrent, sockets bound to 127.0.0.1, and a watch on the clients' sockets.
# With `http` the torrent's tracker is http://.../announce (BEP 3) instead.
# usage: aria2-interop.sh LMK_TRACKER_BINARY [udp|http]    Env: DEADLINE=secs (90).
set -euo pipefail

DEADLINE=${DEADLINE:-90}
SCHEME=${2:-udp}
LABEL=aria2c
[ "$SCHEME" = udp ] || LABEL="aria2c over $SCHEME://"
TMP="" PIDS=() FAILED=""
fail() { FAILED="real-client: FAIL $LABEL: $*"; exit 1; }
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ -n "$TMP" ]; then rm -rf "$TMP"; fi
}
on_exit() {
    set +e # clean up whatever fails here
    # On failure, show the tail of every log before the temp dir goes,
    # then the reason, last, where it is seen.
    if [ "$1" != 0 ] && [ -n "$TMP" ]; then
        for f in "$TMP"/*.log; do echo "--- aria2c: ${f##*/}"; tail -n 25 "$f"; done >&2
    fi
    cleanup
    if [ -n "$FAILED" ]; then echo "$FAILED"; fi
}
trap 'on_exit $?' EXIT
trap 'FAILED="real-client: FAIL $LABEL: interrupted"; exit 130' INT
trap 'FAILED="real-client: FAIL $LABEL: terminated"; exit 143' TERM
cd "$(dirname "$0")/.."

command -v aria2c >/dev/null || { echo "real-client: SKIP $LABEL: not installed (Debian's aria2)"; exit 0; }
command -v python3 >/dev/null || fail "python3 is needed to write the torrent and scrape"
TRACKER=${1:?usage: aria2-interop.sh LMK_TRACKER_BINARY}
[ -x "$TRACKER" ] || fail "no executable $TRACKER"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/real-client.XXXXXX")

# The tracker; -v adds a debug line for every datagram it drops or refuses.
# Its output file exists before the loop below reads it (the background
# process may open it later).
: >"$TMP/tracker.out"
"$TRACKER" --listen 127.0.0.1:0 --interval 2 --status 0 -v >"$TMP/tracker.out" 2>"$TMP/tracker.log" &
PIDS+=($!)
TPID=$!
for _ in $(seq 100); do
    PORT=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$TMP/tracker.out")
    [ -n "$PORT" ] && break
    kill -0 "$TPID" 2>/dev/null || fail "lmk-tracker exited before binding"
    sleep 0.1
done
[ -n "$PORT" ] || fail "lmk-tracker printed no 'listening on' line within 10 s"

# Random 8 MiB payload and a private torrent (BEP 27: tracker-only peers).
mkdir -p "$TMP/seed" "$TMP/leech"
head -c $((8 << 20)) /dev/urandom >"$TMP/seed/payload.bin"
HASH=$(python3 scripts/mktorrent.py "$TMP/seed/payload.bin" "$SCHEME://127.0.0.1:$PORT/announce" "$TMP/payload.torrent" $((256 << 10)))

# Four free loopback ports: TCP peer and UDP DHT/tracker socket per client.
read -r SEED_TCP SEED_UDP LEECH_TCP LEECH_UDP < <(python3 -c '
import socket
ss = [socket.socket(socket.AF_INET, t) for t in (1, 2, 1, 2)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')

# aria2c only speaks UDP trackers over its DHT socket, so DHT is on, but with a
# fresh routing table and no entry point it has nobody to talk to. (An HTTP
# tracker needs no DHT socket; the same options keep the two runs alike.)
aria() { # name tcp-port udp-port dir [more options]
    local name=$1 tcp=$2 udp=$3 dir=$4; shift 4
    aria2c --no-conf=true --dir="$dir" --listen-port="$tcp" --interface=127.0.0.1 \
        --enable-dht=true --dht-listen-port="$udp" --dht-file-path="$TMP/$name.dht" \
        --enable-dht6=false --disable-ipv6=true --bt-enable-lpd=false --enable-peer-exchange=false \
        --bt-external-ip=127.0.0.1 --async-dns=false --file-allocation=none --summary-interval=0 \
        --bt-save-metadata=false --console-log-level=warn --log="$TMP/$name.log" --log-level=info \
        "$@" "$TMP/payload.torrent" >"$TMP/$name.out" 2>&1 &
    PIDS+=($!)
}
# The seeder verifies its copy, then seeds until killed.
aria seeder "$SEED_TCP" "$SEED_UDP" "$TMP/seed" --check-integrity=true --seed-ratio=0.0
SEEDER=$!
# Start the leecher only once the tracker has the seeder, so its very first
# announce answer carries the seeder's address (no re-announce wait).
for _ in $(seq 300); do
    grep -q "seeder 127.0.0.1:$SEED_TCP joined" "$TMP/tracker.log" && break
    kill -0 "$SEEDER" 2>/dev/null || fail "seeder aria2c exited early"
    sleep 0.1
done
grep -q "seeder 127.0.0.1:$SEED_TCP joined" "$TMP/tracker.log" || fail "seeder never announced to lmk-tracker within 30 s"
# The leecher seeds 1.2 s once complete, so it announces event=completed
# (with --seed-time=0 aria2c only says stopped), then exits with status 0.
ms() { echo $(($(date +%s%N) / 1000000)); }
START=$(ms) DONE=""
aria leecher "$LEECH_TCP" "$LEECH_UDP" "$TMP/leech" --seed-time=0.02
LEECHER=$!

# Wait for the leecher; meanwhile every client socket must face 127.0.0.0/8.
CLIENTS="pid=($SEEDER|$LEECHER),"
while kill -0 "$LEECHER" 2>/dev/null; do
    [ $(($(ms) - START)) -lt $((DEADLINE * 1000)) ] || fail "leecher not done within $DEADLINE s"
    [ -n "$DONE" ] || ! grep -qs "Download complete" "$TMP/leecher.log" || DONE=$(($(ms) - START))
    kill -0 "$SEEDER" 2>/dev/null || fail "seeder aria2c exited early"
    foreign=$(ss -tunapH 2>/dev/null | grep -E "$CLIENTS" | awk '{print $6}' | grep -vE '^(127\.[0-9.]+|\*|0\.0\.0\.0):' || true)
    [ -z "$foreign" ] || fail "aria2c reached beyond loopback: $foreign"
    sleep 0.2
done
PIDS=("$TPID" "$SEEDER") # the leecher is reaped below: never signal its PID again
wait "$LEECHER" || fail "leecher aria2c exited with status $?"
DONE=${DONE:-$(($(ms) - START))}

# Belt and braces: the clients' logs name no address outside 127.0.0.0/8
# (aria2c logs the host's own interface addresses at start: not traffic).
foreign=$(grep -vh "Found configured address" "$TMP/seeder.log" "$TMP/leecher.log" |
    grep -ohE '\b[0-9]{1,3}(\.[0-9]{1,3}){3}\b' | grep -v '^127\.' | sort -u || true)
[ -z "$foreign" ] || fail "aria2c logs mention non-loopback addresses: $foreign"

SRC=$(sha1sum <"$TMP/seed/payload.bin" | cut -d' ' -f1)
GOT=$(sha1sum <"$TMP/leech/payload.bin" 2>/dev/null | cut -d' ' -f1) || true
[ "$SRC" = "$GOT" ] || fail "leecher copy differs (sha1 ${GOT:-missing} != $SRC)"

# The tracker must have stored the leecher too, at the TCP port it listens on.
grep -q "leecher 127.0.0.1:$LEECH_TCP joined" "$TMP/tracker.log" || fail "tracker log has no leecher join"

# A BEP 15 scrape of our own: connect (action 0), then scrape (action 2).
python3 - "$PORT" "$HASH" <<'EOF' || fail "scrape of lmk-tracker failed"
import socket, struct, sys
port, ih = int(sys.argv[1]), bytes.fromhex(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
s.sendto(struct.pack(">QII", 0x41727101980, 0, 7), ("127.0.0.1", port))
action, tid, conn = struct.unpack(">IIQ", s.recv(64))
assert (action, tid) == (0, 7), "bad connect answer"
s.sendto(struct.pack(">QII", conn, 2, 8) + ih, ("127.0.0.1", port))
action, tid, seeders, completed, leechers = struct.unpack(">IIIII", s.recv(64)[:20])
assert (action, tid) == (2, 8), "bad scrape answer"
print(f"aria2c: scrape: seeders={seeders} completed={completed} leechers={leechers}")
assert seeders >= 1 and completed >= 1, "tracker lost the seeder or the completion"
EOF

echo "real-client: PASS $LABEL $(aria2c --version | sed -n "1s/.* //p"): $(stat -c %s "$TMP/leech/payload.bin") bytes in $((DONE / 1000)).$((DONE % 1000 / 100)) s through lmk-tracker"
