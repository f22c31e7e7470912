"""The plugin's HTTP server: libnetwork's JSON calls (``POST /Plugin.Activate``,
``/NetworkDriver.Join``, ...) on the unix socket ``SOCKET_DIR/NAME.sock``, where
dockerd finds ``NAME`` for ``-d NAME`` and ``--ipam-driver NAME``.

Threads (``socketserver.ThreadingMixIn``), not asyncio: every call is a few blocking
requests to the controller through the CNI plugin's standard-library client
(:mod:`cni.api`), one of which waits for this host's agent; dockerd makes its calls
one container at a time per network operation but several containers at once, and a
thread per call lets one container's wait not hold another's. An asyncio server would
need an async client of its own (a second REST client) or ``to_thread`` around this
one, which is threads again. Calls are few (a handful per ``docker run``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socketserver
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import structlog

from .driver import Driver
from .errors import PluginError

CONTENT_TYPE = "application/vnd.docker.plugins.v1.2+json"
MAX_BODY = 1024 * 1024

log = structlog.get_logger("plexus.dockerplugin")


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: Path, driver: Driver) -> None:
        self.driver = driver
        super().__init__(str(path), Handler)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def do_POST(self) -> None:  # http.server names its methods so
        started = time.monotonic()
        call = self.path.lstrip("/")
        status, doc = 200, {}
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                raise PluginError(f"a request of {length} bytes: too long")
            raw = self.rfile.read(length) if length else b""
            req = json.loads(raw) if raw.strip() else {}
            if not isinstance(req, dict):
                raise PluginError("the request is not a JSON object")
            doc = self.server.driver.call(call, req)
        except PluginError as e:
            status, doc = 500, {"Err": e.reason}
        except ValueError as e:
            status, doc = 500, {"Err": f"{call}: a request that is not JSON: {e}"}
        except Exception as e:  # a call must answer, whatever went wrong
            log.exception("docker_call_failed", call=call)
            status, doc = 500, {"Err": f"{call}: {type(e).__name__}: {e}"}
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        ms = round((time.monotonic() - started) * 1000, 2)
        if status == 200:
            log.info("docker_call", call=call, ms=ms)
        else:
            log.warning("docker_call_refused", call=call, ms=ms, err=doc.get("Err"))

    def address_string(self) -> str:
        return "dockerd"  # a unix socket's peer has no address

    def log_message(self, format: str, *args: Any) -> None:
        pass  # do_POST logs each call once, structured


def serve(name: str, socket_dir: Path, driver: Driver) -> None:
    """Serve until SIGTERM or SIGINT; the socket is removed on the way out (a socket
    left there would make dockerd wait for a plugin that is gone)."""
    socket_dir.mkdir(parents=True, exist_ok=True)
    path = socket_dir / f"{name}.sock"
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a previous run's: bind would fail on it
    server = Server(path, driver)
    os.chmod(path, 0o660)

    def stop(signum: int, frame: Any) -> None:
        # shutdown() waits for serve_forever, which runs in this thread: not from here
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    log.info("docker_plugin_serving", socket=str(path), host=driver.host)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        log.info("docker_plugin_stopped", socket=str(path))
