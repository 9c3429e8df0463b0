#!/usr/bin/env python3
"""A forger of IMS answers, for the lab tests only (run inside a lab namespace):

  forged-ims.py ADDR MOA [KEY]

Answers every DNS query on UDP ADDR:53 as if it were the IMS, authoritatively and
unsigned, with a mapping of its own: A MOA, and a version TXT with the highest sequence
number and a key nobody holds (or KEY, base64: the genuine key, to forge only the
sequence). An attacker on the path would answer like this; a node
that signs its lookups must not take it. Prints "listening" once bound, then one line
per answer.
"""
import base64
import os
import socket
import struct
import sys


def question(packet):
    """(end offset, type) of the first question, or None."""
    offset = 12
    while offset < len(packet):
        length = packet[offset]
        if length == 0:
            offset += 1
            break
        if length & 0xC0:
            return None
        offset += 1 + length
    if offset + 4 > len(packet):
        return None
    qtype, _ = struct.unpack(">HH", packet[offset:offset + 4])
    return offset + 4, qtype


def txt(strings):
    return b"".join(bytes([len(s)]) + s for s in strings)


def main(argv):
    if len(argv) not in (3, 4):
        sys.exit(__doc__)
    address, moa = argv[1], argv[2]
    key = argv[3].encode() if len(argv) == 4 else base64.b64encode(os.urandom(32))
    records = {1: socket.inet_aton(moa), 16: txt([b"v=1", b"seq=18446744073709551615", b"key=" + key])}
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((address, 53))
    print("listening", flush=True)
    while True:
        packet, peer = s.recvfrom(4096)
        if len(packet) < 12 or packet[2] & 0x80:
            continue
        parsed = question(packet)
        if parsed is None:
            continue
        end, qtype = parsed
        answer = b""
        if qtype in records:
            data = records[qtype]
            answer = struct.pack(">HHHIH", 0xC00C, qtype, 1, 30, len(data)) + data
        header = packet[:2] + struct.pack(">HHHHH", 0x8400, 1, 1 if answer else 0, 0, 0)
        s.sendto(header + packet[12:end] + answer, peer)
        print("answered type %d from %s" % (qtype, peer[0]), flush=True)


if __name__ == "__main__":
    main(sys.argv)
