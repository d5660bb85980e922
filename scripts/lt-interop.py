#!/usr/bin/python3
"""libtorrent (Debian's python3-libtorrent) against lmk-tracker, for
scripts/real-client.sh. Everything stays on 127.0.0.1: no DHT, LSD, PEX,
UPnP or NAT-PMP, private torrents, sockets bound to 127.0.0.1, and a watch on
the clients' sockets. libtorrent's own announce timing is left alone (it
re-announces after max(tracker interval, min_announce_interval = 300 s)).

usage: lt-interop.py TRACKER_BIN WORKDIR separate
           a seeder and a leecher in two processes exchange a file; then the
           lifecycle: 60 s after their last announces the tracker lists both
       lt-interop.py TRACKER_BIN WORKDIR together
           two sessions in one process (libtorrent keeps one UDP connection id
           per tracker per process and sends it from every session's socket)
       lt-interop.py TRACKER_BIN WORKDIR http
           the same, the seeder announcing over http:// and the leecher over
           udp://: the tracker gives each protocol's peers to the other
       lt-interop.py peer TORRENT SAVE_DIR [--seed]
           one session, used by `separate`; prints its events, one a line

Each check prints `real-client: PASS ...` or `real-client: FAIL ...: why` on
stdout; the exit status is 1 if any failed. Logs go to WORKDIR.
"""
import hashlib
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import libtorrent as lt

HERE = os.path.dirname(os.path.abspath(__file__))
TRANSFER_DEADLINE = 30  # s; below libtorrent's 60 s connection-id cache, see `together`
ANNOUNCE_DEADLINE = 20  # s for a first tracker answer
SILENCE = 60  # s the lifecycle waits after the clients' last announces
# The address sessions bind to: loopback, or another one in a namespace of
# scripts/transmission-interop.sh (Transmission takes no 127.0.0.0/8 peer).
IFACE = os.environ.get("LT_IFACE", "127.0.0.1")
EVENTS = {0: "none", 1: "completed", 2: "started", 3: "stopped", 4: "paused"}


class Fail(Exception):
    pass


def log(work, msg):
    with open(os.path.join(work, "lt-interop.log"), "a") as f:
        f.write(f"{time.strftime('%H:%M:%S')} {msg}\n")


# --- one libtorrent session -------------------------------------------------


class Peer:
    """One session holding one torrent; `events` is what it has seen, as
    (monotonic time, kind, detail); kind is announce, reply, error (a tracker
    error answer), warning, finished, torrent-error, or connect, disconnect
    and peer-error (a peer connection's life, to say why a transfer stalled)."""

    def __init__(self):
        cat = lt.alert.category_t
        self.ses = lt.session({
            "listen_interfaces": f"{IFACE}:0",
            "outgoing_interfaces": IFACE,
            "enable_dht": False,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
            # libtorrent waits 60 s before it tries again a peer whose
            # connection failed or dropped, past TRANSFER_DEADLINE: a first
            # attempt lost on a loaded machine would fail the check.
            "min_reconnect_time": 1,
            "alert_mask": cat.status_notification | cat.error_notification | cat.tracker_notification
            | cat.connect_notification | cat.peer_notification,
        })
        self.events = []
        self.handle = None
        deadline = time.monotonic() + 10
        while self.ses.listen_port() == 0:
            if time.monotonic() > deadline:
                raise Fail("libtorrent bound no listen socket on 127.0.0.1 within 10 s")
            self.ses.wait_for_alert(100)
            self.ses.pop_alerts()
        self.port = self.ses.listen_port()

    def add(self, torrent, save):
        atp = lt.add_torrent_params()
        atp.ti = lt.torrent_info(torrent)
        atp.save_path = save
        self.handle = self.ses.add_torrent(atp)

    def pump(self, wait_ms=0):
        """Turns pending alerts into events; returns the new ones."""
        if wait_ms:
            self.ses.wait_for_alert(wait_ms)
        new = []
        for al in self.ses.pop_alerts():
            if isinstance(al, lt.tracker_announce_alert):
                new.append(("announce", EVENTS.get(al.event, str(al.event))))
            elif isinstance(al, lt.tracker_reply_alert):
                new.append(("reply", f"peers={al.num_peers} next={self.next_announce()}"))
            elif isinstance(al, lt.tracker_error_alert):
                new.append(("error", al.message()))
            elif isinstance(al, lt.tracker_warning_alert):
                new.append(("warning", al.message()))
            elif isinstance(al, lt.torrent_finished_alert):
                new.append(("finished", ""))
            elif isinstance(al, lt.torrent_error_alert):
                new.append(("torrent-error", al.message()))
            elif isinstance(al, lt.peer_connect_alert):
                new.append(("connect", str(al.endpoint)))
            elif isinstance(al, lt.peer_disconnected_alert):
                new.append(("disconnect", f"{al.endpoint} {al.message()}"))
            elif isinstance(al, lt.peer_error_alert):
                new.append(("peer-error", f"{al.endpoint} {al.message()}"))
        now = time.monotonic()
        self.events += [(now, k, d) for k, d in new]
        return new

    def next_announce(self):
        """Seconds until libtorrent's next announce, as it plans it."""
        if self.handle is None:
            return "?"
        return round(self.handle.status().next_announce.total_seconds())

    def of(self, kind):
        return [(t, d) for t, k, d in self.events if k == kind]

    def finished(self):
        return self.handle is not None and self.handle.status().is_seeding


