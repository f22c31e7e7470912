"""Real probes for the ACL tests, run inside a namespace (``nsenter --net``).

``probe.py serve TCP_PORTS UDP_PORTS``: echo servers on each port (comma lists): TCP
answers ``PEER_IP`` and closes, UDP answers each datagram with ``PEER_IP``; prints
``ready``.
``probe.py ask JSON``: JSON is a list of ``[protocol, ip, port]`` (protocol tcp, udp
or icmp; port 0 for icmp); probes them all at once (2 s each) and prints a JSON list
of booleans: answered or not.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

TIMEOUT = 2.0


def serve(tcp: list[int], udp: list[int]) -> None:
    def tcp_loop(port: int) -> None:
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("0.0.0.0", port))
        srv.listen(64)
        while True:
            conn, (peer, _) = srv.accept()
            with conn:
                conn.sendall(f"{peer}\n".encode())

    def udp_loop(port: int) -> None:
        srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        srv.bind(("0.0.0.0", port))
        while True:
            _, (peer, pport) = srv.recvfrom(512)
            srv.sendto(f"{peer}\n".encode(), (peer, pport))

    for port in tcp:
        threading.Thread(target=tcp_loop, args=(port,), daemon=True).start()
    for port in udp:
        threading.Thread(target=udp_loop, args=(port,), daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()


def one(protocol: str, ip: str, port: int) -> bool:
    try:
        if protocol == "tcp":
            with socket.create_connection((ip, port), timeout=TIMEOUT) as c:
                c.settimeout(TIMEOUT)
                return bool(c.recv(64))
        if protocol == "udp":
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(TIMEOUT)
                s.sendto(b"x", (ip, port))
                return bool(s.recv(64))
        r = subprocess.run(["ping", "-c", "1", "-W", "2", ip], capture_output=True)
        return r.returncode == 0
    except OSError:
        return False


def ask(probes: list[list[object]]) -> list[bool]:
    with ThreadPoolExecutor(max_workers=max(1, len(probes))) as pool:
        futures = [pool.submit(one, str(p), str(ip), int(str(port))) for p, ip, port in probes]
        return [f.result() for f in futures]


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        ports = [[int(p) for p in a.split(",") if p] for a in sys.argv[2:4]]
        serve(ports[0], ports[1])
    else:
        print(json.dumps(ask(json.loads(sys.argv[2]))))
