"""A tiny netns lab for kernel tests: hosts are namespaces on an underlay bridge
(198.18.N.0/24, the benchmarking range), each running a real ``plexus agent`` process;
a real Mosquitto listens on loopback (for the controller) and on the underlay (for the
agents). Everything it creates carries a unique suffix and is removed on close, even
after a failure."""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import time
from pathlib import Path

from pyroute2 import IPRoute, netns

from agents import names
from tests.support import PLEXUS, Mosquitto, need

_seq = itertools.count(1)


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
        n = (os.getpid() * 7 + next(_seq)) % 250 + 1
        self.tag = f"{os.getpid() % 10000}x{next(_seq)}"
        self.net = f"198.18.{n}"
        self.workdir = workdir
        self.bridge = f"tu{self.tag}"[:15]
        self.hosts = [f"h{i + 1}-{self.tag}" for i in range(hosts)]
        self.hostns = {h: f"ptest-{h}" for h in self.hosts}
        self.vtep = {h: f"{self.net}.{i + 1}" for i, h in enumerate(self.hosts)}
        self.agents: dict[str, subprocess.Popen[bytes]] = {}
        self.broker = Mosquitto(workdir)
        self._closed = False

    # -- set-up --------------------------------------------------------------------

    def up(self) -> None:
        try:
            self._underlay()
            with open(self.broker.conf, "a") as conf:
                conf.write(f"listener {self.broker.port} {self.net}.254\n")
            self.broker.start()
            for h in self.hosts:
                self.start_agent(h)
        except BaseException:
            self.close()
            raise

    def _underlay(self) -> None:
        with IPRoute() as ipr:
            ipr.link("add", ifname=self.bridge, kind="bridge")
            (br,) = ipr.link_lookup(ifname=self.bridge)
            ipr.addr("add", index=br, address=f"{self.net}.254", prefixlen=24)
            ipr.link("set", index=br, state="up")
            for i, h in enumerate(self.hosts):
                ns = self.hostns[h]
                netns.create(ns)
                outer = f"{self.bridge[:11]}u{i}"
                ipr.link(
                    "add", ifname=outer, kind="veth", peer={"ifname": "uplink", "net_ns_fd": ns}
                )
                (o,) = ipr.link_lookup(ifname=outer)
                ipr.link("set", index=o, master=br, state="up")
                with IPRoute(netns=ns) as inner:
                    inner.link("set", index=1, state="up")
                    (u,) = inner.link_lookup(ifname="uplink")
                    inner.addr("add", index=u, address=self.vtep[h], prefixlen=24)
                    inner.link("set", index=u, state="up")

    def agent_log(self, host: str) -> Path:
        return self.workdir / f"agent-{host}.log"

    def start_agent(self, host: str) -> None:
        # enter the host's network namespace only: `ip netns exec` would also give the
        # agent a private mount namespace, hiding the compartments it creates from others
        cmd = [
            *self.nsenter(self.hostns[host]),
            PLEXUS,
            "agent",
            "--host-id",
            host,
            "--broker",
            f"mqtt://{self.net}.254:{self.broker.port}",
            "--vtep-address",
            self.vtep[host],
            "--resync-interval",
            "2",
            "--log-format",
            "json",
        ]
        with open(self.agent_log(host), "ab") as log:
            self.agents[host] = subprocess.Popen(cmd, stdout=log, stderr=log)

    @staticmethod
    def nsenter(ns: str) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{ns}"]

    def kill_agent(self, host: str) -> None:
        proc = self.agents.pop(host)
        proc.kill()
        proc.wait()

    def stop_agent(self, host: str) -> None:
        proc = self.agents.pop(host)
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

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
        for h in list(self.agents):
            with contextlib.suppress(Exception):
                self.kill_agent(h)
        self.broker.stop()
        for ns in netns.listnetns():
            if any(ns.startswith(names.netns_prefix(h)) for h in self.hosts):
                with contextlib.suppress(Exception):
                    netns.remove(ns)
        for ns in self.hostns.values():
            with contextlib.suppress(Exception):
                netns.remove(ns)
        with IPRoute() as ipr, contextlib.suppress(Exception):
            for idx in ipr.link_lookup(ifname=self.bridge):
                ipr.link("del", index=idx)
