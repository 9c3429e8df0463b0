#!/usr/bin/env python3
"""Timestamped UDP for the lab's takeover tests (Tests/MATLabTests/LifetimeLabTests.swift).

  udp-trace.py sink PORT SECONDS             print "<unix time> <source address>" per datagram
  udp-trace.py send ADDR PORT SECONDS GAP    a datagram every GAP seconds to ADDR:PORT

Both run for SECONDS and exit 0; the sink prints "listening" first, the sender
"sent N" (the datagrams it handed to the kernel) last.
"""
import socket
import sys
import time


def sink(port, seconds):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    print("listening", flush=True)
    end = time.time() + seconds
    while True:
        left = end - time.time()
        if left <= 0:
            return
        s.settimeout(left)
        try:
            _, source = s.recvfrom(2048)
        except socket.timeout:
            return
        print(f"{time.time():.3f} {source[0]}", flush=True)


def send(addr, port, seconds, gap):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    end = time.time() + seconds
    sequence, sent = 0, 0
    while time.time() < end:
        try:
            s.sendto(sequence.to_bytes(8, "big"), (addr, port))
            sent += 1
        except OSError:
            pass  # no route or no neighbour yet: the next one tries again
        sequence += 1
        time.sleep(gap)
    print(f"sent {sent}", flush=True)


def main(argv):
    if len(argv) == 4 and argv[1] == "sink":
        sink(int(argv[2]), float(argv[3]))
    elif len(argv) == 6 and argv[1] == "send":
        send(argv[2], int(argv[3]), float(argv[4]), float(argv[5]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