def peer_main(argv):
    """A Peer in its own process: `port N`, then `KIND DETAIL` lines (and
    `done` once a leecher has every piece)."""
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    torrent, save, seed = argv[0], argv[1], "--seed" in argv[2:]
    p = Peer()
    print(f"port {p.port}", flush=True)
    p.add(torrent, save)
    done = False
    while not stop:
        for kind, detail in p.pump(200):
            print(f"{kind} {detail}", flush=True)
        if not seed and not done and p.finished():
            done = True
            print("done", flush=True)
        if stop:
            break
    print(f"stopped; next announce was due in {p.next_announce()} s", flush=True)


# --- processes: the tracker and peer processes ------------------------------


class Child:
    """A process whose stdout lines are collected with their arrival time."""

    def __init__(self, name, args, work):
        self.name = name
        self.lines = []
        err = open(os.path.join(work, f"{name}.log"), "w")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, text=True)
        err.close()
        self.out = open(os.path.join(work, f"{name}.out"), "w")
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))
            self.out.write(line)
            self.out.flush()

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def of(self, kind):
        """(time, detail) of the peer's events of one kind."""
        return [(t, l.partition(" ")[2]) for t, l in self.lines if l.partition(" ")[0] == kind]

    def port(self):
        return int(self.of("port")[0][1])


def start_tracker(binary, work, name, children):
    # -v: a debug line for every datagram the tracker drops or refuses.
    t = Child(name, [binary, "--listen", "127.0.0.1:0", "--status", "0", "-v"], work)
    children.append(t)
    wait_for(lambda: any(l.startswith("listening on 127.0.0.1:") for _, l in t.lines), 10,
             f"{name} printed no 'listening on' line within 10 s", [t])
    line = next(l for _, l in t.lines if l.startswith("listening on 127.0.0.1:"))
    return int(line.rsplit(":", 1)[1])


def tracker_lines(work, name, pattern):
    """The tracker's log lines matching pattern, as `HH:MM:SS message`."""
    with open(os.path.join(work, f"{name}.log"), errors="replace") as f:
        lines = [l.rstrip() for l in f if re.search(pattern, l)]
    return [re.sub(r"^\S*T(\d\d:\d\d:\d\d)\S* \[\w+\] (\(\d+\) )?", r"\1 ", l) for l in lines]


def no_luck(work, tracker, port, peer):
    """What a client got from the tracker, and what the tracker logged about
    it. (libtorrent 2.0 reports an error answer without its text: it reads
    the message from the start of the packet, which is a NUL.)"""
    replies = [d for _, d in peer.of("reply")]
    logged = tracker_lines(work, tracker, rf"udp 127\.0\.0\.1:{port}: ")
    msg = f"announce answers: {replies or 'none'}; error answers: {len(peer.of('error'))}"
    links = [f"{k} {d}" for k in ("connect", "disconnect", "peer-error") for _, d in peer.of(k)]
    msg += f"; peer connections: {' | '.join(links[:6]) or 'none'}"
    return msg + (f"; lmk-tracker log: '{' | '.join(logged[:3])}'" if logged else "")


