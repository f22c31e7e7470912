"""What both runtime harnesses share: the cached test image, commands with their error
output, unique names, and the removal of state directories, cgroups and runtime
namespaces (each recorded in ``PLEXUS_RECORDS`` before it exists)."""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lab.records import record, record_pid

ROOT = Path(__file__).resolve().parents[2]
TEST_IMAGE = ROOT / "scripts" / "test-image"
CGROUPS = Path("/sys/fs/cgroup")
_seq = itertools.count(1)


class CommandFailed(Exception):
    """A runtime command failed: the command, its exit code and its error output."""

    def __init__(self, cmd: list[str], code: int, stderr: str) -> None:
        super().__init__(f"{' '.join(cmd)}: exit {code}: {stderr.strip()[-3000:]}")
        self.cmd = cmd
        self.code = code
        self.stderr = stderr


def tag() -> str:
    """Unique on the machine while this process lives: pid and a counter."""
    return f"{os.getpid() % 100000}x{next(_seq)}"


def need_binary(name: str) -> str:
    """The binary's path; a missing one fails the test (``.ci/run`` installs them)."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if path is None:
        pytest.fail(f"{name} is not installed (scripts/install installs it)")
    if os.geteuid() != 0:
        pytest.fail("real container runtimes need root")
    return path


def sh(
    cmd: list[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if check and r.returncode != 0:
        raise CommandFailed(cmd, r.returncode, r.stderr or r.stdout)
    return r


def wait_until(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """What ``check()`` returns once it is true; TimeoutError naming ``what`` after
    ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:g} s")
        time.sleep(0.05)


@dataclass(frozen=True)
class Image:
    """The test image (scripts/test-image): busybox (httpd, nc, wget), iproute2, ping."""

    name: str  # e.g. localhost/plexus-test-base:3-88bf0bc3
    rootfs: Path  # tar of the root filesystem
    archive: Path  # docker-archive tagged ``name``


@functools.cache
def test_image() -> Image:
    """Builds the image the first time on the machine (about a minute), then finds it."""
    name = sh(["bash", str(TEST_IMAGE), "--print-name"]).stdout.strip()
    rootfs, archive = sh(["bash", str(TEST_IMAGE)], timeout=1200).stdout.split()
    return Image(name, Path(rootfs), Path(archive))


@dataclass
class Container:
    """A container a harness started: its runtime's name for it, id, init pid and the
    path of its network namespace as the runtime gave it to CNI."""

    name: str
    id: str
    pid: int
    netns: str


def record_process_tree(pid: int) -> None:
    """The process and its parent (a runtime's monitor: conmon, a containerd shim)."""
    record_pid(pid)
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("PPid:") and (ppid := int(line.split()[1])) > 1:
                record_pid(ppid)


def state_dir(prefix: str) -> Path:
    """A fresh directory with a short path (a unix socket's path has 108 bytes)."""
    path = Path(f"/tmp/plexus-{prefix}-{tag()}")
    record("dir", str(path))
    path.mkdir(mode=0o700)
    return path


def remove_dir(path: Path) -> None:
    """Unmounts whatever is mounted under ``path`` (deepest first), then removes it."""
    prefix = str(path).rstrip("/") + "/"
    mounts = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point == str(path) or point.startswith(prefix):
                mounts.append(point)
    for point in sorted(mounts, key=len, reverse=True):
        sh(["umount", "-l", point], check=False)
    sh(["rm", "-rf", "--one-file-system", str(path)], check=False)


def cgroup_parent(prefix: str) -> str:
    """A cgroup path of the harness's own (``/plexus-PREFIX-TAG``), under which its
    runtime makes each container's cgroup; removed by ``remove_cgroup``."""
    path = f"/plexus-{prefix}-{tag()}"
    record("cgroup", path)
    return path


def remove_cgroup(path: str) -> None:
    """Removes the cgroup and those under it in every hierarchy (empty ones only)."""
    for hierarchy in CGROUPS.iterdir() if CGROUPS.is_dir() else []:
        top = hierarchy / path.lstrip("/")
        if not top.is_dir():
            continue
        dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for d in [*dirs, top]:
            with contextlib.suppress(OSError):
                d.rmdir()


def remove_netns(name: str) -> None:
    if Path("/run/netns", name).exists():
        sh(["ip", "netns", "delete", name], check=False)


def remove_link(name: str) -> None:
    if Path("/sys/class/net", name).exists():
        sh(["ip", "link", "delete", name], check=False)
