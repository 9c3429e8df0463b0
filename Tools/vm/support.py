"""Pieces of the VM lab (Tools/vm/lab.py) that know nothing of its layout: QEMU's machine
protocol, a console file read as it is written, and the demo's chart."""
import json
import socket
import threading
import time


class Failure(Exception):
    pass


class QMP:
    """QEMU's machine protocol on a unix socket: one command at a time, events skipped."""

    def __init__(self, path, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise Failure("no QMP socket at %s" % path)
                time.sleep(0.1)
        self.sock.settimeout(60)
        self.buffer = b""
        self.read()  # the greeting
        self.command("qmp_capabilities")

    def read(self):
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise Failure("QMP connection closed")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def command(self, name, **arguments):
        message = {"execute": name}
        if arguments:
            message["arguments"] = arguments
        self.sock.sendall(json.dumps(message).encode() + b"\n")
        while True:
            reply = self.read()
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise Failure("QMP %s: %s" % (name, reply["error"].get("desc")))

    def close(self):
        self.sock.close()


class ConsoleWatch:
    """Reads a console file as QEMU writes it and notes when each line showed up (the
    guest's own clock is not worth much under emulation): the timeline of a migration."""

    def __init__(self, path):
        self.path, self.lines, self.stopped = path, [], threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        partial, offset = b"", 0
        while not self.stopped.is_set():
            try:
                with open(self.path, "rb") as f:
                    f.seek(offset)
                    data = f.read()
            except FileNotFoundError:
                data = b""
            offset += len(data)
            now = time.monotonic()
            *complete, partial = (partial + data).split(b"\n")
            self.lines += [(now, line.decode(errors="replace").rstrip("\r")) for line in complete]
            time.sleep(0.01)

    def first(self, text, after=0.0):
        """When the first line containing `text` showed up (after `after`), or None."""
        return next((t for t, line in self.lines if text in line and t >= after), None)

    def stop(self):
        self.stopped.set()
        self.thread.join()


def write_chart(path, figures):
    """Probe echoes per second (10 ms probes, 100 ms bins) around the migration, with the
    timeline's events marked."""
    width, height, left, top, bottom = 900, 330, 60, 40, 60
    start, end = -3.0, 8.0
    bins = {}
    for t in figures["echoes"]:
        if start <= t < end:
            bins[int((t - start) * 10)] = bins.get(int((t - start) * 10), 0) + 1
    count = int((end - start) * 10)
    plot_w, plot_h = width - left - 20, height - top - bottom
    x = lambda t: left + (t - start) / (end - start) * plot_w
    y = lambda rate: top + plot_h - min(rate, 120) / 120 * plot_h
    parts = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">' % (width, height),
             '<rect width="100%" height="100%" fill="white"/>',
             '<text x="%d" y="18" font-size="14">Probe echoes per second at the CN (a probe every 10 ms) while QEMU migrates the guest:'
             ' downtime %d ms, gap %.0f ms</text>' % (left, figures["downtime_ms"], figures["gap_ms"]),
             '<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>' % (left, top + plot_h, left + plot_w, top + plot_h),
             '<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>' % (left, top, left, top + plot_h),
             '<text x="5" y="%d">100/s</text>' % (y(100) + 4)]
    points = " ".join("%.1f,%.1f" % (x(start + (i + 0.5) / 10), y(bins.get(i, 0) * 10)) for i in range(count))
    parts.append('<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="%s"/>' % points)
    for index, (label, at) in enumerate(figures["timeline"]):
        if at is None:
            continue
        parts.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="red" stroke-dasharray="4,3"/>' % (x(at), top, x(at), top + plot_h))
        parts.append('<text x="%.1f" y="%d" fill="red" font-size="10">%s (%.2f s)</text>'
                     % (x(at) + 3, top + 12 + 11 * index, label, at))
    for second in range(int(start), int(end) + 1):
        parts.append('<text x="%.1f" y="%d">%d s</text>' % (x(second) - 8, top + plot_h + 16, second))
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts))
