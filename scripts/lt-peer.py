#!/usr/bin/python3
"""One libtorrent peer for scripts/bench-swarm.sh: seeds or downloads one
torrent with peers from its tracker only (no DHT, LSD, UPnP or NAT-PMP; the
bench's torrents are private too), libtorrent's default settings otherwise.

usage: lt-peer.py TORRENT SAVE_DIR LISTEN_IP:PORT [--seed] [--done FILE]
                  [--gate FIFO READY_FILE] [--set NAME=VALUE]...

--gate: once the session is up (libtorrent imported, sockets bound), open FIFO,
create READY_FILE and wait for end-of-file on FIFO before adding the torrent,
so that many peers start at one moment without counting Python's start-up.
--set: one more libtorrent setting (settings_pack name; true/false, integers
and strings), e.g. --set enable_outgoing_utp=false.

Prints `ready` once the torrent is checked (a seed: once it is seeding and the
tracker has answered its announce), `done NS` when the download is complete
(every piece passed its hash check; NS: wall clock in ns since the epoch) and
writes NS to FILE (via FILE.tmp and a rename), then keeps running (seeding)
until SIGTERM or SIGINT. Tracker errors and warnings go to stderr.

Needs Debian's python3-libtorrent, which is built for /usr/bin/python3.
"""
import argparse
import os
import signal
import sys
import time

import libtorrent as lt


def main():
    p = argparse.ArgumentParser(description="one libtorrent peer for bench-swarm.sh")
    p.add_argument("torrent")
    p.add_argument("save")
    p.add_argument("listen", help="IP:PORT")
    p.add_argument("--seed", action="store_true")
    p.add_argument("--done")
    p.add_argument("--gate", nargs=2, metavar=("FIFO", "READY"))
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    a = p.parse_args()

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))

    cat = lt.alert.category_t
    settings = {
        "listen_interfaces": a.listen,
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "alert_mask": cat.status_notification | cat.error_notification | cat.tracker_notification,
    }
    for kv in a.set:
        k, _, v = kv.partition("=")
        settings[k] = {"true": True, "false": False}.get(v.lower(), int(v) if v.lstrip("-").isdigit() else v)
    ses = lt.session(settings)
    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(a.torrent)
    atp.save_path = a.save
    role = "seed" if a.seed else "downloader"
    print(f"libtorrent {lt.__version__}, {role}, listening on {a.listen}, settings {' '.join(a.set) or 'default'}", flush=True)
    if a.gate:
        with open(a.gate[0]) as gate:
            open(a.gate[1], "w").close()
            gate.read()  # until the bench closes its end
    h = ses.add_torrent(atp)

    finished = announced = ready = False
    while not stop:
        ses.wait_for_alert(200)
        for al in ses.pop_alerts():
            if isinstance(al, lt.torrent_finished_alert) and not finished:
                finished = True
                if not a.seed:
                    ns = time.time_ns()
                    if a.done:
                        with open(a.done + ".tmp", "w") as f:
                            f.write(f"{ns}\n")
                        os.rename(a.done + ".tmp", a.done)
                    print(f"done {ns}", flush=True)
            elif isinstance(al, lt.tracker_reply_alert):
                announced = True
            elif isinstance(al, (lt.tracker_error_alert, lt.tracker_warning_alert)):
                print(f"tracker: {al.message()}", file=sys.stderr, flush=True)
            elif isinstance(al, lt.torrent_error_alert):
                print(f"error: {al.message()}", file=sys.stderr, flush=True)
        if not ready:
            st = h.status()
            checking = st.state in (lt.torrent_status.checking_files, lt.torrent_status.checking_resume_data)
            if not checking and (not a.seed or (st.is_seeding and announced)):
                ready = True
                print("ready", flush=True)
    s = h.status()
    print(f"stopped: {s.total_payload_download} bytes downloaded, {s.total_payload_upload} uploaded", flush=True)


if __name__ == "__main__":
    main()