def setup(binary, work, name, children, size=4 << 20, scheme="udp"):
    """A tracker with its defaults, a random payload and a private torrent
    for it announcing over `scheme`: (tracker port, torrent, info hash,
    payload, leecher's directory)."""
    tracker_port = start_tracker(binary, work, f"tracker-{name}", children)
    seed = os.path.join(work, name, "seed")
    leech = os.path.join(work, name, "leech")
    os.makedirs(seed)
    os.makedirs(leech)
    payload = os.path.join(seed, "payload.bin")
    with open(payload, "wb") as f:
        f.write(random.randbytes(size))
    torrent = os.path.join(work, name, f"payload-{scheme}.torrent")
    url = f"{scheme}://127.0.0.1:{tracker_port}/announce"
    ih = subprocess.run([sys.executable, os.path.join(HERE, "mktorrent.py"), payload, url, torrent, str(256 << 10)],
                        check=True, capture_output=True, text=True).stdout.strip()
    return tracker_port, torrent, ih, payload, leech


def same_bytes(a, b):
    def sha1(p):
        try:
            with open(p, "rb") as f:
                return hashlib.sha1(f.read()).hexdigest()
        except OSError:
            return "missing"
    sa, sb = sha1(a), sha1(b)
    if sa != sb:
        raise Fail(f"leecher copy differs (sha1 {sb} != {sa})")
    return os.path.getsize(b)


