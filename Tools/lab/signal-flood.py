#!/usr/bin/env python3
"""A flood of well-framed signaling messages from spoofed sources, for the lab tests only
(run inside a lab namespace; it needs CAP_NET_RAW).

  signal-flood.py DEST PORT RECEIVER_HOA SOURCE_NET SENDER_NET PPS SECONDS

Each datagram is a version 1 binding update (docs/signaling.md) to RECEIVER_HOA from a
random sender HoA in SENDER_NET, announcing one MoA, with a random (so wrong) signature;
it leaves from a random source address in SOURCE_NET with a raw socket. SOURCE_NET and
SENDER_NET are IPv4 prefixes of length 24 or more; the network and broadcast addresses
and the first host are never used. Sends PPS datagrams a second for SECONDS, in batches
every 10 ms, then prints "sent N in S s".
"""
import ipaddress
import os
import random
import socket
import struct
import sys
import time


def hosts(prefix):
    network = ipaddress.IPv4Network(prefix)
    if network.prefixlen < 24:
        sys.exit("signal-flood: %s: use a prefix of length 24 or more" % prefix)
    return [int(a) for a in list(network.hosts())[1:]]


def address(value):
    return b"\x04" + struct.pack(">I", value) + bytes(12)


def datagram(receiver, sender, source, dest, port):
    body = b"\x01" + address(random.getrandbits(32)) + struct.pack(">I", 600)
    message = (b"MATs" + bytes([1, 1]) + struct.pack(">HQ", 0, random.getrandbits(64))
               + address(sender) + address(receiver) + struct.pack(">H", len(body)) + body + os.urandom(64))
    udp = struct.pack(">HHHH", port, port, 8 + len(message), 0) + message  # checksum 0: none (IPv4)
    header = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, socket.IPPROTO_UDP, 0,
                         struct.pack(">I", source), socket.inet_aton(dest))
    return header + udp


def main(argv):
    if len(argv) != 8:
        sys.exit(__doc__)
    dest, port, receiver = argv[1], int(argv[2]), int(ipaddress.IPv4Address(argv[3]))
    sources, senders = hosts(argv[4]), hosts(argv[5])
    rate, seconds = int(argv[6]), float(argv[7])
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    batch = max(1, rate // 100)
    start = time.monotonic()
    sent, tick = 0, start
    while tick < start + seconds:
        for _ in range(batch):
            packet = datagram(receiver, random.choice(senders), random.choice(sources), dest, port)
            try:
                raw.sendto(packet, (dest, 0))
                sent += 1
            except OSError:
                pass  # a full queue: the rate is a ceiling, what was sent is counted
        tick += 0.010
        time.sleep(max(0.0, tick - time.monotonic()))
    print("sent %d in %.1f s" % (sent, time.monotonic() - start), flush=True)


if __name__ == "__main__":
    main(sys.argv)
