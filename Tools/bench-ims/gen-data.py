#!/usr/bin/env python3
"""Writes the data files of the ims benchmark into a directory (stdlib only).

  gen-data.py OUTDIR ZONE [REPS]

Mapping names (zone layout of docs/ims.md: HoA name = reversed address under hoa.<zone>,
MoA name = reversed MoA under moa.<zone>):
  768 IPv4 HoAs (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24) with MoAs in 198.18.0.0/15
  (the benchmarking range, RFC 2544), and 256 IPv6 HoAs in 2001:db8:100::/64 with MoAs in
  2001:db8:ff00::/64. Each HoA has two MoAs, variant 0 and variant 1.

Files:
  names.txt        HoA name, record type, MoA of variant 0 (one line per HoA)
  zone.db          the zone for named: apex, every HoA at variant 0 (A/AAAA, TXT seq=1) and
                   the PTR of its MoA
  preload.nsupdate the same records as UPDATEs (nsupdate script, 64 HoAs per message) for
                   mat-ims, which loads state only from UPDATEs and its own journal
  queries.txt      dnsperf query file: the address record and the TXT of every HoA, shuffled
  updates-R.txt    dnsperf -u file for repetition R (0 = warm-up, 1..REPS): for every HoA,
                   the registration UPDATE matd sends (RegistrationBuilder): delete A, AAAA,
                   TXT; add the new MoA and TXT seq; replace the new MoA's PTR; delete the
                   old MoA's PTR to this HoA. First half: every HoA, in a shuffled order,
                   moves to variant 1 with seq=10R+2; second half: the same order, back to
                   variant 0 with seq=10R+3. dnsperf repeats the file; every UPDATE changes
                   the zone (its seq differs from the one the name holds), so each
                   acknowledged UPDATE bumps the SOA serial by one on both servers. The
                   two UPDATEs of one name are 1024 apart, so no reordering between
                   sockets or server threads can swap them. Even seq means variant 1, odd
                   seq variant 0: check-zone.py uses that to check the zone afterwards.
"""
import ipaddress
import random
import sys

out, zone = sys.argv[1], sys.argv[2].rstrip(".") + "."
reps = int(sys.argv[3]) if len(sys.argv) > 3 else 3
TTL = 10


def rev_name(address, suffix):
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        labels = str(ip).split(".")[::-1]
    else:
        labels = ip.exploded.replace(":", "")[::-1]
    return ".".join(labels) + "." + suffix + "." + zone


hoas = []  # (hoa name, type, moa0, moa1)
index = 0
for prefix in ("192.0.2.", "198.51.100.", "203.0.113."):
    for last in range(256):
        hoa = prefix + str(last)
        # 198.18.0.0/15: variant 0 in 198.18.x.y, variant 1 in 198.19.x.y
        moa0 = "198.18.%d.%d" % (index // 256, index % 256)
        moa1 = "198.19.%d.%d" % (index // 256, index % 256)
        hoas.append((rev_name(hoa, "hoa"), "A", moa0, moa1))
        index += 1
for n in range(256):
    hoa = "2001:db8:100::%x" % (n + 1)
    moa0 = "2001:db8:ff00::%x" % (2 * n + 1)
    moa1 = "2001:db8:ff00::%x" % (2 * n + 2)
    hoas.append((rev_name(hoa, "hoa"), "AAAA", moa0, moa1))

moa_name = lambda moa: rev_name(moa, "moa")

with open(out + "/names.txt", "w") as f:
    for name, rtype, moa0, _ in hoas:
        f.write("%s %s %s\n" % (name, rtype, moa0))

with open(out + "/zone.db", "w") as f:
    f.write("$ORIGIN %s\n$TTL 3600\n" % zone)
    f.write("@ IN SOA ns.%s hostmaster.%s 1 300 30 86400 10\n" % (zone, zone))
    f.write("@ IN NS ns.%s\nns IN A 127.0.0.1\n" % zone)
    for name, rtype, moa0, _ in hoas:
        f.write('%s %d IN %s %s\n' % (name, TTL, rtype, moa0))
        f.write('%s %d IN TXT "v=1" "seq=1"\n' % (name, TTL))
        f.write('%s %d IN PTR %s\n' % (moa_name(moa0), TTL, name))

with open(out + "/preload.nsupdate", "w") as f:
    # server/key lines are added by the caller
    for start in range(0, len(hoas), 64):
        f.write("zone %s\n" % zone)
        for name, rtype, moa0, _ in hoas[start:start + 64]:
            f.write("update add %s %d %s %s\n" % (name, TTL, rtype, moa0))
            f.write('update add %s %d TXT "v=1" "seq=1"\n' % (name, TTL))
            f.write("update add %s %d PTR %s\n" % (moa_name(moa0), TTL, name))
        f.write("send\n")

rng = random.Random(20240601)
queries = []
for name, rtype, _, _ in hoas:
    queries.append("%s %s" % (name, rtype))
    queries.append("%s TXT" % name)
rng.shuffle(queries)
with open(out + "/queries.txt", "w") as f:
    f.write("\n".join(queries) + "\n")


def registration(name, rtype, new, old, seq):
    return "\n".join([
        zone,
        "delete %s A" % name,
        "delete %s AAAA" % name,
        "delete %s TXT" % name,
        "add %s %d %s %s" % (name, TTL, rtype, new),
        'add %s %d TXT "v=1" "seq=%d"' % (name, TTL, seq),
        "delete %s PTR" % moa_name(new),
        "add %s %d PTR %s" % (moa_name(new), TTL, name),
        "delete %s PTR %s" % (moa_name(old), name),
        "send",
    ]) + "\n"


order = list(hoas)
rng.shuffle(order)
for rep in range(reps + 1):
    with open(out + "/updates-%d.txt" % rep, "w") as f:
        for name, rtype, moa0, moa1 in order:
            f.write(registration(name, rtype, moa1, moa0, 10 * rep + 2))
        for name, rtype, moa0, moa1 in order:
            f.write(registration(name, rtype, moa0, moa1, 10 * rep + 3))
