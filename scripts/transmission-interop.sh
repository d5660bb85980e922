#!/usr/bin/env bash
# Transmission part of the real-client check (scripts/real-client.sh): a
# libtorrent seeder (scripts/lt-interop.py peer mode) announces the torrent
# over UDP (BEP 15), and a Transmission leecher (Debian's transmission-cli)
# over HTTP (BEP 3); the leecher can have the seeder's address only from
# lmk-tracker, which gives each protocol's peers to the other.
# Transmission drops every peer address in 127.0.0.0/8 (a "martian" to it),
# so all three run in a network namespace made here (root and `ip` needed,
# else SKIP) on its loopback with 10.77.0.1 (tracker, seeder) and 10.77.0.2
# (Transmission): nothing leaves it. A private torrent, no DHT, LPD, PEX or
# port mapping; every client socket is watched.
# usage: transmission-interop.sh LMK_TRACKER_BINARY LT_PYTHON    Env: DEADLINE=secs (90).
set -euo pipefail

DEADLINE=${DEADLINE:-90}
TMP="" PIDS=() FAILED=""
fail() { FAILED="real-client: FAIL transmission: $*"; exit 1; }
on_exit() {
    set +e
    if [ "$1" != 0 ] && [ -n "$TMP" ]; then
        for f in "$TMP"/*.log "$TMP"/*.out; do echo "--- transmission: ${f##*/}"; tail -n 25 "$f"; done >&2
    fi
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    [ -n "$TMP" ] && rm -rf "$TMP"
    [ -n "${NS:-}" ] && ip netns del "$NS" 2>/dev/null
    if [ -n "$FAILED" ]; then echo "$FAILED"; fi
}
trap 'on_exit $?' EXIT
trap 'FAILED="real-client: FAIL transmission: interrupted"; exit 130' INT
trap 'FAILED="real-client: FAIL transmission: terminated"; exit 143' TERM
cd "$(dirname "$0")/.."

command -v transmission-cli >/dev/null || { echo "real-client: SKIP transmission: not installed (Debian's transmission-cli)"; exit 0; }
TRACKER=${1:?usage: transmission-interop.sh LMK_TRACKER_BINARY LT_PYTHON}
LT_PY=${2:-}
[ -n "$LT_PY" ] || { echo "real-client: SKIP transmission: its seeder is libtorrent (python3-libtorrent), not available"; exit 0; }

[ "$(id -u)" = 0 ] && command -v ip >/dev/null ||
    { echo "real-client: SKIP transmission: needs root and ip for its network namespace (it takes no 127.0.0.0/8 peer)"; exit 0; }
NS=lmk-tr-$$
ip netns add "$NS" || { echo "real-client: SKIP transmission: ip netns add failed"; exit 0; }
# For short commands only: a process started in the background must be
# `ip netns exec` itself (it execs the program), so that $! is the program.
in_ns() { ip netns exec "$NS" "$@"; }
in_ns ip link set lo up
in_ns ip addr add 10.77.0.1/24 dev lo
in_ns ip addr add 10.77.0.2/24 dev lo
TMP=$(mktemp -d "${TMPDIR:-/tmp}/real-client.XXXXXX")
: >"$TMP/tracker.out"
ip netns exec "$NS" "$TRACKER" --listen 10.77.0.1:0 --interval 2 --status 0 -v >"$TMP/tracker.out" 2>"$TMP/tracker.log" &
PIDS+=($!)
TPID=$!
for _ in $(seq 100); do
    PORT=$(sed -n 's/^listening on 10\.77\.0\.1:\([0-9]*\)$/\1/p' "$TMP/tracker.out")
    [ -n "$PORT" ] && break
    kill -0 "$TPID" 2>/dev/null || fail "lmk-tracker exited before binding"
    sleep 0.1
done
[ -n "$PORT" ] || fail "lmk-tracker printed no 'listening on' line within 10 s"

# One payload, two torrents of the same info (so the same info hash): one
# announcing over UDP for the seeder, one over HTTP for the leecher.
mkdir -p "$TMP/seed" "$TMP/leech" "$TMP/config"
head -c $((6 << 20)) /dev/urandom >"$TMP/seed/payload.bin"
python3 scripts/mktorrent.py "$TMP/seed/payload.bin" "udp://10.77.0.1:$PORT/announce" "$TMP/udp.torrent" $((256 << 10)) >/dev/null
HASH=$(python3 scripts/mktorrent.py "$TMP/seed/payload.bin" "http://10.77.0.1:$PORT/announce" "$TMP/http.torrent" $((256 << 10)))

