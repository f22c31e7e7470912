"""The netns lab of kernel tests: ``plexus lab``'s own underlay (hosts are namespaces
on a bridge, a free /24 of 198.18.0.0/15), each host running a real ``plexus-agent``
process that the test can kill and restart; a real Mosquitto listens on loopback (for
an in-process controller) and on the underlay (for the agents). Host ids carry a unique
suffix; everything is removed on close, even after a failure."""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

from pyroute2 import IPRoute

from agents.kernel import netns
from lab import underlay
from lab.procs import daemon_command
from lab.records import record, record_pid
from lab.spec import LabSpec, free_subnet, machine_lock
from proto import names
from tests.support import Mosquitto, need, stop_process

_seq = itertools.count(1)
ECHO = str(Path(__file__).with_name("echo.py"))


def require_root() -> None:
    import pytest

    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("kernel tests need root")
        pytest.skip("kernel tests need root")
    need("nsenter")
    need("ping")


class Lab:
    def __init__(self, workdir: Path, hosts: int = 2) -> None:
        require_root()
        self.tag = f"{os.getpid() % 10000}x{next(_seq)}"
        self.workdir = workdir
        self.broker = Mosquitto(workdir)
        # held until the underlay exists (up): another lab would choose the same /24
        self._choosing = contextlib.ExitStack()
        self._choosing.enter_context(machine_lock())
        try:
            self.spec = LabSpec.new(
                workdir / "lab",
                [f"h{i + 1}-{self.tag}" for i in range(hosts)],
                free_subnet(underlay.addresses_in_use()),
                broker_port=self.broker.port,
                controller_port=0,  # the tests run their controller in-process
            )
        except BaseException:
            self._choosing.close()
            raise
        self.hosts = self.spec.hosts
        self.hostns = {h: self.spec.host_ns(h) for h in self.hosts}
        self.vtep = {h: self.spec.vtep(h) for h in self.hosts}
        self.agents: dict[str, subprocess.Popen[bytes]] = {}
        self.servers: list[subprocess.Popen[str]] = []
        self.holders: list[subprocess.Popen[bytes]] = []
        self.extra_ns: list[str] = []
        self._closed = False

    # -- set-up --------------------------------------------------------------------

    def up(self) -> None:
        try:
            try:
                underlay.create(self.spec)
            finally:
                self._choosing.close()
            with open(self.broker.conf, "a") as conf:
                conf.write(f"listener {self.broker.port} {self.spec.gateway}\n")
            self.broker.start()
            for h in self.hosts:
                self.start_agent(h)
        except BaseException:
            self.close()
            raise

    def agent_log(self, host: str) -> Path:
        return self.workdir / f"agent-{host}.log"

    def start_agent(self, host: str) -> None:
        # enter the host's network namespace only: `ip netns exec` would also give the
        # agent a private mount namespace, hiding the compartments it creates from others
        cmd = [
            *self.nsenter(self.hostns[host]),
            *daemon_command("agent"),
            "--host-id",
            host,
            "--broker",
            self.spec.broker_url,
            "--vtep-address",
            self.vtep[host],
            "--resync-interval",
            "2",
            "--log-format",
            "json",
        ]
        # every host but the last may enslave its link "uplink" (transparent networks);
        # the last one proves that an uplink not allowed is refused
        if host != self.hosts[-1]:
            cmd += ["--allowed-uplink", "uplink"]
        # every pass on the agent's view of the kernel is checked against a full read
        env = {**os.environ, "PLEXUS_VERIFY_VIEW": "true"}
        with open(self.agent_log(host), "ab") as log:
            self.agents[host] = subprocess.Popen(cmd, stdout=log, stderr=log, env=env)
        record_pid(self.agents[host].pid)

    def diverged(self) -> list[str]:
        """``view_diverged`` lines of every agent's log: the view missed a change."""
        out = []
        for h in self.hosts:
            path = self.agent_log(h)
            if path.exists():
                out += [ln for ln in path.read_text().splitlines() if "view_diverged" in ln]
        return out

    @staticmethod
    def nsenter(ns: str) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{ns}"]

    def kill_agent(self, host: str) -> None:
        proc = self.agents.pop(host)
        proc.kill()
        proc.wait()

    def stop_agent(self, host: str) -> None:
        stop_process(self.agents.pop(host))

    # -- the world around the hosts ------------------------------------------------

    def outside(self, *addresses: str) -> str:
        """A namespace on the underlay segment playing a machine outside Plexus (a
        server, a router): addresses in the underlay's /24, e.g. ``.250``."""
        ns = f"plab-out-{self.tag}"
        record("netns", ns)
        netns.create(ns)
        self.extra_ns.append(ns)
        port = f"{self.spec.bridge}-o"
        record("link", port)
        with IPRoute() as ipr:
            ipr.link("add", ifname=port, kind="veth", peer={"ifname": "eth0", "net_ns_fd": ns})
            (idx,) = ipr.link_lookup(ifname=port)
            (br,) = ipr.link_lookup(ifname=self.spec.bridge)
            ipr.link("set", index=idx, master=br, state="up")
        with netns.iproute(ns) as inner:
            (eth0,) = inner.link_lookup(ifname="eth0")
            for a in addresses:
                inner.addr("add", index=eth0, address=a, prefixlen=self.spec.network.prefixlen)
            inner.link("set", index=eth0, state="up")
        return ns

    def serve(self, ns: str, port: int, tag: str) -> None:
        """An echo server in ``ns`` answering ``TAG PEER_IP`` (see echo.py)."""
        proc = subprocess.Popen(
            [*self.nsenter(ns), sys.executable, ECHO, "serve", str(port), tag],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.servers.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

    def ask(self, ns: str, host: str, port: int) -> str | None:
        """What the echo server at host:port says to a client in ``ns`` (None: nothing)."""
        r = subprocess.run(
            [*self.nsenter(ns), sys.executable, ECHO, "ask", host, str(port)],
            capture_output=True,
            text=True,
        )
        return r.stdout.strip() if r.returncode == 0 else None

    def runtime_netns(self, held: bool = False) -> str:
        """A network namespace as a container runtime makes one, Plexus's to plumb
        into but not to own: bound at ``/run/netns/NAME`` (podman's kind), or with
        ``held``, only held by a process (``/proc/PID/ns/net``, containerd's kind: it
        vanishes when the process is killed). Its path; removed on close."""
        if held:
            proc = subprocess.Popen(["unshare", "--net", "sleep", "infinity"])
            record_pid(proc.pid)
            self.holders.append(proc)
            path = f"/proc/{proc.pid}/ns/net"
            deadline = time.monotonic() + 10
            while os.stat(path).st_ino == os.stat("/proc/self/ns/net").st_ino:
                assert time.monotonic() < deadline, "unshare made no namespace"
                time.sleep(0.01)  # until unshare has made it and exec'd sleep
            return path
        ns = f"plab-rt-{self.tag}-{next(_seq)}"
        record("netns", ns)
        self.extra_ns.append(ns)
        netns.create(ns)
        return f"/run/netns/{ns}"

    # -- helpers -------------------------------------------------------------------

    def compartment_ns(self, host: str, compartment: str) -> str:
        return names.netns(host, compartment)

    def ping(
        self, host: str, compartment: str, ip: str, count: int = 1, timeout: float = 2.0
    ) -> bool:
        ns = self.compartment_ns(host, compartment)
        r = subprocess.run(
            [*self.nsenter(ns), "ping", "-c", str(count), "-W", str(timeout), "-q", ip],
            capture_output=True,
        )
        return r.returncode == 0

    def wait_ping(self, host: str, compartment: str, ip: str, within: float = 10.0) -> bool:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.ping(host, compartment, ip, timeout=1):
                return True
        return False

    # -- tear-down -----------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._choosing.close()
        for h in list(self.agents):
            with contextlib.suppress(Exception):
                self.kill_agent(h)
        for srv in [*self.servers, *self.holders]:
            srv.kill()
            srv.wait()
        self.broker.stop()
        for ns in self.extra_ns:
            with contextlib.suppress(OSError):
                netns.remove(ns)
        underlay.destroy(self.spec)
