"""Records of what a run made, for a supervisor to remove after a crash.

When ``PLEXUS_RECORDS`` names a file, every lab, test harness and benchmark appends
one line per thing it makes: ``lab DIR``, ``pid PID STARTTIME``, ``netns NAME``,
``netns-prefix PREFIX`` (the namespaces a host's agent makes), ``link NAME``,
``dir /tmp/plexus-...`` (a container runtime's state: what is mounted under it is
unmounted first; or a CNI cache file of ``/var/lib/cni/results``, a containerd shim's
socket in ``/run/containerd/s``), ``rmdir PATH`` (a
directory a runtime made that others may share: removed while empty) and
``cgroup /PATH`` (a runtime's cgroup parent, in every hierarchy).
``scripts/cleanup-records FILE`` (what ``.ci/run`` calls on exit) removes exactly those,
by name and by pid (a pid counts only while its start time matches: a recycled pid is
somebody else's), whatever killed the run. Without the variable nothing is written.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "PLEXUS_RECORDS"


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (``/proc/PID/stat`` field
    22): with the pid, it names one process, never a later one that reuses the pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]


def record(kind: str, value: str) -> None:
    path = os.environ.get(ENV)
    if not path:
        return
    # one short O_APPEND write per line: lines of concurrent writers never interleave
    with open(path, "a") as f:
        f.write(f"{kind} {value}\n")


def record_pid(pid: int) -> None:
    started = start_time(pid)
    if started is not None:
        record("pid", f"{pid} {started}")