def foreign_sockets(pids):
    """Client sockets facing anything but 127.0.0.0/8 (ss -p; best effort)."""
    try:
        out = subprocess.run(["ss", "-tunapH"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    bad = []
    for line in out.splitlines():
        cols = line.split()
        if len(cols) < 7 or not any(f"pid={p}," in cols[6] for p in pids):
            continue
        if not re.match(r"^(127\.[0-9.]+|\*|0\.0\.0\.0|\[::ffff:127\.[0-9.]+\]):", cols[5]):
            bad.append(cols[5])
    return bad


def wait_for(cond, secs, why, children, pids=(), tick=None):
    """Polls cond until true; Fail(why) after secs, or earlier if a child
    died or a client socket left loopback."""
    end = time.monotonic() + secs
    last_watch = 0
    while not cond():
        now = time.monotonic()
        if now > end:
            raise Fail(why() if callable(why) else why)
        for c in children:
            if not c.alive():
                raise Fail(f"{c.name} exited early with status {c.proc.returncode}")
        if pids and now - last_watch > 0.5:
            last_watch = now
            bad = foreign_sockets(pids)
            if bad:
                raise Fail(f"libtorrent reached beyond loopback: {' '.join(bad)}")
        if tick:
            tick()
        else:
            time.sleep(0.1)


# --- BEP 15 from the script: scrape and an observer's announce --------------


def udp_connect(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(2)
    s.sendto(struct.pack(">QII", 0x41727101980, 0, 7), ("127.0.0.1", port))
    action, tid, conn = struct.unpack(">IIQ", s.recv(64)[:16])
    if (action, tid) != (0, 7):
        raise Fail("lmk-tracker gave a bad connect answer")
    return s, conn


def scrape(port, ih):
    s, conn = udp_connect(port)
    with s:
        s.sendto(struct.pack(">QII", conn, 2, 8) + ih, ("127.0.0.1", port))
        action, tid, seeders, completed, leechers = struct.unpack(">IIIII", s.recv(64)[:20])
    if (action, tid) != (2, 8):
        raise Fail("lmk-tracker gave a bad scrape answer")
    return seeders, completed, leechers


def observe(port, ih):
    """Announces as a third peer (then leaves) and returns the peers it was given."""
    s, conn = udp_connect(port)
    with s:
        me = s.getsockname()[1]
        def announce(event, tid):
            s.sendto(struct.pack(">QII20s20sQQQIIIiH", conn, 1, tid, ih, b"-OBSERVER-" + os.urandom(10),
                                 0, 1, 0, event, 0, 0, 50, me), ("127.0.0.1", port))
            return s.recv(2048)
        r = announce(2, 9)
        announce(3, 10)
    if len(r) < 20 or struct.unpack(">II", r[:8]) != (1, 9):
        raise Fail(f"lmk-tracker gave the observer a bad announce answer: {r[8:].decode(errors='replace')!r}")
    return {f"{socket.inet_ntoa(r[i:i + 4])}:{struct.unpack('>H', r[i + 4:i + 6])[0]}" for i in range(20, len(r) - 5, 6)}


# --- the checks --------------------------------------------------------------


def separate(binary, work):
    """Seeder and leecher in two processes; then the lifecycle."""
    children = []
    try:
        try:
            port, ih, seeder, leecher, pids = two_processes(binary, work, children)
        except Fail as e:
            print(f"real-client: FAIL libtorrent, two processes: {e}", flush=True)
            print("real-client: FAIL libtorrent lifecycle: not run (the two-process transfer failed)", flush=True)
            return False
        try:
            return lifecycle(work, port, bytes.fromhex(ih), seeder, leecher, children, pids)
        except Fail as e:
            print(f"real-client: FAIL libtorrent lifecycle: {e}", flush=True)
            return False
    finally:
        for c in children:
            c.stop()


def two_processes(binary, work, children):
    port, torrent, ih, payload, leech_dir = setup(binary, work, "separate", children)
    me = [sys.executable, os.path.abspath(__file__), "peer", torrent]
    seeder = Child("lt-seeder", me + [os.path.dirname(payload), "--seed"], work)
    children.append(seeder)
    # The leecher starts once the tracker has the seeder, so its first
    # announce (the next is 300 s away) is answered with the seeder.
    wait_for(lambda: seeder.of("reply"), ANNOUNCE_DEADLINE,
             lambda: f"the seeder got no announce answer within {ANNOUNCE_DEADLINE} s; "
             f"{no_luck(work, 'tracker-separate', seeder.port(), seeder)}", children)
    leecher = Child("lt-leecher", me + [leech_dir], work)
    children.append(leecher)
    pids = [seeder.proc.pid, leecher.proc.pid]
    start = time.monotonic()
    wait_for(lambda: leecher.of("done"), TRANSFER_DEADLINE,
             lambda: f"the leecher did not finish within {TRANSFER_DEADLINE} s; "
             f"{no_luck(work, 'tracker-separate', leecher.port(), leecher)}", children, pids)
    took = leecher.of("done")[0][0] - start
    size = same_bytes(payload, os.path.join(leech_dir, "payload.bin"))
    print(f"real-client: PASS libtorrent {lt.__version__}, seeder and leecher in two processes: "
          f"{size} bytes in {took:.1f} s through lmk-tracker", flush=True)
    return port, ih, seeder, leecher, pids


def lifecycle(work, port, ih, seeder, leecher, children, pids):
    """Once done, the clients stay silent for their own interval (>= 300 s);
    60 s after their last announces the tracker must still list both."""
    # The leecher says `completed` on finishing: wait for that answer.
    def completed_answered():
        done = leecher.of("done")[0][0]
        return [t for t, d in leecher.of("announce") if t >= done - 1 and d == "completed"] and \
            [t for t, _ in leecher.of("reply") if t >= done - 1]
    wait_for(completed_answered, ANNOUNCE_DEADLINE,
             lambda: f"the leecher's 'completed' announce got no answer within {ANNOUNCE_DEADLINE} s; "
             f"{no_luck(work, 'tracker-separate', leecher.port(), leecher)}", children, pids)
    both = (seeder, leecher)
    last = {c: max(t for t, _ in c.of("announce")) for c in both}
    end = max(last.values()) + SILENCE
    wait_for(lambda: time.monotonic() > end, SILENCE + 5, "clock", children, pids)
    now = time.monotonic()
    again = [f"{c.name}: {d}" for c in both for t, d in c.of("announce") if t > last[c]]
    if again:
        raise Fail(f"libtorrent announced again during the {SILENCE} s ({again}), so the check proves nothing")
    try:
        seeders, completed, leechers = scrape(port, ih)
        got = observe(port, ih)
    except OSError as e:
        raise Fail(f"lmk-tracker did not answer the check's own scrape or announce: {e}") from e
    log(work, f"lifecycle: scrape seeders={seeders} completed={completed} leechers={leechers}; observer got {sorted(got)}")
    # How long ago each last announced, and when libtorrent plans the next.
    ages = " and ".join(f"{c.name[3:]} {now - last[c]:.0f} s" for c in both)
    due = " and ".join(f"{int(c.of('reply')[-1][1].rsplit('next=', 1)[1]) - (now - c.of('reply')[-1][0]):.0f} s"
                       for c in both)
    missing = [f"127.0.0.1:{c.port()} ({c.name[3:]})" for c in both if f"127.0.0.1:{c.port()}" not in got]
    if seeders + leechers < 2 or missing:
        said = tracker_lines(work, "tracker-separate", r"interval .* expiry|expired")
        raise Fail(f"lmk-tracker dropped live clients: their last announces were {ages} ago, their next are due in "
                   f"{due} (libtorrent's own interval), yet its scrape says seeders={seeders} leechers={leechers} and "
                   f"an observer's announce was not given {' nor '.join(missing) or 'a missing peer'}; "
                   f"tracker log: {' | '.join(said)}")
    print(f"real-client: PASS libtorrent lifecycle: lmk-tracker still lists both clients (scrape seeders={seeders} "
          f"leechers={leechers}; an observer is given both) after their last announces {ages} ago, their next due "
          f"in {due}", flush=True)
    return True


def torrent_for(torrent, scheme, port):
    """The same torrent (the same info, so the same info hash) announcing over `scheme`."""
    other = torrent.replace("-udp.torrent", f"-{scheme}.torrent")
    with open(torrent, "rb") as f:
        data = f.read()
    old = b"udp://127.0.0.1:%d/announce" % port
    new = b"%s://127.0.0.1:%d/announce" % (scheme.encode(), port)
    data = data.replace(b"%d:%s" % (len(old), old), b"%d:%s" % (len(new), new), 1)
    with open(other, "wb") as f:
        f.write(data)
    return other


def together(binary, work, seeder_scheme="udp"):
    """Two sessions in one process, which share libtorrent's connection-id
    cache; the seeder announces over `seeder_scheme`, the leecher over UDP."""
    name = "together" if seeder_scheme == "udp" else "http"
    what = "two sessions in one process" if seeder_scheme == "udp" else "a seeder over http:// and a leecher over udp://"
    children = []
    try:
        port, torrent, _, payload, leech_dir = setup(binary, work, name, children)
        seeder_torrent = torrent_for(torrent, seeder_scheme, port) if seeder_scheme != "udp" else torrent
        a, b = Peer(), Peer()
        pids = [os.getpid()]
        def pump():
            for who, p in (("seeder", a), ("leecher", b)):
                for kind, detail in p.pump(50):
                    log(work, f"together {who} (port {p.port}): {kind} {detail}")
        # The seeder first, so the leecher's first announce finds it and
        # uses the connection id libtorrent got from the seeder's socket.
        a.add(seeder_torrent, os.path.dirname(payload))
        wait_for(lambda: any(k == "reply" for _, k, _ in a.events), ANNOUNCE_DEADLINE,
                 lambda: f"the seeder session got no announce answer within {ANNOUNCE_DEADLINE} s; "
                 f"{no_luck(work, f'tracker-{name}', a.port, a)}", children, pids, pump)
        start = time.monotonic()
        b.add(torrent, leech_dir)
        def why():
            msg = (f"the leecher session (127.0.0.1:{b.port}) did not finish within {TRANSFER_DEADLINE} s; "
                   f"{no_luck(work, f'tracker-{name}', b.port, b)}")
            if tracker_lines(work, f"tracker-{name}", rf"udp 127\.0\.0\.1:{b.port}: refused: unknown connection id"):
                msg += (f" (libtorrent keeps one connection id per tracker per process: it got it through the seeder "
                        f"session's socket, 127.0.0.1:{a.port}, and sent it from the leecher session's)")
            return msg
        wait_for(b.finished, TRANSFER_DEADLINE, why, children, pids, pump)
        took = time.monotonic() - start
        size = same_bytes(payload, os.path.join(leech_dir, "payload.bin"))
        print(f"real-client: PASS libtorrent, {what}: {size} bytes in {took:.1f} s "
              f"through lmk-tracker", flush=True)
        return True
    except Fail as e:
        print(f"real-client: FAIL libtorrent, {what}: {e}", flush=True)
        return False
    finally:
        for c in children:
            c.stop()


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "peer":
        return peer_main(sys.argv[2:])
    if len(sys.argv) != 4 or sys.argv[3] not in ("separate", "together", "http"):
        sys.exit(__doc__)
    # SIGTERM ends the checks through their `finally`, which stops every child.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    binary, work, check = sys.argv[1:]
    if check == "separate":
        ok = separate(binary, work)
    else:
        ok = together(binary, work, "http" if check == "http" else "udp")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
