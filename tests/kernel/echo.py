"""A tiny TCP echo of the peer's address, for tests that must see NAT at work.

``echo.py serve PORT TAG``: answers every connection with ``TAG PEER_IP`` and closes.
``echo.py ask HOST PORT``: prints the answer (exit 1 when nothing answers in 2 s).
"""

from __future__ import annotations

import socket
import sys


def serve(port: int, tag: str) -> None:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(64)
    print("ready", flush=True)
    while True:
        conn, (peer, _) = srv.accept()
        with conn:
            conn.sendall(f"{tag} {peer}\n".encode())


def ask(host: str, port: int) -> int:
    try:
        with socket.create_connection((host, port), timeout=2) as conn:
            conn.settimeout(2)
            print(conn.recv(256).decode().strip())
    except OSError as e:
        print(f"no answer: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]), sys.argv[3])
    else:
        sys.exit(ask(sys.argv[2], int(sys.argv[3])))
