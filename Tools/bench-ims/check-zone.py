#!/usr/bin/env python3
"""Checks a zone dump (dig AXFR output) against the ims benchmark's mappings (stdlib only).

  check-zone.py NAMES AXFR_FILE [REPS]

NAMES is gen-data.py's names.txt. For every HoA: exactly one address record and one TXT
"v=1" "seq=N"; the address is variant 0 when N is odd, variant 1 when N is even (see
gen-data.py); N is 1 (preloaded) or one of the benchmark's seqs; the PTR at the current
MoA's name points to the HoA, and the other variant's MoA name holds no PTR to it.
Prints "ok N names" or the first problems, exit status 1 on any problem.
"""
import ipaddress
import re
import sys
from collections import defaultdict

names_file, axfr_file = sys.argv[1], sys.argv[2]
reps = int(sys.argv[3]) if len(sys.argv) > 3 else 3
rrs = defaultdict(list)
soas = 0
with open(axfr_file) as f:
    for line in f:
        if not line.strip() or line.startswith(";"):
            continue
        parts = line.split(None, 4)
        if len(parts) < 5:
            continue
        owner, _ttl, _cls, rtype, rdata = parts
        rrs[(owner.lower(), rtype)].append(rdata.strip())
        if rtype == "SOA":
            soas += 1
problems = []
if soas != 2:
    problems.append("transfer incomplete: %d SOA records (want 2)" % soas)
valid_seqs = {1} | {10 * r + k for r in range(reps + 1) for k in (2, 3)}
zone = None
count = 0


def moa_name(address, zone):
    ip = ipaddress.ip_address(address)
    labels = str(ip).split(".")[::-1] if ip.version == 4 else list(ip.exploded.replace(":", "")[::-1])
    return ".".join(labels) + ".moa." + zone


with open(names_file) as f:
    for line in f:
        hoa, rtype, moa0 = line.split()
        zone = hoa.split(".hoa.", 1)[1]
        count += 1
        # variant 1 is derived the way gen-data.py derives it
        if rtype == "A":
            a, b, c, d = moa0.split(".")
            moa1 = "198.19.%s.%s" % (c, d)
        else:
            moa1 = str(ipaddress.ip_address(moa0) + 1)
        txt = rrs.get((hoa, "TXT"), [])
        m = re.fullmatch(r'"v=1" "seq=(\d+)"', txt[0]) if len(txt) == 1 else None
        if not m or int(m.group(1)) not in valid_seqs:
            problems.append("%s: TXT %s" % (hoa, txt))
            continue
        seq = int(m.group(1))
        current, other = (moa0, moa1) if seq % 2 else (moa1, moa0)
        addresses = rrs.get((hoa, rtype), [])
        if [str(ipaddress.ip_address(x)) for x in addresses] != [str(ipaddress.ip_address(current))]:
            problems.append("%s: seq=%d but %s %s (want %s)" % (hoa, seq, rtype, addresses, current))
        if rrs.get((moa_name(current, zone), "PTR"), []) != [hoa]:
            problems.append("%s: PTR at %s is %s" % (hoa, moa_name(current, zone), rrs.get((moa_name(current, zone), "PTR"))))
        if hoa in rrs.get((moa_name(other, zone), "PTR"), []):
            problems.append("%s: stale PTR at %s" % (hoa, moa_name(other, zone)))
        other_type = "AAAA" if rtype == "A" else "A"
        if rrs.get((hoa, other_type)):
            problems.append("%s: unexpected %s" % (hoa, other_type))
if problems:
    print("%d problems, first: %s" % (len(problems), "; ".join(problems[:5])))
    sys.exit(1)
print("ok %d names" % count)
