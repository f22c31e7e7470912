"""Real container runtimes for tests, each isolated from the machine's own state:

- ``Podman``: podman with its own containers.conf (CNI backend, the test's CNI
  directories, runc, file locks, its own tmp dir) and storage (overlay, own graphroot
  and runroot); containers under a cgroup parent of its own.
- ``Containerd``: a containerd daemon of its own (root, state, socket, no CRI plugin),
  driven by ``ctr``; ``ctr run --cni`` runs in a private mount namespace where the
  test's CNI directories (and a CNI cache of its own) are mounted over
  ``/etc/cni/net.d``, ``/opt/cni/bin`` and ``/var/lib/cni``: the machine's are never
  written.

Everything either makes is recorded in ``PLEXUS_RECORDS`` first and removed by
``close()``, even after a failure; ``scripts/cleanup-records`` removes it after a crash.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from lab.records import record, record_pid
from tests.runtimes.cni import Cni
from tests.runtimes.common import (
    CommandFailed,
    Container,
    Image,
    cgroup_parent,
    need_binary,
    record_process_tree,
    remove_cgroup,
    remove_dir,
    remove_link,
    remove_netns,
    sh,
    state_dir,
    wait_until,
)

__all__ = ["Cni", "CommandFailed", "Container", "Containerd", "Image", "Podman"]

PODMAN_BRIDGE = "cni-podman0"  # podman's default network, should anything use it


class Podman:
    """``images``: the graphroot of another podman's storage (``Podman.image_store``),
    read as an additional image store: its images are there without a load."""

    def __init__(self, cni: Cni, images: Path | None = None) -> None:
        self.binary = need_binary("podman")
        need_binary("runc")
        self.cni = cni
        self.dir = state_dir("podman")
        self.cgroup = cgroup_parent("podman")
        self.had_bridge = Path("/sys/class/net", PODMAN_BRIDGE).exists()
        if not self.had_bridge:
            record("link", PODMAN_BRIDGE)
        conf, storage = self.dir / "containers.conf", self.dir / "storage.conf"
        conf.write_text(
            "[containers]\n"
            'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
            "[network]\n"
            'network_backend = "cni"\n'
            f'cni_plugin_dirs = ["{cni.bin_dir}", "/usr/lib/cni"]\n'
            f'network_config_dir = "{cni.conf_dir}"\n'
            "[engine]\n"
            'runtime = "runc"\n'
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'events_logfile_path = "{self.dir}/events.log"\n'
            f'tmp_dir = "{self.dir}/tmp"\n'
            'lock_type = "file"\n'  # shm locks would be shared with every other podman
            f'volume_path = "{self.dir}/volumes"\n'
        )
        storage.write_text(
            "[storage]\n"
            'driver = "overlay"\n'
            f'graphroot = "{self.dir}/graph"\n'
            f'runroot = "{self.dir}/run"\n'
            + (f'[storage.options]\nadditionalimagestores = ["{images}"]\n' if images else "")
        )
        self.env = {
            **os.environ,
            "CONTAINERS_CONF": str(conf),
            "CONTAINERS_STORAGE_CONF": str(storage),
        }
        self.containers: dict[str, Container] = {}
        self.netns_made: set[str] = set()

    def podman(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        return sh([self.binary, *args], env=self.env, check=check, timeout=timeout).stdout

    def load(self, image: Image) -> str:
        """Loads the test image (a docker-archive) into this storage; its name."""
        self.podman("load", "-q", "-i", str(image.archive), timeout=300)
        return image.name

    @property
    def image_store(self) -> Path:
        """This storage's graphroot, for other harnesses' ``images``."""
        return self.dir / "graph"

    def run(
        self,
        name: str,
        image: str,
        *,
        network: str,
        ports: tuple[str, ...] = (),
        command: tuple[str, ...] = ("sleep", "infinity"),
        args: tuple[str, ...] = (),
    ) -> Container:
        """``podman run -d --network NETWORK [-p PORT]... ARGS IMAGE COMMAND``."""
        full = f"plexus-{self.dir.name.rpartition('-')[2]}-{name}"
        cmd = ["run", "-d", "--name", full, "--network", network]
        cmd += ["--cgroup-parent", self.cgroup, *(f"-p{p}" for p in ports), *args]
        try:
            cid = self.podman(*cmd, image, *command).strip()
        finally:  # a failed run may still have made a container
            self.containers[name] = Container(full, "", 0, "")
        state = self.inspect(name)
        pid, conmon = int(state["State"]["Pid"]), int(state["State"]["ConmonPid"])
        netns = str(state["NetworkSettings"]["SandboxKey"])
        record_pid(conmon)
        record_pid(pid)
        if netns.startswith("/run/netns/"):
            self.netns_made.add(netns.rpartition("/")[2])
            record("netns", netns.rpartition("/")[2])
        # podman's CNI cache is the machine's: a container killed without DEL leaves its
        # result there
        record("dir", f"/var/lib/cni/results/{network}-{cid}-eth0")
        self.containers[name] = Container(full, cid, pid, netns)
        return self.containers[name]

    def inspect(self, name: str) -> dict[str, Any]:
        out: list[dict[str, Any]] = json.loads(
            self.podman("inspect", "--type", "container", self.containers[name].name)
        )
        return out[0]

    def exec(self, name: str, *cmd: str, check: bool = True) -> str:
        return self.podman("exec", self.containers[name].name, *cmd, check=check)

    def rm(self, name: str) -> None:
        """``podman rm -f``: stops the container (CNI DEL) and removes it."""
        self.podman("rm", "-f", "-t", "0", self.containers[name].name)

    def close(self) -> None:
        for c in self.containers.values():
            with contextlib.suppress(CommandFailed, subprocess.TimeoutExpired):
                self.podman("rm", "-f", "-t", "0", "--ignore", c.name, timeout=60)
        for ns in self.netns_made:
            remove_netns(ns)
        if not self.had_bridge:
            remove_link(PODMAN_BRIDGE)
        for c in self.containers.values():  # podman's CNI cache is the machine's
            for f in Path("/var/lib/cni/results").glob(f"*-{c.id or 'none'}-*"):
                f.unlink(missing_ok=True)
        remove_dir(self.dir)
        remove_cgroup(self.cgroup)


# Runs COMMAND with the test's CNI directories over ctr's fixed ones, in the private mount
# namespace of `unshare --mount --propagation private`. A path missing on the machine
# (/opt/cni/bin, often) is made in a tmpfs over its deepest existing ancestor, whose
# entries are bound back: the shared filesystem is never written.
_PRIVATE_CNI = r"""
set -e
scratch=$1; shift
place() {
    if [ ! -d "$2" ]; then
        anc=$2
        while [ ! -d "$anc" ]; do anc=$(dirname "$anc"); done
        keep="$scratch/keep$(echo "$anc" | tr / _)"
        mkdir -p "$keep"
        mount --rbind "$anc" "$keep"
        mount -t tmpfs -o mode=755 plexus-cni "$anc"
        for e in "$keep"/* "$keep"/.[!.]*; do
            [ -e "$e" ] || [ -L "$e" ] || continue
            n="$anc/${e##*/}"
            if [ -L "$e" ]; then cp -P "$e" "$n"
            elif [ -d "$e" ]; then mkdir "$n" && mount --rbind "$e" "$n"
            else : > "$n" && mount --bind "$e" "$n"; fi
        done
        mkdir -p "$2"
    fi
    mount --bind "$1" "$2"
}
place "$1" /etc/cni/net.d
place "$2" /opt/cni/bin
place "$3" /var/lib/cni
shift 3
exec "$@"
"""


class Containerd:
    NAMESPACE = "plexus-test"

    def __init__(self, cni: Cni) -> None:
        self.binary = need_binary("containerd")
        self.ctr_binary = need_binary("ctr")
        need_binary("runc")
        need_binary("unshare")
        self.cni = cni
        self.dir = state_dir("containerd")
        self.cgroup = cgroup_parent("containerd")
        self.socket = self.dir / "containerd.sock"
        self.proc: subprocess.Popen[bytes] | None = None
        self.containers: dict[str, Container] = {}
        self.foreground: dict[str, subprocess.Popen[bytes]] = {}
        # the shims' sockets are in /run/containerd/s, whatever the configuration; ctr's
        # fifos default to /run/containerd/fifo (the harness passes --fifo-dir)
        made = ("/run/containerd/s", "/run/containerd/fifo", "/run/containerd")
        self.run_dirs = [d for d in made if not Path(d).exists()]
        for d in self.run_dirs:
            record("rmdir", d)
        self._exec = 0

    def start(self) -> None:
        config = self.dir / "config.toml"
        config.write_text(
            "version = 2\n"
            f'root = "{self.dir}/root"\n'
            f'state = "{self.dir}/state"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            f'[grpc]\naddress = "{self.socket}"\n'
            f'[ttrpc]\naddress = "{self.socket}.ttrpc"\n'
            '[debug]\naddress = ""\n[metrics]\naddress = ""\n'
            # it would otherwise make /opt/containerd
            f'[plugins."io.containerd.internal.v1.opt"]\npath = "{self.dir}/opt"\n'
        )
        with open(self.dir / "containerd.log", "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "--config", str(config)], stdout=log, stderr=log
            )
        record_pid(self.proc.pid)

        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                log = (self.dir / "containerd.log").read_text()[-2000:]
                raise RuntimeError(f"containerd exited: {log}")
            return self.ctr_cmd("version", check=False).returncode == 0

        wait_until(up, "containerd answers on its socket")

    def _ctr(self, *args: str) -> list[str]:
        return [self.ctr_binary, "-a", str(self.socket), "-n", self.NAMESPACE, *args]

    def ctr_cmd(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh(self._ctr(*args), check=check)

    def ctr(self, *args: str) -> str:
        return self.ctr_cmd(*args).stdout

    def load(self, image: Image) -> str:
        self.ctr_cmd("images", "import", str(image.archive))
        return image.name

    def _private_cni(self, network: str, cmd: list[str]) -> list[str]:
        cache = self.dir / "cni-cache"
        cache.mkdir(exist_ok=True)
        conf = self.cni.only(network)
        scratch = self.dir / "mnt"
        scratch.mkdir(exist_ok=True)
        unshare = ["unshare", "--mount", "--propagation", "private", "sh", "-c", _PRIVATE_CNI]
        return [*unshare, "sh", str(scratch), str(conf), str(self.cni.bin_dir), str(cache), *cmd]

    def run(
        self,
        name: str,
        image: str,
        *,
        network: str | None = None,
        detach: bool = True,
        command: tuple[str, ...] = ("sleep", "infinity"),
        args: tuple[str, ...] = (),
    ) -> Container:
        """``ctr run [--cni] -d`` (``detach``) or ``ctr run [--cni] --rm`` left running
        in the background: then ctr itself, when the task ends, calls CNI DEL and
        removes the container (``stop``). ``network`` is a network of the ``Cni``."""
        full = f"plexus-{self.dir.name.rpartition('-')[2]}-{name}"
        runc_root = self.dir / "runc"
        cmd = ["run", "--null-io", "--fifo-dir", str(self.dir / "fifo")]
        cmd += ["--runc-root", str(runc_root), "--cgroup", f"{self.cgroup}/{full}"]
        cmd += ["-d"] if detach else ["--rm"]
        cmd += [*(["--cni"] if network else []), *args, image, full, *command]
        argv = self._ctr(*cmd)
        if network:
            argv = self._private_cni(network, argv)
        self.containers[name] = Container(full, full, 0, "")
        record("dir", str(self.shim_socket(full)))
        if detach:
            sh(argv)
        else:
            with open(self.dir / f"ctr-{name}.log", "ab") as log:
                self.foreground[name] = subprocess.Popen(argv, stdout=log, stderr=log)
            record_pid(self.foreground[name].pid)
        ctr = self.foreground.get(name)
        pid = int(wait_until(lambda: self._task_pid(full, ctr), f"task {full} running"))
        record_process_tree(pid)  # the task and its shim
        self.containers[name] = Container(full, full, pid, f"/proc/{pid}/ns/net")
        return self.containers[name]

    def shim_socket(self, full: str) -> Path:
        """Where containerd 1.6 puts the shim's socket of container ``full`` (a killed
        shim leaves it behind): a hash of the daemon's address, namespace and id."""
        digest = hashlib.sha256(f"{self.socket}/{self.NAMESPACE}/{full}".encode()).hexdigest()
        return Path("/run/containerd/s", digest)

    def _task_pid(self, full: str, proc: subprocess.Popen[bytes] | None = None) -> int | None:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"ctr run exited {proc.returncode}: see {self.dir}/ctr-*.log")
        for line in self.ctr_cmd("tasks", "ls", check=False).stdout.splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 3 and parts[0] == full and parts[2] == "RUNNING":
                return int(parts[1])
        return None

    def exec(self, name: str, *cmd: str, check: bool = True) -> str:
        self._exec += 1
        full = self.containers[name].name
        return self.ctr_cmd(
            "tasks",
            "exec",
            "--fifo-dir",
            str(self.dir / "fifo"),
            "--exec-id",
            f"e{self._exec}",
            full,
            *cmd,
            check=check,
        ).stdout

    def kill(self, name: str, sig: str = "SIGKILL") -> None:
        """Signals the task (SIGKILL: the killed container: no CNI DEL for a detached
        one; its namespace dies with it) and waits until it has stopped."""
        full = self.containers[name].name
        self.ctr_cmd("tasks", "kill", "-s", sig, full)
        wait_until(lambda: self._task_pid(full) is None, f"task {full} stopped")

    def stop(self, name: str, timeout: float = 30) -> int:
        """Ends a ``detach=False`` container: SIGKILL to its task, then ctr (CNI DEL,
        removal) exits; its exit code."""
        proc = self.foreground.pop(name)
        self.ctr_cmd("tasks", "kill", "-s", "SIGKILL", self.containers[name].name, check=False)
        return proc.wait(timeout)

    def delete(self, name: str) -> None:
        """Deletes the task (killing it if it runs) and the container. No CNI DEL."""
        full = self.containers[name].name
        self.ctr_cmd("tasks", "delete", "-f", full, check=False)
        self.ctr_cmd("containers", "delete", full)

    def close(self) -> None:
        for name, c in self.containers.items():
            self.ctr_cmd("tasks", "delete", "-f", c.name, check=False)
            if (ctr := self.foreground.pop(name, None)) is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    ctr.wait(20)
                if ctr.poll() is None:
                    ctr.kill()
                    ctr.wait()
            self.ctr_cmd("containers", "delete", c.name, check=False)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for c in self.containers.values():
            self.shim_socket(c.name).unlink(missing_ok=True)
        remove_dir(self.dir)
        remove_cgroup(self.cgroup)
        for d in self.run_dirs:  # those it made, once empty: another containerd may use them
            with contextlib.suppress(OSError):
                Path(d).rmdir()
