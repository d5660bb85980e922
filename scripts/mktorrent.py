#!/usr/bin/env python3
"""Writes a single-file, private (BEP 27: tracker-only peers) .torrent for the
real-client check and the benchmark, and prints its info hash in hex.

usage: mktorrent.py FILE ANNOUNCE_URL OUT.torrent PIECE_LENGTH
"""
import hashlib
import os
import sys


def bencode(x):
    if isinstance(x, int):
        return b"i%de" % x
    if isinstance(x, str):
        x = x.encode()
    if isinstance(x, bytes):
        return b"%d:%s" % (len(x), x)
    return b"d" + b"".join(bencode(k) + bencode(v) for k, v in sorted(x.items())) + b"e"


def main():
    path, url, out, plen = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    pieces = []
    with open(path, "rb") as f:
        while chunk := f.read(plen):
            pieces.append(hashlib.sha1(chunk).digest())
    info = {"name": os.path.basename(path), "length": os.path.getsize(path), "piece length": plen,
            "pieces": b"".join(pieces), "private": 1}
    with open(out, "wb") as f:
        f.write(bencode({"announce": url, "info": info}))
    print(hashlib.sha1(bencode(info)).hexdigest())


if __name__ == "__main__":
    main()
