#!/usr/bin/env python3
"""Splits docs/deploy.md into the steps Interop/deploy/run follows, in document order.

  steps.py GUIDE OUTDIR VARIANT

A step is a fenced block whose info string is `sh MACHINE... [VARIANT]` (VARIANT: one of
mat-ims, bind, knot; a block without one runs for every IMS), or a comment
`<!-- deploy-test: ACTION ARGS -->` for what a namespace is not (copying a file between
machines, the hypervisor moving a VM). Writes OUTDIR/NNN.step with a first line
`KIND WORDS...` (`run MACHINE...` or `do ACTION ARGS...`) and, for `run`, the block's text
after it. Prints the number of steps; exits 1 on a block it cannot place (an `sh` block
with no machine, an unknown action), so the guide cannot drift from the test silently.
"""
import os
import re
import sys

VARIANTS = {"mat-ims", "bind", "knot"}
MACHINES = {"vm1", "vm2", "cn", "ims"}
ACTIONS = {"copy", "migrate", "flow-check", "expect"}


def main(guide, outdir, variant):
    if variant not in VARIANTS:
        sys.exit(f"steps.py: unknown IMS {variant}")
    lines = open(guide).read().splitlines()
    steps, i = [], 0
    while i < len(lines):
        line = lines[i]
        comment = re.fullmatch(r"<!-- deploy-test: (.*) -->", line.strip())
        if comment:
            words = comment.group(1).split()
            if words[0] not in ACTIONS:
                sys.exit(f"steps.py: line {i + 1}: unknown action {words[0]}")
            steps.append("do " + " ".join(words) + "\n")
        elif line.startswith("```"):
            words = line[3:].split()
            end = i + 1
            while end < len(lines) and lines[end] != "```":
                end += 1
            body = "\n".join(lines[i + 1:end]) + "\n"
            if words and words[0] == "sh":
                machines = [w for w in words[1:] if w in MACHINES]
                unknown = [w for w in words[1:] if w not in MACHINES | VARIANTS]
                if not machines or unknown:
                    sys.exit(f"steps.py: line {i + 1}: ```{line[3:]}: which machine? (known: {sorted(MACHINES)})")
                variants = [w for w in words[1:] if w in VARIANTS]
                if not variants or variant in variants:
                    steps.append("run " + " ".join(machines) + "\n" + body)
            i = end
        i += 1
    os.makedirs(outdir, exist_ok=True)
    for number, step in enumerate(steps):
        with open(os.path.join(outdir, f"{number:03d}.step"), "w") as file:
            file.write(step)
    print(len(steps))


if __name__ == "__main__":
    main(*sys.argv[1:])