LT_IFACE=10.77.0.1 ip netns exec "$NS" "$LT_PY" scripts/lt-interop.py peer "$TMP/udp.torrent" "$TMP/seed" --seed >"$TMP/seeder.out" 2>"$TMP/seeder.log" &
PIDS+=($!)
SEEDER=$!
for _ in $(seq 300); do
    grep -q "^reply " "$TMP/seeder.out" && break
    kill -0 "$SEEDER" 2>/dev/null || fail "libtorrent seeder exited early"
    sleep 0.1
done
grep -q "^reply " "$TMP/seeder.out" || fail "the libtorrent seeder got no UDP announce answer within 30 s"

read -r LEECH_TCP < <(in_ns python3 -c '
import socket
s = socket.socket(); s.bind(("10.77.0.2", 0)); print(s.getsockname()[1])')
cat >"$TMP/config/settings.json" <<JSON
{"dht-enabled": false, "lpd-enabled": false, "pex-enabled": false, "utp-enabled": false,
 "port-forwarding-enabled": false, "rpc-enabled": false, "blocklist-enabled": false,
 "bind-address-ipv4": "10.77.0.2", "bind-address-ipv6": "::1", "peer-port": $LEECH_TCP,
 "message-level": 3}
JSON
cat >"$TMP/done.sh" <<DONE
#!/bin/sh
touch "$TMP/leech.done"
DONE
chmod +x "$TMP/done.sh"
ms() { echo $(($(date +%s%N) / 1000000)); }
START=$(ms)
ip netns exec "$NS" transmission-cli -g "$TMP/config" -w "$TMP/leech" -p "$LEECH_TCP" -M -f "$TMP/done.sh" "$TMP/http.torrent" \
    >/dev/null 2>"$TMP/transmission.log" &
PIDS+=($!)
LEECHER=$!
CLIENTS="pid=($SEEDER|$LEECHER),"
while [ ! -e "$TMP/leech.done" ]; do
    [ $(($(ms) - START)) -lt $((DEADLINE * 1000)) ] || fail "Transmission not done within $DEADLINE s"
    kill -0 "$LEECHER" 2>/dev/null || fail "transmission-cli exited early"
    kill -0 "$SEEDER" 2>/dev/null || fail "libtorrent seeder exited early"
    foreign=$(in_ns ss -tunapH 2>/dev/null | grep -E "$CLIENTS" | awk '{print $6}' | grep -vE '^(127\.[0-9.]+|10\.77\.0\.[12]|\*|0\.0\.0\.0|\[::1?\]|\[::ffff:127\.[0-9.]+\]):' || true)
    [ -z "$foreign" ] || fail "a client reached beyond the namespace's loopback: $foreign"
    sleep 0.2
done
DONE=$(($(ms) - START))
SRC=$(sha1sum <"$TMP/seed/payload.bin" | cut -d' ' -f1)
GOT=$(sha1sum <"$TMP/leech/payload.bin" 2>/dev/null | cut -d' ' -f1) || true
[ "$SRC" = "$GOT" ] || fail "Transmission's copy differs (sha1 ${GOT:-missing} != $SRC)"
grep -qE "leecher 10\.77\.0\.[12]:$LEECH_TCP joined" "$TMP/tracker.log" || fail "tracker log has no join of Transmission's HTTP announce"
HTTP_OK=$(in_ns curl -s "http://10.77.0.1:$PORT/metrics" 2>/dev/null | sed -n 's/^lmk_tracker_announces_total{protocol="http",result="ok"} //p')
VERSION=$(transmission-cli --version 2>&1 | sed -n '1s/^transmission-cli \([^ ]*\).*/\1/p')
echo "real-client: PASS transmission $VERSION over http:// from a libtorrent seeder over udp://: $(stat -c %s "$TMP/leech/payload.bin") bytes in $((DONE / 1000)).$((DONE % 1000 / 100)) s through lmk-tracker (${HTTP_OK:-?} HTTP announces)"
