#!/usr/bin/env python3
"""A UDP GSO flood and its receiver, for Tools/lab/bench-udp-gso.

  udp-gso-flood.py send ADDRESS PORT SECONDS [SIZE [PER_SEND]]
      sends for SECONDS, unpaced, with UDP_SEGMENT: PER_SEND datagrams of SIZE bytes in
      each send (default 1200 and 40, as a QUIC sender's), and prints
      "sent SENDS DATAGRAMS" at the end.
  udp-gso-flood.py receive ADDRESS PORT SIZE
      prints "bound", then counts the datagrams of SIZE bytes that arrive (and the others)
      until nothing came for 2 s after the first (or for 30 s before it), and prints
      "received DATAGRAMS BYTES SECONDS other OTHERS" (SECONDS from the first to the last).

Test traffic only: ADDRESS must be a lab address.
"""
import socket
import sys
import time

SOL_UDP, UDP_SEGMENT = 17, 103


def family(address):
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def send(address, port, seconds, size=1200, per_send=40):
    s = socket.socket(family(address), socket.SOCK_DGRAM)
    s.setsockopt(SOL_UDP, UDP_SEGMENT, size)
    buffer = bytes(i % 251 for i in range(size)) * per_send
    sends = 0
    end = time.time() + seconds
    while time.time() < end:
        for _ in range(64):
            try:
                s.sendto(buffer, (address, port))
                sends += 1
            except (BlockingIOError, OSError):
                # The TUN device's queue is full (ENOBUFS): a flood goes on.
                pass
    print("sent", sends, sends * per_send, flush=True)


def receive(address, port, size):
    s = socket.socket(family(address), socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind((address, port))
    print("bound", flush=True)
    buffer = bytearray(65536)
    count = other = total = 0
    first = last = None
    s.settimeout(30)
    while True:
        try:
            n = s.recv_into(buffer)
        except socket.timeout:
            break
        now = time.time()
        if first is None:
            first = now
            s.settimeout(2)
        last = now
        if n == size:
            count += 1
            total += n
        else:
            other += 1
    print("received", count, total, "%.3f" % ((last or 0) - (first or 0)), "other", other, flush=True)


if __name__ == "__main__":
    mode, address, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "send":
        send(address, port, float(sys.argv[4]), *(int(a) for a in sys.argv[5:7]))
    else:
        receive(address, port, int(sys.argv[4]))
