"""HTTP/1.1 over a TCP socket, as little of it as the controller's JSON API needs: one
request at a time on a kept connection, a body by ``Content-Length`` or chunked.

Not ``http.client``: it imports ``email.parser`` and ``ssl``, which cost a plugin start
about 25 ms (measured; the README's CNI section has the figures), more than all the
rest of the plugin's start. Plain http only: the controller is local to the host.
"""

from __future__ import annotations

import socket

#: an answer's head (status line and headers) longer than this is not the controller's
MAX_HEAD = 64 * 1024
#: nor is a body longer than this (a GC's list of a host's compartments fits)
MAX_BODY = 64 * 1024 * 1024


class WireError(Exception):
    """The exchange failed: the connection, or an answer that is not HTTP."""


class Closed(WireError):
    """The peer closed a kept connection before answering (worth one retry)."""


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.sock: socket.socket | None = None
        self.buf = b""

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.buf = b""

    def exchange(
        self, method: str, target: str, headers: dict[str, str], body: bytes | None, timeout: float
    ) -> tuple[int, bytes]:
        """(status, body). OSError (refused, timed out...) and WireError leave as they are;
        the connection is closed after either."""
        reused = self.sock is not None
        try:
            if self.sock is None:
                self.sock = socket.create_connection((self.host, self.port), timeout)
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            else:
                self.sock.settimeout(timeout)
            head = [f"{method} {target} HTTP/1.1", f"Host: {self.host}:{self.port}"]
            head += [f"{k}: {v}" for k, v in headers.items()]
            head.append(f"Content-Length: {len(body or b'')}")
            self.sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (body or b""))
            status, fields = self._head(reused)
            data = b"" if status in (204, 304) or status < 200 else self._body(fields)
        except BaseException:
            self.close()
            raise
        if fields.get("connection", "").lower() == "close":
            self.close()
        return status, data

    def _recv(self) -> bytes:
        assert self.sock is not None
        chunk = self.sock.recv(65536)
        if not chunk:
            raise WireError("the controller closed the connection mid-answer")
        return chunk

    def _head(self, reused: bool) -> tuple[int, dict[str, str]]:
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > MAX_HEAD:
                raise WireError("an answer whose head is too long: not the controller")
            try:
                self.buf += self._recv()
            except WireError:
                if reused and not self.buf:
                    raise Closed("the kept connection was closed") from None
                raise
        raw, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise WireError(f"not an HTTP answer: {lines[0][:80]!r}")
        fields = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        return int(parts[1]), fields

    def _take(self, n: int) -> bytes:
        if n > MAX_BODY:
            raise WireError(f"an answer of {n} bytes: too long")
        while len(self.buf) < n:
            self.buf += self._recv()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self.buf += self._recv()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _body(self, fields: dict[str, str]) -> bytes:
        if "chunked" in fields.get("transfer-encoding", "").lower():
            out = b""
            while True:
                try:
                    size = int(self._line().split(b";", 1)[0].strip() or b"0", 16)
                except ValueError:
                    raise WireError("a bad chunk size") from None
                if size == 0:
                    while self._line():  # trailers, up to the blank line
                        pass
                    return out
                out += self._take(size)
                self._take(2)
                if len(out) > MAX_BODY:
                    raise WireError("an answer too long")
        if "content-length" in fields:
            length = fields["content-length"]
            if not length.isdigit():
                raise WireError("a bad Content-Length")
            return self._take(int(length))
        # neither: the body lasts until the connection closes
        out = self.buf
        try:
            while True:
                out += self._recv()
        except WireError:
            pass
        self.close()
        return out
