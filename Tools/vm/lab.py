#!/usr/bin/env python3
"""The VM lab (docs/vm-lab.md): a Debian guest running matd under QEMU on hypervisor host A,
live-migrated with QEMU's own migration to hypervisor host B while a TCP flow and a 10 ms
probe stream run between the correspondent node and the guest's HoA.

  lab.py check [--keep]     one migration; exits non-zero unless the guest took site B's
                            address by itself (no hook), matd moved, and the flow arrived
                            byte-identical with no reset
  lab.py check --no-readdress   the control: the guest's matd without on-notify-peers; the
                            check fails (the guest keeps site A's address on site B)
  lab.py demo --out DIR     the same, narrated, with a chart of the probe stream (DIR/vm-migration.svg)
  lab.py bench              the same, printing
                            bench: vm-migration downtime_ms=.. gap_ms=.. recover_s=.. identical=yes

Builds what it needs with Tools/vm/build-image (the Debian image is cached; the package is
built incrementally). Needs root, QEMU, dnsmasq (Tools/install-deps).

Layout (on top of Tools/testbed's routed sites, lab name matvm<pid>):
  hva   hypervisor host A: bridge br0 (192.0.2.2/25) on site A, tap0, dnsmasq, QEMU
  hvb   hypervisor host B: bridge br0 (203.0.113.2/24) on site B, tap0, dnsmasq, QEMU -incoming
  ims   mat-ims 192.0.2.132;  cn   matd, HoA 198.51.100.20, MoA 192.0.2.130
  guest HoA 198.51.100.10; MoA from DHCP: 192.0.2.50 on site A, 203.0.113.50 on site B
The migration stream goes from hva to hvb through the lab's router.
"""
import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

# No __pycache__ in the clone (handoff and support are imported from it).
sys.dont_write_bytecode = True
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TESTBED = os.path.join(ROOT, "Tools", "testbed")
GUEST_FILES = os.path.join(ROOT, "Tools", "vm", "guest")
LAB_TOOLS = os.path.join(ROOT, "Tools", "lab")
sys.path.insert(0, LAB_TOOLS)
import handoff  # noqa: E402  (the traffic endpoints)
from support import QMP, ConsoleWatch, Failure, write_chart  # noqa: E402

GUEST_HOA, CN_HOA = "198.51.100.10", "198.51.100.20"
GUEST_MAC = "52:54:00:4d:41:54"
SITES = {
    "a": {"hv": "192.0.2.2/25", "gw": "192.0.2.1", "moa": "192.0.2.50", "mask": "255.255.255.128", "bridge": "br-a"},
    "b": {"hv": "203.0.113.2/24", "gw": "203.0.113.1", "moa": "203.0.113.50", "mask": "255.255.255.0", "bridge": "br-b"},
}
MIGRATION_PORT = 4444
FLOW_PORT, ECHO_PORT = 5201, 5202
FLOW_MB, FLOW_RATE = 24, 2          # MB sent, MB/s: 12 s of flow, the migration at 4 s
MIGRATE_AT = 4.0
GUEST_MEMORY_MB = 512


def log(text):
    print("vm-lab: " + text, file=sys.stderr, flush=True)


