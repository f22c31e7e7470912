"""A private dockerd per lab host, started inside the host's network namespace (at
``Join`` libnetwork moves an interface only out of its own namespace), and one
``plexus docker-plugin`` per host, each under its own plugin name (every dockerd sees
every socket in ``/run/docker/plugins``).

The daemon has its own data-root, exec-root (its containerd's too), pidfile, socket and
cgroup parent, and changes nothing of the machine's firewall or forwarding
(``--iptables=false --ip-forward=false --ip-masq=false --bridge=none``). Everything is
recorded in ``PLEXUS_RECORDS`` before it exists and removed by ``close()``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path

from lab.records import record, record_pid
from tests.runtimes.common import (
    CommandFailed,
    Image,
    cgroup_parent,
    need_binary,
    remove_cgroup,
    remove_dir,
    sh,
    state_dir,
    wait_until,
)
from tests.support import PLEXUS, stop_process

PLUGIN_DIR = Path("/run/docker/plugins")


def _children(pid: int) -> list[int]:
    with contextlib.suppress(OSError):
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return [int(c) for c in text.split()]
    return []


class Dockerd:
    def __init__(self, hostns: str) -> None:
        self.binary = need_binary("dockerd")
        # the daemon's own client (Debian's 20.10): a newer one refuses --mac-address
        # below API 1.44
        debian = Path("/usr/bin/docker")
        self.client = str(debian) if debian.exists() else need_binary("docker")
        self.hostns = hostns
        self.dir = state_dir("dockerd")
        self.cgroup = cgroup_parent("dockerd")
        self.socket = self.dir / "docker.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        (self.dir / "daemon.json").write_text("{}\n")
        cmd = ["nsenter", f"--net=/run/netns/{self.hostns}", self.binary]
        cmd += ["--config-file", str(self.dir / "daemon.json")]
        cmd += ["--data-root", str(self.dir / "data"), "--exec-root", str(self.dir / "exec")]
        cmd += ["--pidfile", str(self.dir / "docker.pid"), "-H", f"unix://{self.socket}"]
        cmd += ["--iptables=false", "--ip-forward=false", "--ip-masq=false"]
        cmd += ["--ip6tables=false", "--bridge=none", "--cgroup-parent", self.cgroup]
        cmd += ["--storage-driver", "overlay2"]
        with open(self.dir / "dockerd.log", "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log)
        record_pid(self.proc.pid)

        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited: {self.log()[-2000:]}")
            return self.docker_cmd("version", check=False).returncode == 0

        wait_until(up, "dockerd answers on its socket", 60)
        for child in _children(self.proc.pid):  # its containerd
            record_pid(child)

    def log(self) -> str:
        return (self.dir / "dockerd.log").read_text(errors="replace")

    def docker_cmd(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return sh([self.client, "-H", f"unix://{self.socket}", *args], check=check, timeout=timeout)

    def docker(self, *args: str, timeout: float = 120) -> str:
        return self.docker_cmd(*args, timeout=timeout).stdout

    def load(self, image: Image) -> str:
        self.docker("load", "-q", "-i", str(image.archive))
        return image.name

    def run(
        self,
        name: str,
        image: str,
        network: str,
        *args: str,
        command: tuple[str, ...] = ("sleep", "infinity"),
    ) -> str:
        """``docker run -d`` of ``command``; the container's id."""
        cid = self.docker("run", "-d", "--name", name, "--network", network, *args, image,
                          *command).strip()  # fmt: skip
        record_pid(int(self.docker("inspect", "-f", "{{.State.Pid}}", cid)))
        return cid

    def close(self) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None:
                self._empty()
                self._stop()
        finally:
            remove_dir(self.dir)
            remove_cgroup(self.cgroup)

    def _empty(self) -> None:
        with contextlib.suppress(CommandFailed, subprocess.TimeoutExpired, ValueError):
            ids = self.docker("ps", "-aq").split()
            if ids:
                self.docker("rm", "-f", *ids, timeout=60)
            for net in self.docker("network", "ls", "-q", "--filter", "type=custom").split():
                self.docker_cmd("network", "rm", net, check=False, timeout=30)

    def _stop(self) -> None:
        assert self.proc is not None
        children = _children(self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for child in children:  # its containerd, should it outlive it
            with contextlib.suppress(OSError):
                os.kill(child, signal.SIGKILL)


class Plugin:
    """``plexus docker-plugin --name NAME`` for one lab host, in the root namespace
    (the controller's loopback address is there; the socket is a file every
    namespace's dockerd finds)."""

    def __init__(self, name: str, host: str, controller: str, token: Path | None) -> None:
        self.name = name
        self.dir = state_dir("dockerplugin")
        self.socket = PLUGIN_DIR / f"{name}.sock"
        self.log_path = self.dir / "plugin.log"
        self.made_plugin_dir = not PLUGIN_DIR.exists()
        if self.made_plugin_dir:
            record("rmdir", str(PLUGIN_DIR))
        record("dir", str(self.socket))
        self.argv = [PLEXUS, "docker-plugin", "--name", name, "--network-host", host]
        self.argv += ["--controller", controller, "--socket-dir", str(PLUGIN_DIR)]
        self.argv += ["--state-dir", str(self.dir / "state"), "--log-format", "json"]
        self.argv += ["--token-file", str(token)] if token else []
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it and wait until it serves (a killed run's socket may still be there:
        the new run's own word is waited for)."""
        before = len(self.events("docker_plugin_serving"))
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=log)
        record_pid(self.proc.pid)

        def serving() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"plugin {self.name} exited: {self.log_path.read_text()[-2000:]}"
                )
            return len(self.events("docker_plugin_serving")) > before and self.socket.exists()

        wait_until(serving, f"plugin {self.name} serving", 30)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def kill(self) -> None:
        """SIGKILL: a crash (its socket stays behind)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()

    def events(self, event: str) -> list[dict[str, object]]:
        out = []
        with contextlib.suppress(FileNotFoundError):
            for line in self.log_path.read_text().splitlines():
                with contextlib.suppress(ValueError):
                    doc = json.loads(line)
                    if isinstance(doc, dict) and doc.get("event") == event:
                        out.append(doc)
        return out

    def calls(self) -> list[dict[str, object]]:
        return self.events("docker_call")

    def close(self) -> None:
        self.stop()
        self.socket.unlink(missing_ok=True)
        remove_dir(self.dir)
        if self.made_plugin_dir:
            with contextlib.suppress(OSError):
                PLUGIN_DIR.rmdir()
