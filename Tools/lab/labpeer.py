#!/usr/bin/env python3
"""Tiny traffic endpoints for the lab tests (run inside a lab namespace).

  labpeer.py tcp-listen ADDR PORT send|recv FILE [MBPS]   accept one connection, send FILE or write what arrives to FILE
  labpeer.py tcp-connect ADDR PORT send|recv FILE [MBPS]  connect (retrying up to 10 s), same
                                                   (MBPS: pace sending to that many megabytes per second)
  labpeer.py udp-echo ADDR PORT COUNT              echo COUNT datagrams back to their sender, then exit
  labpeer.py udp-ping ADDR PORT COUNT              send COUNT numbered datagrams, check every echo byte for byte
  labpeer.py udp-closed ADDR PORT                  send one datagram to a closed port, expect ECONNREFUSED

Every mode has a timeout and exits non-zero on any failure. The accepting side prints
"peer ADDR PORT" (the address the application saw) to standard error.
"""
import hashlib
import socket
import sys
import time

TIMEOUT = 30


def family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def pump(conn, mode, path, rate=None):
    if mode == "send":
        started, sent = time.monotonic(), 0
        with open(path, "rb") as f:
            while chunk := f.read(1 << 16):
                conn.sendall(chunk)
                sent += len(chunk)
                if rate:
                    ahead = sent / (float(rate) * 1e6) - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
        conn.shutdown(socket.SHUT_WR)
        conn.recv(1)  # wait for the receiver to close: every byte is in
    else:
        with open(path, "wb") as f:
            while chunk := conn.recv(1 << 16):
                f.write(chunk)
    conn.close()


def tcp_listen(addr, port, mode, path, rate=None):
    s = socket.socket(family(addr), socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, int(port)))
    s.listen(1)
    s.settimeout(TIMEOUT)
    print("listening", flush=True)
    conn, peer = s.accept()
    conn.settimeout(TIMEOUT)
    print(f"peer {peer[0]} {peer[1]}", file=sys.stderr, flush=True)
    pump(conn, mode, path, rate)


def tcp_connect(addr, port, mode, path, rate=None):
    deadline = time.monotonic() + 10
    while True:
        s = socket.socket(family(addr), socket.SOCK_STREAM)
        s.settimeout(TIMEOUT)
        try:
            s.connect((addr, int(port)))
            break
        except ConnectionRefusedError:
            s.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    print(f"local {s.getsockname()[0]}", file=sys.stderr, flush=True)
    pump(s, mode, path, rate)


def payload(seq):
    # 64..1400 bytes whose content depends on the sequence number.
    size = 64 + (seq * 97) % 1337
    block = hashlib.sha256(seq.to_bytes(4, "big")).digest()
    return seq.to_bytes(4, "big") + (block * (size // 32 + 1))[: size - 4]


def udp_echo(addr, port, count):
    s = socket.socket(family(addr), socket.SOCK_DGRAM)
    s.bind((addr, int(port)))
    s.settimeout(TIMEOUT)
    print("listening", flush=True)
    seen = set()
    while len(seen) < int(count):
        data, peer = s.recvfrom(65535)
        if len(seen) == 0:
            print(f"peer {peer[0]} {peer[1]}", file=sys.stderr, flush=True)
        seq = int.from_bytes(data[:4], "big")
        if data != payload(seq):
            sys.exit(f"udp-echo: datagram {seq} arrived corrupted")
        seen.add(seq)
        s.sendto(data, peer)


def udp_ping(addr, port, count):
    s = socket.socket(family(addr), socket.SOCK_DGRAM)
    s.connect((addr, int(port)))
    s.settimeout(0.5)
    for seq in range(int(count)):
        for attempt in range(20):
            try:
                s.send(payload(seq))
                data = s.recv(65535)
            except (socket.timeout, ConnectionRefusedError):
                continue  # the echo server may not be up yet
            if data != payload(seq):
                sys.exit(f"udp-ping: echo of datagram {seq} differs")
            break
        else:
            sys.exit(f"udp-ping: no echo for datagram {seq}")
    print(f"udp ok {count}")


def udp_closed(addr, port):
    s = socket.socket(family(addr), socket.SOCK_DGRAM)
    s.connect((addr, int(port)))
    s.settimeout(2)
    for _ in range(5):
        s.send(b"is anybody there")
        try:
            s.recv(100)
        except ConnectionRefusedError:
            print("refused")
            return
        except socket.timeout:
            continue
    sys.exit("udp-closed: no port unreachable came back")


def main(argv):
    modes = {"tcp-listen": tcp_listen, "tcp-connect": tcp_connect, "udp-echo": udp_echo,
             "udp-ping": udp_ping, "udp-closed": udp_closed}
    if len(argv) < 2 or argv[1] not in modes:
        sys.exit(__doc__)
    modes[argv[1]](*argv[2:])


if __name__ == "__main__":
    main(sys.argv)
