"""The lab's processes: started detached (they outlive the CLI), found again by the
configuration files only they name on their command line, stopped TERM-then-KILL."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from .records import record_pid
from .spec import LabError, LabSpec


def installed(name: str) -> str | None:
    """The command ``name`` of this installation: beside this interpreter first, else on
    PATH (None if neither has it)."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def plexus_command() -> list[str]:
    """How to start this very ``plexus`` (the one beside this interpreter first)."""
    found = installed("plexus")
    if found is None:
        raise LabError("the plexus command is not on PATH")
    return [found]


#: each daemon's package, run as ``python -m PACKAGE`` where its command is missing
DAEMON_PACKAGES = {"agent": "agents", "controller": "controller"}


def daemon_command(daemon: str) -> list[str]:
    """How to start ``daemon`` (``agent`` or ``controller``): its own entry point,
    ``plexus-agent`` / ``plexus-controller`` (:func:`installed`), which loads what the
    daemon runs and not the ``plexus`` command tree; else this interpreter's ``-m
    agents`` / ``-m controller`` (an installation older than the console script)."""
    found = installed(f"plexus-{daemon}")
    return [found] if found is not None else [sys.executable, "-m", DAEMON_PACKAGES[daemon]]


def spawn(argv: list[str], log: Path) -> int:
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # no signal from the CLI's terminal reaches it
                close_fds=True,
            )
    except OSError as e:
        raise LabError(f"cannot start {argv[0]} (log {log}): {e}") from None
    record_pid(proc.pid)
    return proc.pid


def alive(pid: int) -> bool:
    """Running (a zombie is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def find(spec: LabSpec) -> dict[int, list[str]]:
    """Every live process of this lab, by the files only its processes name: the pids in
    the state file may be stale after a crash, and pyroute2's forked helpers are not in
    it at all."""
    marks = spec.marks()
    me = os.getpid()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        args = cmdline(pid)
        if any(a in marks or a.partition("=")[2] in marks for a in args) and alive(pid):
            found[pid] = args
    return found


def stop(spec: LabSpec, grace: float = 5.0) -> list[int]:
    """SIGTERM every process of the lab (agents first, then controllers), SIGKILL what
    outlives ``grace``."""
    procs = find(spec)
    rank = {str(spec.agent_config(h)): 0 for h in spec.hosts}
    rank.update({str(spec.controller_config_of(c)): 1 for c in spec.controllers})
    order = sorted(procs, key=lambda p: min((rank.get(a, 2) for a in procs[p]), default=2))
    postgres = str(spec.postgres_dir / "data")
    for pid in order:
        # PostgreSQL: SIGINT is its fast shutdown (SIGTERM waits for every client to go)
        sig = signal.SIGINT if postgres in procs[pid] else signal.SIGTERM
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in order):
        time.sleep(0.05)
    for pid in order:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in order):
        time.sleep(0.05)
    left = [p for p in order if alive(p)]
    if left:
        raise LabError(f"processes would not stop: {left}")
    _reap()
    return order


def _reap() -> None:
    """Collect our own exited children (when ``lab down`` runs in the process that
    started the lab), so they do not linger as zombies."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
