"""Test support: a real Mosquitto on a free loopback port, an in-process controller,
and simulated agents (real MQTT clients speaking the wire contract)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest

import proto
from broker import mosquitto
from controller.config import ControllerSettings
from controller.daemon import build
from controller.runtime import Runtime
from lab.ports import free_port
from lab.records import record_pid
from proto import topics
from proto.mqtt import BrokerURL, cancel_and_wait, client

PLEXUS = str(Path(sys.executable).parent / "plexus")
if not Path(PLEXUS).exists():
    PLEXUS = shutil.which("plexus") or "plexus"


def stop_process(proc: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; reaped either way."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


async def wait_for(
    check: Callable[[], object | Awaitable[object]],
    timeout: float = 10.0,
    what: str = "the condition",
    interval: float = 0.01,
) -> Any:
    """Until ``check()`` (or what it returns, when awaitable) is true; returns that value.
    Raises TimeoutError naming ``what`` after ``timeout`` s. Tests wait for the event —
    a log line, a status, a message — not for a time that a busy machine may exceed."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:g} s")
        await asyncio.sleep(interval)


class LogWatch:
    """The lines a process appends to its log file from now on (Mosquitto's
    ``Reloading config.``, ``Client h1 disconnected.``; an agent's JSON lines)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def _new(self) -> list[bytes]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        return data.split(b"\n")[:-1]  # complete lines only

    def lines(self) -> list[str]:
        """Complete lines written since the watch began (or since the last match)."""
        return [ln.decode(errors="replace") for ln in self._new()]

    def find(self, match: str | Callable[[str], bool]) -> str | None:
        """The first new line containing ``match`` (or for which it is true); the watch
        then goes on after it."""
        consumed = 0
        for raw in self._new():
            consumed += len(raw) + 1
            line = raw.decode(errors="replace")
            if match in line if isinstance(match, str) else match(line):
                self.offset += consumed
                return line
        return None

    async def wait(self, match: str | Callable[[str], bool], timeout: float = 10.0) -> str:
        line: str = await wait_for(
            lambda: self.find(match), timeout, f"{match!r} in {self.path.name}"
        )
        return line


def need(binary: str) -> str:
    path = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/sbin")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{binary} is not installed (.ci/run installs it)")
        pytest.skip(f"{binary} is not installed")
    return path


class Mosquitto:
    """A real broker, no persistence, TCP_NODELAY, on a free loopback port."""

    def __init__(self, workdir: Path) -> None:
        self.binary = need("mosquitto")
        self.workdir = workdir
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            mosquitto.config([("127.0.0.1", self.port)], workdir / "mosquitto.log")
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        record_pid(self.proc.pid)
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@contextlib.asynccontextmanager
async def mqtt_client(url: str, name: str = "test") -> AsyncIterator[aiomqtt.Client]:
    async with client(BrokerURL.parse(url), f"{name}-{os.getpid()}-{time.monotonic_ns()}") as c:
        yield c


async def retained(url: str, filt: str, timeout: float = 10.0) -> dict[str, bytes]:
    """Every retained message under ``filt``, as a plain subscriber sees it: all of them,
    not what arrived within some time — the broker sends them when the subscription is
    made, before a sentinel the probe publishes after it (the controller's fence)."""
    out: dict[str, bytes] = {}
    fence = f"plexus-test/fence/{os.getpid()}-{time.monotonic_ns()}"
    async with mqtt_client(url, "probe") as c:
        await c.subscribe(filt, qos=1)
        await c.subscribe(fence, qos=1)
        await c.publish(fence, b"", qos=1)
        async with asyncio.timeout(timeout):
            async for msg in c.messages:
                if str(msg.topic) == fence:
                    return out
                if msg.retain and msg.payload:
                    out[str(msg.topic)] = bytes(msg.payload)  # type: ignore[arg-type]
    raise AssertionError("unreachable")


class ControllerProcess:
    """``plexus controller`` as a real process on a real socket."""

    def __init__(
        self,
        broker_url: str,
        store: Path | str,
        log: Path,
        extra: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.env = {**os.environ, **(env or {})}
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [
            PLEXUS,
            "controller",
            "--broker",
            broker_url,
            "--store",
            str(store),
            "--listen",
            f"127.0.0.1:{self.port}",
            "--log-format",
            "json",
            "--snapshot-interval",
            "0.05",
            *(extra or []),
        ]
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=log, env=self.env)
        record_pid(self.proc.pid)  # removed by scripts/cleanup-records after a killed run
        try:
            self._wait_healthy()
        except BaseException:
            self.kill()  # never leave a process behind a failed start
            raise

    def _wait_healthy(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"controller exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).json()["broker_connected"]:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError("controller did not come up")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


@dataclass
class InProcessController:
    rt: Runtime
    http: httpx.AsyncClient
    task: asyncio.Task[None]


@contextlib.asynccontextmanager
async def in_process_controller(
    broker_url: str, store: Path, snapshot_interval: float = 0.05
) -> AsyncIterator[InProcessController]:
    settings = ControllerSettings(
        broker=broker_url, store=str(store), snapshot_interval=snapshot_interval
    )
    rt, server = build(settings)
    task = asyncio.create_task(rt.bus.run(), name="test-controller-bus")
    transport = httpx.ASGITransport(app=server.config.app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://ctl") as http:
            async with asyncio.timeout(10):
                await rt.bus.connected.wait()
            yield InProcessController(rt, http, task)
    finally:
        await cancel_and_wait(task)
        rt.controller.store.close()


_CRASHER = """
import asyncio, sys, aiomqtt, proto
from proto import topics
from proto.mqtt import BrokerURL, cancel_and_wait, client
host, url = sys.argv[1], sys.argv[2]
def status(state):
    return proto.encode(proto.HostStatus(host=host, state=state, version="sim"))
async def main():
    will = aiomqtt.Will(topics.host_status(host), status("offline"), 1, True)
    async with client(BrokerURL.parse(url), "crasher-" + host, will=will, keepalive=2) as c:
        await c.publish(topics.host_status(host), status("online"), qos=1, retain=True)
        print("up", flush=True)
        await asyncio.sleep(3600)
asyncio.run(main())
"""


def crashing_agent(host: str, url: str) -> subprocess.Popen[str]:
    """An agent process that reports online and can then be SIGKILLed (its Last Will)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _CRASHER, host, url], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "up"
    return proc


@dataclass
class SimAgent:
    """Speaks the agent side of the contract without a kernel: reports online, follows
    its desired document and the tables of the networks it names, and reports the
    generations it holds. ``frozen=True`` makes it never report progress."""

    host: str
    url: str
    vtep: str
    frozen: bool = False
    desired: proto.HostDesired | None = None
    tables: dict[str, dict[str, proto.EndpointRecord]] = field(default_factory=dict)
    gens: dict[str, int] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None
    _ready: asyncio.Event = field(default_factory=asyncio.Event)
    _known: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        """Returns once the controller knows the host: its first desired document (the
        controller publishes one, empty, for a host it has just heard of) arrived."""
        self._task = asyncio.create_task(self._run(), name=f"sim-agent-{self.host}")
        async with asyncio.timeout(10):
            await self._ready.wait()
            await self._known.wait()

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)

    def status(self, state: str = "online") -> bytes:
        applied = 0 if self.frozen or self.desired is None else self.desired.generation
        return proto.encode(
            proto.HostStatus(
                host=self.host,
                state=state,
                version="sim",
                vtep=self.vtep,  # type: ignore[arg-type]
                desired_generation=applied,
                networks={} if self.frozen else dict(self.gens),
            )
        )

    async def _run(self) -> None:
        will = aiomqtt.Will(topics.host_status(self.host), self.status("offline"), 1, True)
        # its acknowledgements wait on the test's event loop, which a storm of writes in
        # the same loop can keep seconds behind: a longer wait than a real agent's
        async with client(
            BrokerURL.parse(self.url),
            f"sim-{self.host}-{time.monotonic_ns()}",
            will=will,
            timeout=30,
        ) as c:
            await c.subscribe(topics.host_desired(self.host), qos=1)
            await c.publish(topics.host_status(self.host), self.status(), qos=1, retain=True)
            self._ready.set()
            following: set[str] = set()
            decoder = proto.DesiredDecoder()  # the agent's: unchanged compartments reused
            async for msg in c.messages:
                t = topics.parse(str(msg.topic))
                payload = bytes(msg.payload)  # type: ignore[arg-type]
                if not payload:
                    if not len(c.messages):
                        await c.publish(
                            topics.host_status(self.host), self.status(), qos=1, retain=True
                        )
                    continue
                if t.kind == "host_desired":
                    self.desired = decoder(payload, proto.HostDesired)
                    self._known.set()
                    want = {n.id for n in self.desired.networks if n.mode in proto.TABLE_MODES}
                    for net in want - following:
                        await c.subscribe(topics.network_snapshots(net), qos=1)
                        await c.subscribe(topics.network_changes(net), qos=1)
                    for net in following - want:
                        await c.unsubscribe(topics.network_snapshots(net))
                        await c.unsubscribe(topics.network_changes(net))
                        self.tables.pop(net, None)
                        self.gens.pop(net, None)
                    following = want
                elif t.kind == "network_snapshot" and t.network in following:
                    snap = proto.decode(payload, proto.NetworkSnapshot)
                    if snap.shards == 1 and snap.generation > self.gens.get(snap.network, 0):
                        self.tables[snap.network] = {r.id: r for r in snap.records}
                        self.gens[snap.network] = snap.generation
                elif t.kind == "network_changes" and t.network in following:
                    ch = proto.decode(payload, proto.NetworkChange)
                    have = self.gens.get(ch.network)
                    if have is not None and ch.generation == have + 1:
                        table = self.tables[ch.network]
                        for r in ch.upserts:
                            table[r.id] = r
                        for d in ch.deletes:
                            table.pop(d, None)
                        self.gens[ch.network] = ch.generation
                if not len(c.messages):  # the last of a burst: one status for all of it
                    await c.publish(
                        topics.host_status(self.host), self.status(), qos=1, retain=True
                    )


def run_clean(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``argv`` run to its end, without this environment's ``PLEXUS_*`` settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLEXUS_")}
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, cwd=cwd)


#: runs ``-m MODULE`` as ``PROG ARGS`` (or, with ``--cli``, ``plexus ARGS``) in this
#: interpreter and at its exit writes the names of the modules it loaded to OUT (a
#: module blocked from loading is None in ``sys.modules``)
_LOADED = """
import atexit, json, runpy, sys
out, module, prog = sys.argv[1:4]
del sys.argv[1:4]
atexit.register(
    lambda: open(out, "w").write(json.dumps([m for m, v in sys.modules.items() if v]))
)
if sys.argv[1:2] == ["--cli"]:
    sys.argv = ["plexus", *sys.argv[2:]]
    from cli.app import main
    main()
else:
    sys.argv = [prog, *sys.argv[1:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


def modules_loaded(
    tmp_path: Path, module: str, prog: str, *argv: str
) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """A daemon's entry point (``python -m module``, as ``prog``; ``--cli`` first: the
    ``plexus`` command line ``argv``) run to its end: its outcome and every module its
    process loaded."""
    out = tmp_path / "modules.json"
    proc = run_clean([sys.executable, "-c", _LOADED, str(out), module, prog, *argv], tmp_path)
    return proc, set(json.loads(out.read_text()))
