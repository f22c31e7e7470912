"""Per-namespace resolver files: ``<base>/<namespace>/resolv.conf`` (base:
``/etc/netns``, the iproute2 convention). The agent owns the file it wrote (its first
line is :data:`agents.resolv.HEADER`) in a directory named after a namespace it owns;
anything else there is left alone. An ``OSError`` here is translated where every other
one of the driver is, in :class:`~agents.kernel.linux.LinuxKernel`'s ``read`` and
``apply``."""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from ..errors import KernelError
from ..resolv import HEADER

DEFAULT_BASE = Path("/etc/netns")


def read(base: Path, prefix: str) -> dict[str, str]:
    """The resolver files the agent wrote for its namespaces (those whose names start
    with ``prefix``, :func:`proto.names.netns_prefix`): namespace → content."""
    out: dict[str, str] = {}
    try:
        entries = list(os.scandir(base))
    except FileNotFoundError:
        return out
    for entry in entries:
        if not entry.is_dir() or not entry.name.startswith(prefix):
            continue
        path = Path(entry.path) / "resolv.conf"
        try:
            content = path.read_text()
        except (FileNotFoundError, NotADirectoryError):
            continue
        if content.startswith(HEADER):
            out[entry.name] = content
    return out


def write(base: Path, namespace: str, content: str) -> None:
    """Replace the namespace's resolv.conf atomically (a reader never sees half). A
    resolv.conf the agent did not write is not replaced: KernelError (EEXIST), which
    the pass reports, until whoever put it there removes it."""
    directory = base / namespace
    path = directory / "resolv.conf"
    tmp = directory / ".resolv.conf.plexus"
    try:
        if not path.read_text().startswith(HEADER):
            raise KernelError(
                "write", str(path), errno.EEXIST, "a resolv.conf Plexus did not write is there"
            )
    except (FileNotFoundError, NotADirectoryError):
        pass
    directory.mkdir(parents=True, exist_ok=True)
    tmp.write_text(content)
    os.replace(tmp, path)


def remove(base: Path, namespace: str) -> None:
    """Remove the file the agent wrote, and the directory if that leaves it empty."""
    directory = base / namespace
    path = directory / "resolv.conf"
    try:
        if path.read_text().startswith(HEADER):
            path.unlink()
    except (FileNotFoundError, NotADirectoryError):
        pass
    with contextlib.suppress(OSError):  # not empty (someone else's files): left there
        directory.rmdir()
