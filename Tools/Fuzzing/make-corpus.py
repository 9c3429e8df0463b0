#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets: Corpus/packet/, mapping/, dns/, signaling/ and ims/.

packet: each seed is the FuzzPacket control block (37 bytes) followed by one valid packet
with correct checksums (docs/fuzzing.md describes the control block).
mapping: each seed is a FuzzMapping program: table parameters, then operations.
dns: each seed is one DNS message as sent over UDP; the UPDATE is TSIG-signed with the key
FuzzDNS verifies against.
ims: each seed is a FuzzIMS program: messages, each `control | length | bytes`; the control
byte says how FuzzIMS signs and sends it (FuzzIMS.swift), so the seeds are unsigned.
signaling: each seed is one signaling datagram (docs/signaling.md), Ed25519-signed with the
key FuzzSignaling verifies with (seed bytes 00..1f), by the RFC 8032 code below.

Deterministic: running it again rewrites the same bytes. Usage: Tools/Fuzzing/make-corpus.py
"""

import hashlib
import hmac
import ipaddress
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

# Flag bits of the control block (FuzzPacket.swift, `Flags`).
SRC, DST, QSRC, QDST, PARTIAL, PARTIAL_AT_TRANSPORT, MISALIGNED, BUFFER_API = (1 << i for i in range(8))
ALL_REWRITES = SRC | DST | QSRC | QDST

# Lab addresses: documentation ranges only.
V4_HOA_A, V4_HOA_B = "192.0.2.10", "192.0.2.20"            # in the packets
V4_MOA_A, V4_MOA_B = "198.51.100.10", "203.0.113.20"       # what the rewrite writes
V6_HOA_A, V6_HOA_B = "2001:db8:1::10", "2001:db8:1::20"
V6_MOA_A, V6_MOA_B = "2001:db8:a::10", "2001:db8:b::20"


def addr(text):
    return ipaddress.ip_address(text).packed


def control(flags, a, b, start=0, offset=0):
    pad = lambda raw: raw + bytes(16 - len(raw))
    return bytes([flags]) + struct.pack(">hh", start, offset) + pad(addr(a)) + pad(addr(b))


def csum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(">%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def put16(buf, offset, value):
    buf[offset:offset + 2] = struct.pack(">H", value)


# --- transport headers (checksum left zero, filled by the IP builders) ---

def tcp(sport=40000, dport=80, flags=0x02, payload=b"", options=b"\x02\x04\x05\xb4"):
    offset_words = (20 + len(options)) // 4
    return bytearray(struct.pack(">HHIIBBHHH", sport, dport, 1000, 0, offset_words << 4, flags, 65535, 0, 0)
                     + options + payload)


def udp(sport=40000, dport=4000, payload=b"hello"):
    return bytearray(struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload)


def icmp(type_, code, rest=b"\0\0\0\0", payload=b""):
    return bytearray(struct.pack(">BBH", type_, code, 0) + rest + payload)


CHECKSUM_AT = {6: 16, 17: 6, 136: 6, 33: 6, 58: 2}


# --- IPv4 ---

def ipv4(src, dst, proto, body, options=b"", frag=0, fill_transport=True, pseudo_dst=None):
    body = bytearray(body)
    ihl = (20 + len(options)) // 4
    total = ihl * 4 + len(body)
    if fill_transport and frag & 0x1FFF == 0:
        if proto in (6, 17):
            at = CHECKSUM_AT[proto]
            put16(body, at, 0)
            pseudo = addr(src) + addr(pseudo_dst or dst) + struct.pack(">BBH", 0, proto, len(body))
            value = csum(pseudo + bytes(body))
            put16(body, at, value or (0xFFFF if proto == 17 else 0))
        elif proto == 1:
            put16(body, 2, 0)
            put16(body, 2, csum(bytes(body)))
    header = bytearray(struct.pack(">BBHHHBBH4s4s", 0x40 | ihl, 0, total, 0x1234, frag, 64, proto, 0,
                                   addr(src), addr(dst)) + options)
    put16(header, 10, csum(bytes(header)))
    return bytes(header + body)


# --- IPv6 ---

def ext(next_header, body_len_units=0, content=None):
    """A hop-by-hop / destination options / routing header of (units+1)*8 bytes."""
    size = (body_len_units + 1) * 8
    content = content if content is not None else b"\x01" + bytes([size - 4]) + bytes(size - 4)  # PadN
    return bytes([next_header, body_len_units]) + content[:size - 2]


def ipv6(src, dst, first, chain, proto, body, fill_transport=True, pseudo_dst=None):
    """chain: extension header bytes (already linked); proto: upper-layer protocol."""
    body = bytearray(body)
    if fill_transport and proto in CHECKSUM_AT:
        at = CHECKSUM_AT[proto]
        put16(body, at, 0)
        pseudo = addr(src) + addr(pseudo_dst or dst) + struct.pack(">I3xB", len(body), proto)
        value = csum(pseudo + bytes(body))
        put16(body, at, value or (0xFFFF if proto == 17 else 0))
    payload = chain + bytes(body)
    header = struct.pack(">IHBB16s16s", 0x60000000, len(payload), first, 64, addr(src), addr(dst))
    return header + payload


def packet_seeds():
    seeds = {}
    c4 = control(ALL_REWRITES, V4_MOA_A, V4_MOA_B)
    c6 = control(ALL_REWRITES, V6_MOA_A, V6_MOA_B)
    a4, b4, a6, b6 = V4_HOA_A, V4_HOA_B, V6_HOA_A, V6_HOA_B

    # IPv4
    syn4 = ipv4(a4, b4, 6, tcp())
    seeds["v4-tcp-syn"] = c4 + syn4
    seeds["v4-tcp-data"] = c4 + ipv4(a4, b4, 6, tcp(flags=0x18, options=b"", payload=b"GET / HTTP/1.1\r\n\r\n"))
    udp4 = ipv4(a4, b4, 17, udp())
    seeds["v4-udp"] = c4 + udp4
    seeds["v4-udp-zero-checksum"] = c4 + ipv4(a4, b4, 17, udp(payload=b"no checksum"), fill_transport=False)
    seeds["v4-icmp-echo"] = c4 + ipv4(a4, b4, 1, icmp(8, 0, b"\x12\x34\x00\x01", b"ping" * 4))
    # ICMP errors quoting what we sent (their source is the router/peer, quote the other way).
    quote_udp = udp4[:28]
    seeds["v4-icmp-port-unreachable"] = c4 + ipv4(b4, a4, 1, icmp(3, 3, payload=quote_udp))
    seeds["v4-icmp-time-exceeded-tcp"] = c4 + ipv4(b4, a4, 1, icmp(11, 0, payload=syn4))
    seeds["v4-icmp-frag-needed-short-quote"] = c4 + ipv4(b4, a4, 1, icmp(3, 4, b"\0\0\x05\xdc", payload=syn4[:28]))
    # Options: record route (harmless), and an unfinished loose source route whose final hop
    # is what the transport pseudo-header holds.
    rr = b"\x07\x07\x04" + bytes(4) + b"\x00"
    seeds["v4-options-record-route"] = c4 + ipv4(a4, b4, 17, udp(), options=rr)
    lsrr = b"\x83\x07\x04" + addr("192.0.2.99") + b"\x00"
    seeds["v4-options-lsrr"] = c4 + ipv4(a4, b4, 6, tcp(), options=lsrr, pseudo_dst="192.0.2.99")
    seeds["v4-fragment-first"] = c4 + ipv4(a4, b4, 17, udp(payload=b"A" * 16), frag=0x2000)
    seeds["v4-fragment-later"] = c4 + ipv4(a4, b4, 17, b"B" * 24, frag=0x0003, fill_transport=False)
    seeds["v4-tcp-partial"] = control(SRC | DST | PARTIAL | PARTIAL_AT_TRANSPORT, V4_MOA_A, V4_MOA_B) + syn4
    seeds["v4-udp-partial-raw-misaligned"] = control(SRC | DST | PARTIAL | MISALIGNED, V4_MOA_A, V4_MOA_B, 20, 6) + udp4
    seeds["v4-tcp-buffer-api"] = control(SRC | BUFFER_API, V4_MOA_A, V4_MOA_B) + syn4

    # IPv6
    syn6 = ipv6(a6, b6, 6, b"", 6, tcp())
    seeds["v6-tcp-syn"] = c6 + syn6
    udp6 = ipv6(a6, b6, 17, b"", 17, udp())
    seeds["v6-udp"] = c6 + udp6
    seeds["v6-udplite"] = c6 + ipv6(a6, b6, 136, b"", 136, udp(payload=b"lite"))
    seeds["v6-icmpv6-echo"] = c6 + ipv6(a6, b6, 58, b"", 58, icmp(128, 0, b"\x12\x34\x00\x01", b"ping"))
    seeds["v6-icmpv6-port-unreachable"] = c6 + ipv6(b6, a6, 58, b"", 58, icmp(1, 4, payload=udp6))
    with_ext = ipv6(a6, b6, 60, ext(6), 6, tcp())
    seeds["v6-icmpv6-packet-too-big-ext"] = c6 + ipv6(b6, a6, 58, b"", 58, icmp(2, 0, b"\0\0\x05\x00", payload=with_ext))
    seeds["v6-icmpv6-quote-cut-in-ext"] = c6 + ipv6(b6, a6, 58, b"", 58, icmp(3, 0, payload=ipv6(a6, b6, 0, ext(60, 1) + ext(17, 0), 17, udp())[:52]))
    seeds["v6-hbh-dstopts-udp"] = c6 + ipv6(a6, b6, 0, ext(60) + ext(17, 1), 17, udp())
    # Routing header type 4 (SRH) with segments left = 1: pseudo-header holds the final segment.
    final = "2001:db8:2::99"
    srh = bytes([6, 2, 4, 1, 0, 0, 0, 0]) + addr(final)
    seeds["v6-routing-segments-left"] = c6 + ipv6(a6, b6, 43, srh, 6, tcp(), pseudo_dst=final)
    frag_first = bytes([17, 0]) + struct.pack(">HI", 0x0001, 0xABCD)
    seeds["v6-fragment-first"] = c6 + ipv6(a6, b6, 44, frag_first, 17, udp(payload=b"A" * 16))
    frag_later = bytes([17, 0]) + struct.pack(">HI", 0x0008, 0xABCD)
    seeds["v6-fragment-later"] = c6 + ipv6(a6, b6, 44, frag_later, 17, b"B" * 16, fill_transport=False)
    ah = bytes([6, 4, 0, 0]) + struct.pack(">II", 0x100, 1) + bytes(12)
    seeds["v6-ah-tcp"] = c6 + ipv6(a6, b6, 51, ah, 6, tcp())
    seeds["v6-esp"] = c6 + ipv6(a6, b6, 50, b"", 50, struct.pack(">II", 0x100, 1) + bytes(16), fill_transport=False)
    seeds["v6-no-next-header"] = c6 + ipv6(a6, b6, 59, b"", 59, b"", fill_transport=False)
    seeds["v6-tcp-partial"] = control(SRC | DST | PARTIAL | PARTIAL_AT_TRANSPORT, V6_MOA_A, V6_MOA_B) + syn6
    seeds["v6-dccp"] = c6 + ipv6(a6, b6, 33, b"", 33, bytearray(struct.pack(">HHBBHHH", 5000, 5001, 4, 0, 0, 0, 0) + bytes(4)))
    # Refused on purpose: a chain longer than any legitimate packet's, and a late hop-by-hop.
    chain = b"".join(ext(60) for _ in range(17)) + ext(17)
    seeds["v6-too-many-ext"] = c6 + ipv6(a6, b6, 60, chain[:-8] + ext(17), 17, udp())
    seeds["v6-misplaced-hbh"] = c6 + ipv6(a6, b6, 60, ext(0) + ext(17), 17, udp())

    return seeds


# --- DNS ---

# The key FuzzDNS holds (FuzzDNS.swift: `fuzzKey`), and its fixed clock.
TSIG_KEY_NAME = "fuzz-key.example."
TSIG_SECRET = bytes(range(32))
TSIG_NOW = 1_700_000_000


def name(text, pointer=None):
    """Wire form of a name; with `pointer`, the labels end in a compression pointer."""
    out = b""
    for label in [part for part in text.rstrip(".").split(".") if part]:
        out += bytes([len(label)]) + label.encode()
    return out + (struct.pack(">H", 0xC000 | pointer) if pointer is not None else b"\0")


def rr(owner, rtype, rdata, rclass=1, ttl=30):
    return owner + struct.pack(">HHIH", rtype, rclass, ttl, len(rdata)) + rdata


def message(id_, flags, questions=(), answers=(), authorities=(), additionals=()):
    header = struct.pack(">HHHHHH", id_, flags, len(questions), len(answers), len(authorities), len(additionals))
    return header + b"".join(questions) + b"".join(answers) + b"".join(authorities) + b"".join(additionals)


def tsig_sign(msg):
    """Appends a TSIG record (RFC 8945, hmac-sha256, full MAC) and bumps ARCOUNT."""
    key_name, algorithm = name(TSIG_KEY_NAME), name("hmac-sha256.")
    original_id = struct.unpack(">H", msg[:2])[0]
    variables = (key_name + struct.pack(">HI", 255, 0) + algorithm + struct.pack(">Q", TSIG_NOW)[2:]
                 + struct.pack(">HHH", 300, 0, 0))
    mac = hmac.new(TSIG_SECRET, msg + variables, hashlib.sha256).digest()
    rdata = algorithm + struct.pack(">Q", TSIG_NOW)[2:] + struct.pack(">HH", 300, len(mac)) + mac \
        + struct.pack(">HHH", original_id, 0, 0)
    arcount = struct.unpack(">H", msg[10:12])[0]
    return msg[:10] + struct.pack(">H", arcount + 1) + msg[12:] + rr(key_name, 250, rdata, rclass=255, ttl=0)


def dns_seeds():
    seeds = {}
    opt = rr(b"\0", 41, b"", rclass=1232, ttl=0)  # EDNS: 1232-byte UDP payload
    hoa = "10.2.0.192.hoa.mat.example."
    q_a = name(hoa) + struct.pack(">HH", 1, 1)
    seeds["query-a-edns"] = message(0x1001, 0x0100, [q_a], additionals=[opt])
    seeds["query-aaaa"] = message(0x1002, 0x0000, [name("0.1.0.0.8.b.d.0.1.0.0.2.hoa.mat.example.") + struct.pack(">HH", 28, 1)])
    # A response whose owners are compressed against the question (offset 12).
    soa = (name("ns.mat.example.") + name("hostmaster.mat.example.") + struct.pack(">IIIII", 7, 3600, 600, 86400, 30))
    seeds["response-compressed"] = message(
        0x1001, 0x8580, [q_a],
        answers=[rr(name("", pointer=12), 1, addr("198.51.100.10")),
                 rr(name("", pointer=12), 1, addr("203.0.113.20")),
                 rr(name("", pointer=12), 16, b"\x0bv=1 seq=42")],
        authorities=[rr(name("mat.example."), 6, soa)],
        additionals=[rr(name("ns", pointer=12 + len(q_a) - 4 - len(name("mat.example."))), 28, addr("2001:db8::53")), opt])
    seeds["response-nxdomain"] = message(0x1003, 0x8183, [q_a], authorities=[rr(name("mat.example."), 6, soa)])
    # An UPDATE as a node sends it: zone SOA, prerequisite "name is in use", delete + add.
    zone = name("mat.example.") + struct.pack(">HH", 6, 1)
    owner = name(hoa)
    update = message(0x2001, 0x2800, [zone],
                     answers=[rr(owner, 255, b"", rclass=255, ttl=0)],
                     authorities=[rr(owner, 1, b"", rclass=255, ttl=0),
                                  rr(owner, 1, addr("198.51.100.10")),
                                  rr(owner, 16, b"\x0bv=1 seq=43")])
    seeds["update-unsigned"] = update
    seeds["update-tsig"] = tsig_sign(update)
    seeds["query-tsig"] = tsig_sign(seeds["query-a-edns"])
    seeds["notify"] = message(0x3001, 0x2400, [zone])
    return seeds


# --- FuzzIMS programs (FuzzIMS.swift): `control | length | message` each ---

NODE_KEY, ADMIN_KEY, STRANGER_KEY = 1, 2, 3      # bits 0-1: who signs
TCP = 4                                          # bit 2
FROM_LOOPBACK, FROM_V4, FROM_V6 = 1 << 3, 2 << 3, 3 << 3   # bits 3-4: the source
LATE = 3 << 5                                    # bits 5-6: signed 400 s off the server clock
IMS_NODE = "10.100.51.198.hoa.mat.example."      # IMSCore.fuzzingNodeKey's name


def step(control, msg):
    return bytes([control]) + struct.pack(">H", len(msg)) + msg


def ims_update(id_, updates, prerequisites=()):
    zone = name("mat.example.") + struct.pack(">HH", 6, 1)
    return message(id_, 0x2800, [zone], answers=list(prerequisites), authorities=list(updates))


def ims_query(id_, qname, qtype, qclass=1, edns=True, authorities=()):
    opt = [rr(b"\0", 41, b"", rclass=1232, ttl=0)] if edns else []
    return message(id_, 0x0000, [name(qname) + struct.pack(">HH", qtype, qclass)],
                   authorities=list(authorities), additionals=opt)


def ims_seeds():
    node = name(IMS_NODE)
    txt = b"\x03v=1\x05seq=7"
    ptr = lambda moa: rr(name(moa), 12, node, ttl=10)
    register = ims_update(0x4001, [rr(node, 1, b"", rclass=255, ttl=0), rr(node, 1, addr("192.0.2.10"), ttl=10),
                                   rr(node, 16, txt, ttl=10), ptr("10.2.0.192.moa.mat.example.")])
    soa = (name("ns.mat.example.") + name("hostmaster.mat.example.") + struct.pack(">IIIII", 1, 3600, 600, 86400, 30))
    seeds = {}
    seeds["register-read-transfer"] = (
        step(NODE_KEY | FROM_V4, register)
        + step(FROM_V4, ims_query(0x4002, IMS_NODE, 1))
        + step(TCP, ims_query(0x4003, IMS_NODE, 255, edns=False))
        + step(ADMIN_KEY | TCP, ims_query(0x4004, "mat.example.", 252, edns=False)))
    seeds["node-past-limits"] = (
        step(ADMIN_KEY | TCP, ims_update(0x4101, [rr(node, 1, addr("198.51.100.%d" % i), ttl=10) for i in range(1, 5)]))
        + step(NODE_KEY, ims_update(0x4102, [rr(node, 28, addr("2001:db8::5"), ttl=10)]))
        + step(NODE_KEY | TCP, ims_update(0x4103, [ptr("%d.2.0.192.moa.mat.example." % i) for i in range(1, 4)]))
        + step(NODE_KEY, ims_update(0x4104, [rr(node, 1, addr("198.51.100.1"), rclass=254, ttl=0)])))
    # Two pointers, one moved (delete + add in one UPDATE), then a whole pointer name deleted.
    seeds["node-moves-pointers"] = (
        step(NODE_KEY, ims_update(0x4151, [ptr("1.2.0.192.moa.mat.example."), ptr("2.2.0.192.moa.mat.example.")]))
        + step(NODE_KEY | TCP, ims_update(0x4152, [rr(name("1.2.0.192.moa.mat.example."), 12, node, rclass=254, ttl=0),
                                                   ptr("3.2.0.192.moa.mat.example.")]))
        + step(NODE_KEY, ims_update(0x4153, [rr(name("2.2.0.192.moa.mat.example."), 255, b"", rclass=255, ttl=0)])))
    seeds["node-outside-its-names"] = (
        step(NODE_KEY, ims_update(0x4201, [rr(name("20.100.51.198.hoa.mat.example."), 1, addr("192.0.2.20"), ttl=10)]))
        + step(NODE_KEY, ims_update(0x4202, [rr(name("9.2.0.192.moa.mat.example."), 12,
                                                 name("20.100.51.198.hoa.mat.example."), ttl=10)]))
        + step(NODE_KEY, ims_update(0x4203, [rr(node, 2, name("ns.evil.example."), ttl=10)])))
    seeds["bad-signatures"] = (
        step(STRANGER_KEY, register) + step(NODE_KEY | LATE, register) + step(0, register)
        + step(NODE_KEY, register) + step(NODE_KEY, register))
    seeds["rate-limited-flood"] = b"".join(
        step(FROM_V4, ims_query(0x4300 + i, IMS_NODE, 1, edns=i % 2 == 0)) for i in range(8)) \
        + step(NODE_KEY | FROM_V4, ims_query(0x4310, IMS_NODE, 1)) \
        + b"".join(step(FROM_V6, ims_query(0x4320 + i, "mat.example.", 6)) for i in range(6))
    seeds["counters-and-ixfr"] = (
        step(FROM_LOOPBACK, ims_query(0x4401, "counters.ims.", 16, qclass=3))
        + step(FROM_LOOPBACK | TCP, ims_query(0x4402, "counters.ims.", 16, qclass=3, edns=False))
        + step(NODE_KEY, register)
        + step(0, ims_query(0x4403, "mat.example.", 251, edns=False, authorities=[rr(name("mat.example."), 6, soa)]))
        + step(TCP, ims_query(0x4404, "mat.example.", 251, edns=False, authorities=[rr(name("mat.example."), 6, soa)])))
    seeds["notify-and-opcodes"] = (
        step(FROM_V4, message(0x4501, 0x2400, [name("mat.example.") + struct.pack(">HH", 6, 1)]))
        + step(0, message(0x4502, 0x1000, [name("mat.example.") + struct.pack(">HH", 6, 1)]))
        + step(0, b"\x45\x03\x00\x00")
        + step(TCP, ims_query(0x4504, "example.org.", 1)))
    return seeds


# --- MappingTable programs (FuzzMapping.swift: `ByteReader`) ---

INSERT, REPLACE, REMOVE, EXPIRE, REMOVE_ALL = 0, 1, 3, 5, 7
REACHABLE = 0x02 << 2  # MappingFlags.reachable in the details byte


def v4(index):
    return bytes([index & 0x3F])                     # pool: 198.51.100.index


def v6(index):
    return bytes([0x80 | (index & 0x3F)])            # pool: 2001:db8::index


def raw4(value):
    return bytes([0x40]) + struct.pack(">I", value)


def binding(address, priority=0, reachable=False, expires=None):
    details = priority | (REACHABLE if reachable else 0)
    return address + bytes([details]) + (bytes([0, expires]) if expires is not None else b"\1")


def mapping_op(op, hoa, bindings, sequence=0):
    return bytes([op]) + hoa + bytes([len(bindings)]) + b"".join(bindings) + bytes([sequence])


def program(maximum, capacity, seed, *ops):
    return bytes([maximum - 1, capacity]) + struct.pack(">Q", seed) + b"".join(ops)


def mapping_seeds():
    seeds = {}
    seeds["move-and-expire"] = program(
        16, 0, 0x0123456789ABCDEF,
        mapping_op(REPLACE, v4(1), [binding(v4(10), 1, True), binding(v4(11), 0, expires=5)], 1),
        mapping_op(REPLACE, v4(1), [binding(v4(11)), binding(v4(12), reachable=True)], 2),
        mapping_op(INSERT, v4(2), [binding(v4(12))]),          # owned by HoA 1: refused
        mapping_op(REPLACE, v4(1), [binding(v4(13))], 1),       # stale sequence: refused
        bytes([EXPIRE, 10]),
        bytes([REMOVE]) + v4(1))
    seeds["ipv6-many"] = program(
        64, 4, 42,
        *[mapping_op(INSERT, v6(i), [binding(v6(32 + i), i % 4, i % 3 == 0, expires=i)]) for i in range(1, 20)],
        bytes([EXPIRE, 9]),
        *[bytes([REMOVE]) + v6(i) for i in range(1, 20, 2)])
    seeds["refusals"] = program(
        2, 0, 7,
        mapping_op(INSERT, v4(0), [binding(v4(1))]),                      # unspecified HoA
        mapping_op(INSERT, v4(3), []),                                    # no MoA
        mapping_op(INSERT, v4(3), [binding(v6(1))]),                      # family mismatch
        mapping_op(INSERT, v4(3), [binding(v4(4)), binding(v4(4))]),      # duplicate MoA
        mapping_op(INSERT, v4(3), [binding(v4(i)) for i in range(4, 21)]),  # 17 MoAs
        mapping_op(INSERT, v4(3), [binding(raw4(0xC0000201))]),
        mapping_op(INSERT, v4(5), [binding(v4(5))]),                      # at home: MoA == HoA
        mapping_op(INSERT, v4(6), [binding(v4(7))]),                      # table full (2)
        bytes([REMOVE_ALL, 0]),
        mapping_op(INSERT, v4(6), [binding(v4(7))]))
    return seeds


# --- signaling messages (docs/signaling.md; FuzzSignaling.swift: `fuzzKey`) ---

# Ed25519 as in RFC 8032 §6 (the reference code, slow but short): the seeds need nothing
# outside the standard library.
ED_P = 2**255 - 19
ED_L = 2**252 + 27742317777372353535851937790883648493
ED_D = -121665 * pow(121666, ED_P - 2, ED_P) % ED_P
ED_SQRT_M1 = pow(2, (ED_P - 1) // 4, ED_P)


def ed_add(a, b):
    A, B = (a[1] - a[0]) * (b[1] - b[0]) % ED_P, (a[1] + a[0]) * (b[1] + b[0]) % ED_P
    C, D = 2 * a[3] * b[3] * ED_D % ED_P, 2 * a[2] * b[2] % ED_P
    E, F, G, H = B - A, D - C, D + C, B + A
    return (E * F % ED_P, G * H % ED_P, F * G % ED_P, E * H % ED_P)


def ed_mul(s, point):
    q = (0, 1, 1, 0)
    while s > 0:
        if s & 1:
            q = ed_add(q, point)
        point = ed_add(point, point)
        s >>= 1
    return q


def ed_encode(point):
    zinv = pow(point[2], ED_P - 2, ED_P)
    x, y = point[0] * zinv % ED_P, point[1] * zinv % ED_P
    return int.to_bytes(y | ((x & 1) << 255), 32, "little")


ED_GY = 4 * pow(5, ED_P - 2, ED_P) % ED_P
ED_GX2 = (ED_GY * ED_GY - 1) * pow(ED_D * ED_GY * ED_GY + 1, ED_P - 2, ED_P)
ED_GX = pow(ED_GX2, (ED_P + 3) // 8, ED_P)
if (ED_GX * ED_GX - ED_GX2) % ED_P != 0:
    ED_GX = ED_GX * ED_SQRT_M1 % ED_P
if ED_GX & 1:
    ED_GX = ED_P - ED_GX
ED_G = (ED_GX, ED_GY, 1, ED_GX * ED_GY % ED_P)


def ed25519_sign(seed, message):
    h = hashlib.sha512(seed).digest()
    a = int.from_bytes(h[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    public = ed_encode(ed_mul(a, ED_G))
    r = int.from_bytes(hashlib.sha512(h[32:] + message).digest(), "little") % ED_L
    R = ed_encode(ed_mul(r, ED_G))
    k = int.from_bytes(hashlib.sha512(R + public + message).digest(), "little") % ED_L
    return R + int.to_bytes((r + k * a) % ED_L, 32, "little")


SIGNAL_SEED = bytes(range(32))
BINDING_UPDATE, BINDING_ACK, CHALLENGE, CHALLENGE_RESPONSE = 1, 2, 3, 4


def signal_address(text):
    raw = addr(text)
    return bytes([4 if len(raw) == 4 else 6]) + raw + bytes(16 - len(raw))


def signal(type_, sequence, sender, receiver, body):
    signed = (b"MATs" + bytes([1, type_]) + struct.pack(">HQ", 0, sequence) + signal_address(sender)
              + signal_address(receiver) + struct.pack(">H", len(body)) + body)
    return signed + ed25519_sign(SIGNAL_SEED, signed)


def binding_update(moas, lifetime=600, count=None):
    return (bytes([len(moas) if count is None else count]) + b"".join(map(signal_address, moas))
            + struct.pack(">I", lifetime))


def signaling_seeds():
    seeds = {}
    nonce = bytes(range(0xA0, 0xB0))
    for family, (hoa_a, hoa_b, moa_a, moa_b) in (("v4", (V4_HOA_A, V4_HOA_B, V4_MOA_A, V4_MOA_B)),
                                                  ("v6", (V6_HOA_A, V6_HOA_B, V6_MOA_A, V6_MOA_B))):
        seeds[family + "-binding-update"] = signal(BINDING_UPDATE, 42, hoa_a, hoa_b, binding_update([moa_a, moa_b]))
        seeds[family + "-binding-ack"] = signal(BINDING_ACK, 7, hoa_b, hoa_a, struct.pack(">QB", 42, 0))
        seeds[family + "-challenge"] = signal(CHALLENGE, 8, hoa_b, hoa_a, nonce + struct.pack(">Q", 42))
        seeds[family + "-challenge-response"] = signal(CHALLENGE_RESPONSE, 43, hoa_a, hoa_b, nonce + struct.pack(">Q", 42))
    moas = ["198.51.100.%d" % i for i in range(1, 10)]
    seeds["v4-binding-update-8"] = signal(BINDING_UPDATE, 2**64 - 1, V4_HOA_A, V4_HOA_B, binding_update(moas[:8], 2**32 - 1))
    # Refused after the signature verifies: 9 MoAs, a MoA of the wrong family, status 2.
    seeds["v4-binding-update-9"] = signal(BINDING_UPDATE, 44, V4_HOA_A, V4_HOA_B, binding_update(moas))
    seeds["v4-binding-update-v6-moa"] = signal(BINDING_UPDATE, 45, V4_HOA_A, V4_HOA_B, binding_update([V6_MOA_A]))
    seeds["v4-binding-ack-status-2"] = signal(BINDING_ACK, 9, V4_HOA_B, V4_HOA_A, struct.pack(">QB", 42, 2))
    # Padded as a mover sends them (1184 bytes), and padding that is not zero (refused).
    def padded(body, length=1184):
        return body + bytes(length - 52 - 64 - len(body))
    seeds["v4-binding-update-padded"] = signal(BINDING_UPDATE, 46, V4_HOA_A, V4_HOA_B, padded(binding_update([V4_MOA_A])))
    seeds["v6-binding-update-padded"] = signal(BINDING_UPDATE, 46, V6_HOA_A, V6_HOA_B, padded(binding_update([V6_MOA_A])))
    seeds["v4-binding-update-bad-padding"] = signal(BINDING_UPDATE, 47, V4_HOA_A, V4_HOA_B,
                                                    binding_update([V4_MOA_A]) + b"\0\0\x01" + bytes(40))
    # Under load: a message with a cookie after its signature, and a cookie reply (type 5).
    cookie = bytes(range(0xC0, 0xD0))
    seeds["v4-binding-update-cookie"] = seeds["v4-binding-update"] + cookie
    seeds["v6-challenge-response-cookie"] = seeds["v6-challenge-response"] + cookie
    seeds["v6-binding-update-padded-cookie"] = seeds["v6-binding-update-padded"] + cookie
    echo = seeds["v4-binding-update"][-64:-48]
    seeds["cookie-reply"] = b"MATs" + bytes([1, 5, 0, 0]) + echo + cookie
    # The UDP encapsulation on the encap-port (EncapWire): a carried IPv4 packet (virtio
    # header, then an IPv4 header), a keepalive, a probe request and its answer.
    encap = lambda kind: b"MATu" + bytes([1, kind, 0, 0])
    seeds["encap-packet-v4"] = encap(1) + bytes(10) + bytes([0x45]) + bytes(19)
    seeds["encap-keepalive"] = encap(2)
    seeds["encap-probe-request"] = encap(3) + nonce
    seeds["encap-probe-answer"] = encap(4) + nonce
    # The relay kinds: a registration of two HoAs signed with the fixed key, and a
    # relayed IPv6 packet (laid out as a packet).
    registration = (encap(5) + struct.pack(">QB", 9, 2) + signal_address(V4_HOA_A) + signal_address(V6_HOA_A)
                    + bytes(range(64, 96))  # the node's exchange key
                    + bytes(range(96, 128)))  # the relay's exchange key it names
    seeds["encap-relay-registration"] = registration + ed25519_sign(SIGNAL_SEED, registration)
    seeds["encap-relayed-v6"] = encap(6) + bytes(10) + bytes([0x60]) + bytes(39)
    # The relay's answer (kind 8): the start of the node's key, the key agreed with, the
    # current key, and the signature (the fixed key's) over the whole node key and both.
    node_key, relay_keys = bytes(range(64, 96)), bytes(range(96, 128)) * 2
    seeds["encap-relay-answer"] = (encap(8) + node_key[:16] + relay_keys
                                   + ed25519_sign(SIGNAL_SEED, encap(8) + node_key + relay_keys))
    # A binding update through the relay (kind 7): a zero origin and MAC, then the message.
    seeds["encap-relayed-signal"] = encap(7) + bytes(17 + 16) + seeds["v4-binding-update"]
    return seeds


def write(target, seeds):
    out = os.path.join(HERE, "Corpus", target)
    os.makedirs(out, exist_ok=True)
    for old in os.listdir(out):
        os.remove(os.path.join(out, old))
    for seed, data in sorted(seeds.items()):
        with open(os.path.join(out, seed), "wb") as f:
            f.write(data)
    print("make-corpus: %s: %d seeds, %d bytes" % (target, len(seeds), sum(map(len, seeds.values()))))


if __name__ == "__main__":
    write("packet", packet_seeds())
    write("mapping", mapping_seeds())
    write("dns", dns_seeds())
    write("signaling", signaling_seeds())
    write("ims", ims_seeds())