class VMLab:
    def __init__(self, keep=False, readdress=True):
        self.readdress = readdress
        self.lab = "matvm%d" % (os.getpid() % 9000 + 1000)
        self.keep = keep
        # On disk, not tmpfs: QEMU opens the images; the IMS journal goes to /dev/shm as in
        # the other labs (one sync can take a second on a disk shared with compilers).
        self.work = tempfile.mkdtemp(prefix=self.lab + ".", dir="/var/tmp")
        self.ims_state = tempfile.mkdtemp(prefix=self.lab + "-ims.", dir="/dev/shm")
        self.env = dict(os.environ, LAB=self.lab)
        self.processes = []
        self.hosts = []

    # ------------------------------------------------------------------ plumbing

    def ns(self, node):
        return "%s-%s" % (self.lab, node)

    def run(self, *args, **kwargs):
        result = subprocess.run(list(args), capture_output=True, text=True, **kwargs)
        if result.returncode != 0:
            raise Failure("%s failed:\n%s" % (" ".join(args), (result.stderr or result.stdout).strip()))
        return result.stdout

    def spawn(self, node, args, log_name, **kwargs):
        out = open(os.path.join(self.work, log_name), "w")
        process = subprocess.Popen(["ip", "netns", "exec", self.ns(node)] + args, stdout=out,
                                   stderr=subprocess.STDOUT, **kwargs)
        self.processes.append(process)
        return process

    def path(self, name):
        return os.path.join(self.work, name)

    def read(self, name):
        try:
            with open(self.path(name), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_for(self, what, condition, timeout, poll=0.2):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(poll)
        raise Failure("timed out after %d s waiting for %s (files in %s)" % (timeout, what, self.work))

    # ------------------------------------------------------------------ build

    def build(self):
        log("guest image (Tools/vm/build-image; the Debian part is cached)")
        result = subprocess.run([os.path.join(ROOT, "Tools", "vm", "build-image")], stdout=subprocess.PIPE, text=True)
        if result.returncode != 0:
            raise Failure("Tools/vm/build-image failed")
        paths = dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)
        self.base, self.mat_image, deb = paths["base"], paths["mat"], paths["deb"]
        # The host side runs the very same binaries.
        self.bin = self.path("host")
        self.run("dpkg-deb", "-x", deb, self.bin)
        self.bin = os.path.join(self.bin, "usr", "sbin")

    # ------------------------------------------------------------------ the lab

    def up(self):
        log("lab %s: sites, router, CN and IMS (Tools/testbed), two hypervisor hosts" % self.lab)
        self.run(TESTBED, "up", env=self.env)
        for site, settings in SITES.items():
            self.hypervisor(site, settings)
        self.keys()
        self.spawn("ims", [os.path.join(self.bin, "mat-ims"), "run", "--config", self.path("ims.conf")], "ims.log")
        self.wait_for("mat-ims to listen", lambda: ":53 " in self.run("ip", "netns", "exec", self.ns("ims"), "ss", "-Hlun"), 30)
        with open(self.path("cn.conf"), "w") as f:
            f.write("[node]\nhome-address = %s\nuplink = eth0\ndomain-prefix = 198.51.100.0/24\n" % CN_HOA
                    + "control-socket = %s/cn.sock\nstate-directory = %s/cn-state\n" % (self.work, self.work)
                    + "[ims]\nserver = 192.0.2.132\nzone = mat.example.\nkey-file = %s/cn.key\nrecord-ttl = 5\n" % self.work)
        self.spawn("cn", [os.path.join(self.bin, "matd"), "run", "--config", self.path("cn.conf")], "cn.log")
        self.wait_for("the CN's matd to register", lambda: "registered " in self.read("cn.log"), 60)

    def hypervisor(self, site, settings):
        node = "hv" + site
        name = self.ns(node)
        self.run("ip", "netns", "add", name)
        self.hosts.append(name)
        port = name[:15]
        script = "\n".join([
            "link set lo up",
            "link add br0 type bridge",
            "link set br0 up",
            "addr add %s dev br0" % settings["hv"],
            "route add default via %s" % settings["gw"],
            "tuntap add tap0 mode tap",
            "link set tap0 master br0 up",
        ]) + "\n"
        self.run("ip", "link", "add", "up0", "netns", name, "type", "veth", "peer", "name", port, "netns", self.ns("router"))
        self.run("ip", "-n", self.ns("router"), "link", "set", port, "master", settings["bridge"], "up")
        self.run("ip", "-n", name, "-batch", "-", input=script + "link set up0 master br0 up\n")
        moa = settings["moa"]
        self.spawn(node, ["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", "--user=root",
                          "--interface=br0", "--bind-interfaces", "--dhcp-authoritative", "--log-dhcp",
                          # No ping of the address before offering it (a second or more
                          # each time): the address is reserved for the guest's MAC.
                          "--no-ping",
                          "--dhcp-range=%s,%s,%s,1h" % (moa, moa, settings["mask"]),
                          "--group=root", "--dhcp-host=%s,%s" % (GUEST_MAC, moa),
                          "--dhcp-option=option:router,%s" % settings["gw"],
                          "--dhcp-leasefile=%s" % self.path("leases-" + site)], "dnsmasq-%s.log" % site)

    def keys(self):
        for node, hoa in (("guest", GUEST_HOA), ("cn", CN_HOA)):
            name = ".".join(reversed(hoa.split("."))) + ".hoa.mat.example."
            key = self.run(os.path.join(self.bin, "mat-ims"), "keygen", name)
            with open(os.open(self.path(node + ".key"), os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
                f.write(key)
        with open(self.path("ims.conf"), "w") as f:
            f.write("[server]\nlisten = 192.0.2.132:53\nstate-directory = %s\n" % self.ims_state
                    + "key-file = %s/guest.key\nkey-file = %s/cn.key\n" % (self.work, self.work)
                    + "[zone]\nname = mat.example.\nns = ns.mat.example.\nglue = ns.mat.example. 192.0.2.132\n")

    def config_disk(self):
        """The run's configuration, the guest's /etc/mat-run: its key, matd.conf, the scripts."""
        tree = self.path("config")
        os.makedirs(tree)
        for name in ("guest-run", "udhcpc.script", "readdress"):
            shutil.copy2(os.path.join(GUEST_FILES, name), tree)
        for name in ("handoff.py", "labpeer.py"):
            shutil.copy2(os.path.join(LAB_TOOLS, name), tree)
        shutil.copy2(self.path("guest.key"), os.path.join(tree, "guest.key"))
        with open(os.path.join(tree, "env"), "w") as f:
            f.write("HOA=%s\nFLOW_PORT=%d\nECHO_PORT=%d\n" % (GUEST_HOA, FLOW_PORT, ECHO_PORT))
        with open(os.path.join(tree, "matd.conf"), "w") as f:
            f.write("[node]\nhome-address = %s\nuplink = eth0\ndomain-prefix = 198.51.100.0/24\n" % GUEST_HOA
                    + "control-socket = /run/mat/control.sock\nstate-directory = /run/mat/state\n"
                    + ("on-notify-peers = /etc/mat-run/readdress\n" if self.readdress else "")
                    + "[ims]\nserver = 192.0.2.132\nzone = mat.example.\nkey-file = /etc/mat-run/guest.key\nrecord-ttl = 5\n")
        image = self.path("config.img")
        self.run("mkfs.ext4", "-q", "-F", "-L", "mat-run", "-d", tree, image, "16M")
        return image

    def qemu(self, site, incoming=None):
        node = "hv" + site
        args = ["qemu-system-x86_64", "-accel", "tcg", "-m", str(GUEST_MEMORY_MB), "-smp", "1",
                "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
                "-kernel", os.path.join(self.base, "vmlinuz"), "-initrd", os.path.join(self.base, "initrd.img"),
                "-append", "root=/dev/vda ro console=ttyS0 net.ifnames=0 init=/sbin/mat-vm-init panic=-1 quiet",
                # Read-only on both hosts, so both QEMUs can open the same files.
                "-drive", "file=%s,format=raw,if=virtio,readonly=on" % os.path.join(self.base, "root.img"),
                "-drive", "file=%s,format=raw,if=virtio,readonly=on" % self.mat_image,
                "-drive", "file=%s,format=raw,if=virtio,readonly=on" % self.config_image,
                "-netdev", "tap,id=net0,ifname=tap0,script=no,downscript=no",
                "-device", "virtio-net-pci,netdev=net0,mac=%s" % GUEST_MAC,
                "-device", "virtio-rng-pci",
                "-serial", "file:%s" % self.path("console-%s.log" % site),
                "-qmp", "unix:%s,server=on,wait=off" % self.path("qmp-%s.sock" % site)]
        if incoming:
            args += ["-incoming", incoming]
        return self.spawn(node, args, "qemu-%s.log" % site)

    def down(self):
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for name in self.hosts:
            subprocess.run(["ip", "netns", "del", name], stderr=subprocess.DEVNULL)
        subprocess.run([TESTBED, "down"], env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if self.keep:
            log("files kept in %s" % self.work)
        else:
            shutil.rmtree(self.work, ignore_errors=True)
        shutil.rmtree(self.ims_state, ignore_errors=True)

    # ------------------------------------------------------------------ the migration

    def migrate_under_flow(self):
        """Boots the guest on A, starts the flow and the probes, migrates to B; returns the figures."""
        self.config_image = self.config_disk()
        started = time.monotonic()
        log("booting the guest on host A (software emulation: half a minute or more)")
        source = self.qemu("a")
        self.wait_for("the guest's DHCP lease on site A", lambda: "udhcpc: eth0 %s/" % SITES["a"]["moa"] in self.read("console-a.log"), 300)
        log("guest up with MoA %s after %.0f s; waiting for matd to register" % (SITES["a"]["moa"], time.monotonic() - started))
        self.wait_for("matd in the guest to register", lambda: "registered " in self.read("console-a.log"), 120)
        # Both the echo and the TCP receiver say "listening".
        self.wait_for("the guest's echo and receiver", lambda: self.read("console-a.log").count("listening") >= 2, 120)
        destination = self.qemu("b", incoming="tcp:%s:%d" % (SITES["b"]["hv"].split("/")[0], MIGRATION_PORT))
        watch = ConsoleWatch(self.path("console-b.log"))
        qmp_a, qmp_b = QMP(self.path("qmp-a.sock")), QMP(self.path("qmp-b.sock"))
        self.wait_for("QEMU on host B to wait for the migration",
                      lambda: qmp_b.command("query-status")["status"] == "inmigrate", 60)

        data = os.urandom(FLOW_MB << 20)
        with open(self.path("flow"), "wb") as f:
            f.write(data)
        expected = hashlib.sha256(data).hexdigest()
        seconds = FLOW_MB / FLOW_RATE + 20
        probe = subprocess.Popen(["ip", "netns", "exec", self.ns("cn"), "python3", handoff.SELF, "probe",
                                  GUEST_HOA, str(ECHO_PORT), str(seconds)], stdout=subprocess.PIPE, text=True)
        self.processes.append(probe)
        sender = self.spawn("cn", ["python3", os.path.join(LAB_TOOLS, "labpeer.py"), "tcp-connect", GUEST_HOA,
                                   str(FLOW_PORT), "send", self.path("flow"), str(FLOW_RATE)], "sender.log")
        flow_started = time.monotonic()
        log("flow CN -> guest HoA: %d MB at %d MB/s, probes every 10 ms; migrating at t=%.0f s" % (FLOW_MB, FLOW_RATE, MIGRATE_AT))
        time.sleep(max(0, flow_started + MIGRATE_AT - time.monotonic()))
        # As fast as the lab's links go: the default 128 MiB/s would stretch the copy.
        qmp_a.command("migrate-set-parameters", **{"max-bandwidth": 1 << 30})
        migrate_at = time.monotonic()
        qmp_a.command("migrate", uri="tcp:%s:%d" % (SITES["b"]["hv"].split("/")[0], MIGRATION_PORT))
        info = self.wait_for("the migration to complete", lambda: self.migration_done(qmp_a), 180, poll=0.05)
        switched_at = time.monotonic()
        log("migration %s in %d ms, downtime %d ms (QEMU's figures)" % (info["status"], info.get("total-time", -1), info.get("downtime", -1)))
        if info["status"] != "completed":
            raise Failure("the migration ended %s: %s" % (info["status"], info.get("error-desc", "")))
        qmp_a.command("quit")
        qmp_a.close()
        source.wait(timeout=30)
        status = qmp_b.command("query-status")["status"]
        if status != "running":
            raise Failure("QEMU on host B is %s, not running" % status)
        qmp_b.close()

        # Nothing acts on the guest from here: it must readdress by itself.
        self.wait_for("the guest's site B address", lambda: "udhcpc: eth0 %s/" % SITES["b"]["moa"] in self.read("console-b.log"), 60)
        readdressed_at = time.monotonic()
        log("guest took %s %.1f s after the switch" % (SITES["b"]["moa"], readdressed_at - switched_at))
        try:
            sender.wait(timeout=seconds + 60)
        except subprocess.TimeoutExpired:
            raise Failure("the flow did not finish (see sender.log, console-b.log)")
        if sender.returncode != 0:
            raise Failure("the sender failed (a reset?):\n%s" % self.read("sender.log"))
        line = self.wait_for("the guest's checksum of the flow",
                             lambda: next((l for l in self.read("console-b.log").splitlines() if l.startswith("guest: flow ")), None), 60)
        _, _, status, digest, size = line.split()
        identical = status == "0" and digest == expected and int(size) == len(data)
        out, _ = probe.communicate(timeout=seconds + 60)
        received = json.loads(out)["received"]
        gap, recover = self.gap(received, migrate_at)
        watch.stop()
        timeline = [("migration started", migrate_at), ("QEMU: migration completed", switched_at)]
        for label, text in (("guest: announcement seen, renewal started", "renewing the address"),
                            ("guest: site B's lease", "udhcpc: eth0 %s/" % SITES["b"]["moa"]),
                            ("guest: matd on the new MoA", "mobile addresses now %s" % SITES["b"]["moa"]),
                            ("guest: registered with the IMS", "registered %s -> %s" % (GUEST_HOA, SITES["b"]["moa"]))):
            timeline.append((label, watch.first(text, after=migrate_at)))
        timeline.append(("CN: probe echoes back", migrate_at + recover))
        console = self.read("console-b.log")
        return {
            "downtime_ms": info.get("downtime"), "total_ms": info.get("total-time"),
            "gap_ms": gap, "recover_s": recover, "identical": identical,
            "readdress_s": readdressed_at - switched_at,
            "announced": "live migration announced; renewing the address" in console,
            "moved": "mobile addresses now %s" % SITES["b"]["moa"] in console,
            "sender": self.read("sender.log").strip(), "guest": line,
            "timeline": [(label, None if at is None else at - migrate_at) for label, at in timeline],
            "echoes": [t - migrate_at for t in received],
        }

    @staticmethod
    def migration_done(qmp):
        info = qmp.command("query-migrate")
        return info if info.get("status") in ("completed", "failed", "cancelled") else None

    @staticmethod
    def gap(received, migrate_at):
        """The largest silence in the echoes from the migration's start on, and when it
        ended (seconds after the migration started): traffic is back."""
        times = [t for t in received if t >= migrate_at - 0.5]
        if len(times) < 2:
            return float("inf"), float("inf")
        widest = max(zip(times, times[1:]), key=lambda pair: pair[1] - pair[0])
        return (widest[1] - widest[0]) * 1000, widest[1] - migrate_at


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["check", "bench", "demo"])
    parser.add_argument("--out", default="/tmp/mat-demo", help="demo: where the chart goes")
    parser.add_argument("--keep", action="store_true", help="keep the lab's files (consoles, logs)")
    parser.add_argument("--no-readdress", action="store_true", help="the guest's matd without on-notify-peers (a control run)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("vm-lab: needs root (network namespaces, TAP devices)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    lab = VMLab(keep=args.keep, readdress=not args.no_readdress)
    try:
        lab.build()
        lab.up()
        figures = lab.migrate_under_flow()
    except Failure as failure:
        lab.keep = True
        log("FAILED: %s" % failure)
        lab.down()
        sys.exit(1)
    except BaseException:
        lab.keep = True
        lab.down()
        raise
    log("sender: %s; %s" % (figures["sender"], figures["guest"]))
    log("largest gap in the probe stream %.0f ms; traffic back %.2f s after the migration started"
        % (figures["gap_ms"], figures["recover_s"]))
    log("timeline (s after the migration started; guest lines as they reached the console):")
    for label, at in figures["timeline"]:
        log("  %7s  %s" % ("-" if at is None else "%.2f" % at, label))
    checks = [
        ("QEMU's migration completed (downtime %s ms, %s ms in all)" % (figures["downtime_ms"], figures["total_ms"]), True),
        ("matd in the guest saw the announcement and ran on-notify-peers", figures["announced"]),
        ("the guest took site B's address by itself (%.1f s after the switch)" % figures["readdress_s"], True),
        ("matd moved to site B's MoA", figures["moved"]),
        ("the flow arrived byte-identical, no reset", figures["identical"]),
    ]
    failed = [text for text, ok in checks if not ok]
    for text, ok in checks:
        print("%s: %s" % ("PASS" if ok else "FAIL", text), file=sys.stderr, flush=True)
    lab.keep = lab.keep or bool(failed)
    lab.down()
    if args.mode == "demo":
        os.makedirs(args.out, exist_ok=True)
        chart = os.path.join(args.out, "vm-migration.svg")
        write_chart(chart, figures)
        print("chart: %s" % chart, flush=True)
    if args.mode == "bench":
        print("bench: vm-migration downtime_ms=%d gap_ms=%.0f recover_s=%.2f identical=%s"
              % (figures["downtime_ms"], figures["gap_ms"], figures["recover_s"], "yes" if figures["identical"] else "no"), flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
