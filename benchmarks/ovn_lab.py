"""An OVN lab on this machine for :mod:`benchmarks.versus_ovn` (root): OVN and Open
vSwitch from Debian's packages, started by hand (no systemd, no system daemon, nothing
in ``/run/openvswitch``), the userspace datapath (no openvswitch kernel module).

Everything lives in one private directory (``/tmp/plexus-ovn-XXXX``)::

    central/  ovsdb-server NB (unix socket), ovsdb-server SB (unix socket and TCP on
              127.0.0.1, a free port), ovn-northd
    chN/      N = 1..3: ovsdb-server (Open_vSwitch database); ovs-vswitchd
              (datapath_type=netdev) inside its own namespace ``povnPID-chN``, where
              its tap devices live; ovn-controller in the machine's namespace, to
              the SB over TCP 127.0.0.1 and to its vswitchd over unix sockets

The VIFs are OVS internal ports (taps inside the chassis' namespace, left down): only
the control plane is exercised, no packet crosses the geneve mesh (127.0.0.2-4).
:meth:`OvnLab.close` removes every process (by pid, checked against its name), the
namespaces and the directory, also after a failure half-way; everything is recorded
in ``PLEXUS_RECORDS`` too (:mod:`lab.records`) for a supervisor to remove after a crash.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

from lab.ports import free_port
from lab.procs import alive
from lab.records import record, record_pid

PACKAGES = ("ovn-central", "ovn-host", "openvswitch-switch")
COMMANDS = ("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-appctl",
            "ovn-northd", "ovn-controller", "ovn-nbctl", "ovn-sbctl", "ovn-appctl")  # fmt: skip
NB_SCHEMA = Path("/usr/share/ovn/ovn-nb.ovsschema")
SB_SCHEMA = Path("/usr/share/ovn/ovn-sb.ovsschema")
VS_SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
POLICY_RC = Path("/usr/sbin/policy-rc.d")
PR_SET_CHILD_SUBREAPER = 36
SWITCH = "ls0"


class OvnError(Exception):
    """The OVN lab cannot be made or driven; the message says which command and why."""


def installed() -> bool:
    return all(shutil.which(c) for c in COMMANDS) and all(
        p.exists() for p in (NB_SCHEMA, SB_SCHEMA, VS_SCHEMA)
    )


def _apt(*args: str) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    p = subprocess.run(["apt-get", *args], capture_output=True, text=True, env=env)
    if p.returncode:
        raise OvnError(f"apt-get {' '.join(args)}: exit {p.returncode}: {p.stderr[-1500:]}")


def install(say: Callable[[str], None]) -> None:
    """Debian's OVN and OVS packages, if missing (``apt-get update`` first). No package
    may start its service meanwhile: a ``policy-rc.d`` refusing every start, as
    ``scripts/install`` does (removed after, if this made it)."""
    if installed():
        return
    say(f"installing {' '.join(PACKAGES)} (apt-get)")
    made = False
    if not POLICY_RC.exists():
        POLICY_RC.write_text("#!/bin/sh\nexit 101\n")
        POLICY_RC.chmod(0o755)
        made = True
    try:
        _apt("update", "-q")
        _apt("install", "-y", "-q", "--no-install-recommends", *PACKAGES)
    finally:
        if made:
            POLICY_RC.unlink(missing_ok=True)
    if not installed():
        raise OvnError(f"{' '.join(PACKAGES)} installed, but a command or schema is missing")


def version() -> str:
    def first(argv: list[str]) -> str:
        out = subprocess.run(argv, capture_output=True, text=True).stdout
        return out.splitlines()[0].split()[-1] if out else "?"

    return f"OVN {first(['ovn-northd', '--version'])}, OVS {first(['ovs-vswitchd', '--version'])}"


def _reap() -> None:
    """Collect the exited daemons: they were reparented to this process (subreaper)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def _gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        _reap()
        time.sleep(0.005)
    _reap()
    return True


class OvnLab:
    """NB and SB databases, ovn-northd and ``chassis`` chassis; a context manager."""

    def __init__(self, chassis: int = 3) -> None:
        # detached daemons are reparented to us, not to PID 1 (which may reap slowly)
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        self.dir = Path(tempfile.mkdtemp(prefix="plexus-ovn-"))
        record("dir", str(self.dir))
        self.central = self.dir / "central"
        self.chassis = list(range(1, chassis + 1))
        tag = f"povn{os.getpid() % 100000}"
        self.netns = {i: f"{tag}-ch{i}" for i in self.chassis}
        self.sb_port = free_port()
        #: every daemon started: (pidfile, name), in order
        self.started: list[tuple[Path, str]] = []
        self.made_netns: list[str] = []

    # -- running commands --------------------------------------------------------------

    def env(self, d: Path) -> dict[str, str]:
        """Every default path of OVS and OVN in ``d`` (sockets, logs, databases)."""
        keys = ("OVS_RUNDIR", "OVS_LOGDIR", "OVS_DBDIR", "OVN_RUNDIR", "OVN_LOGDIR", "OVN_DBDIR")
        return {**os.environ, **dict.fromkeys(keys, str(d))}

    def run(self, argv: list[str], d: Path | None = None, timeout: float = 120) -> str:
        try:
            p = subprocess.run(
                argv, capture_output=True, text=True, env=self.env(d or self.central),
                timeout=timeout,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise OvnError(f"{' '.join(argv)[:200]}: no answer within {timeout} s") from None
        if p.returncode:
            raise OvnError(f"{' '.join(argv)[:200]}: exit {p.returncode}: {p.stderr[-800:]}")
        return p.stdout

    def nbctl(self, *args: str, timeout: float = 120) -> str:
        db = f"--db=unix:{self.central / 'nb.sock'}"
        return self.run(["ovn-nbctl", db, f"--timeout={timeout:.0f}", *args], timeout=timeout)

    def sbctl(self, *args: str) -> str:
        return self.run(["ovn-sbctl", f"--db=unix:{self.central / 'sb.sock'}", *args])

    def vsctl(self, i: int, *args: str) -> str:
        d = self.dir / f"ch{i}"
        return self.run(["ovs-vsctl", f"--db=unix:{d / 'db.sock'}", "--timeout=120", *args], d)

    def pid(self, d: Path, name: str) -> int | None:
        try:
            return int((d / f"{name}.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def daemon(self, d: Path, name: str, argv: list[str], netns: str | None = None) -> int:
        """Start ``argv`` detached, its pidfile, log and control socket in ``d``."""
        pidfile = d / f"{name}.pid"
        self.started.append((pidfile, argv[0]))
        flags = ["--detach", "--no-chdir", "-vconsole:off", f"--pidfile={pidfile}",
                 f"--log-file={d / name}.log"]  # fmt: skip
        if argv[0] != "ovn-controller":  # 23.03 refuses --unixctl: ovn-controller.PID.ctl
            flags.append(f"--unixctl={d / name}.ctl")
        prefix = ["ip", "netns", "exec", netns] if netns else []
        self.run([*prefix, *argv, *flags], d)
        pid = self.pid(d, name)
        if pid is None:
            raise OvnError(f"{argv[0]} started but wrote no pidfile {pidfile}")
        record_pid(pid)
        return pid

    # -- the lab -----------------------------------------------------------------------

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def start(self) -> None:
        c = self.central
        c.mkdir()
        for db, schema in (("nb", NB_SCHEMA), ("sb", SB_SCHEMA)):
            self.run(["ovsdb-tool", "create", str(c / f"{db}.db"), str(schema)])
            remotes = [f"--remote=punix:{c / db}.sock"]
            if db == "sb":
                remotes.append(f"--remote=ptcp:{self.sb_port}:127.0.0.1")
            self.daemon(c, f"ovsdb-{db}", ["ovsdb-server", *remotes, str(c / f"{db}.db")])
        self.nbctl("--no-wait", "init")
        self.sbctl("init")
        self.start_northd()
        for i in self.chassis:
            self.start_chassis(i)
        self.ready()

    def start_northd(self) -> int:
        c = self.central
        dbs = [f"--ovnnb-db=unix:{c / 'nb.sock'}", f"--ovnsb-db=unix:{c / 'sb.sock'}"]
        return self.daemon(c, "ovn-northd", ["ovn-northd", *dbs])

    def start_ovn_controller(self, i: int) -> int:
        d = self.dir / f"ch{i}"
        return self.daemon(d, "ovn-controller", ["ovn-controller", f"unix:{d / 'db.sock'}"])

    def start_chassis(self, i: int) -> None:
        d, ns = self.dir / f"ch{i}", self.netns[i]
        d.mkdir()
        self.made_netns.append(ns)
        record("netns", ns)
        self.run(["ip", "netns", "add", ns])
        self.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"])
        # the taps stay quiet: no IPv6 autoconfiguration or MLD into the datapath
        off = ("net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
        self.run(["ip", "netns", "exec", ns, "sysctl", "-qw", *off])
        self.run(["ovsdb-tool", "create", str(d / "conf.db"), str(VS_SCHEMA)], d)
        self.daemon(d, "ovsdb-server", ["ovsdb-server", f"--remote=punix:{d / 'db.sock'}",
                                        str(d / "conf.db")])  # fmt: skip
        self.vsctl(i, "--no-wait", "init")
        ids = {
            "system-id": f"chassis-{i}",
            "hostname": f"chassis-{i}",
            "ovn-remote": f"tcp:127.0.0.1:{self.sb_port}",
            "ovn-encap-type": "geneve",
            "ovn-encap-ip": f"127.0.0.{i + 1}",
            "ovn-bridge-datapath-type": "netdev",
        }
        self.vsctl(i, "--no-wait", "set", "Open_vSwitch", ".",
                   *(f"external_ids:{k}={v}" for k, v in ids.items()))  # fmt: skip
        br = ("datapath_type=netdev", "fail-mode=secure", "other-config:disable-in-band=true")
        self.vsctl(i, "--no-wait", "add-br", "br-int", "--", "set", "Bridge", "br-int", *br)
        self.daemon(d, "ovs-vswitchd", ["ovs-vswitchd", f"unix:{d / 'db.sock'}"], netns=ns)
        self.start_ovn_controller(i)

    def ready(self, within: float = 60) -> None:
        """Every chassis registered in the SB, its flows installed; the logical switch."""
        deadline = time.monotonic() + within
        while True:
            names = self.sbctl("--bare", "--columns=name", "list", "Chassis").split()
            if len([n for n in names if n.startswith("chassis-")]) >= len(self.chassis):
                break
            if time.monotonic() > deadline:
                raise OvnError(f"chassis did not register within {within} s: {names}")
            time.sleep(0.1)
        self.nbctl("--wait=hv", "sync", timeout=within)
        self.nbctl("--wait=hv", "ls-add", SWITCH)

    # -- restarts ----------------------------------------------------------------------

    def ovn_controller_ctl(self, i: int) -> Path:
        d = self.dir / f"ch{i}"
        return d / f"ovn-controller.{self.pid(d, 'ovn-controller')}.ctl"

    def stop(self, d: Path, name: str, ctl: Path, *args: str) -> None:
        """``NAME-appctl -t CTL exit ARGS`` and until the process has gone."""
        pid = self.pid(d, name)
        appctl = "ovs-appctl" if name.startswith("ovs") else "ovn-appctl"
        self.run([appctl, "-t", str(ctl), "exit", *args], d, timeout=10)
        if pid is not None and not _gone(pid, 10):
            raise OvnError(f"{name} ({pid}) did not exit")

    def restart_ovn_controller(self, i: int, settle: float) -> float:
        """Seconds from starting chassis ``i``'s ovn-controller again (after ``exit
        --restart``: its Chassis and bindings stay, as in an upgrade) until
        ``--wait=hv sync`` returns: it has recomputed and installed its flows."""
        d = self.dir / f"ch{i}"
        self.stop(d, "ovn-controller", self.ovn_controller_ctl(i), "--restart")
        time.sleep(settle)
        t0 = time.monotonic()
        self.start_ovn_controller(i)
        self.nbctl("--wait=hv", "sync")
        return time.monotonic() - t0

    def restart_northd(self, settle: float) -> float:
        """Seconds from starting ovn-northd again until ``--wait=hv sync`` returns."""
        c = self.central
        self.stop(c, "ovn-northd", c / "ovn-northd.ctl")
        time.sleep(settle)
        t0 = time.monotonic()
        self.start_northd()
        self.nbctl("--wait=hv", "sync")
        return time.monotonic() - t0

    # -- teardown ----------------------------------------------------------------------

    def close(self) -> None:
        """Every daemon (gracefully, then TERM, then KILL), the namespaces, the
        directory; idempotent, and it goes on past what fails."""
        for i in self.chassis:
            d = self.dir / f"ch{i}"
            with contextlib.suppress(OvnError):  # without --restart: its Chassis row goes
                if self.pid(d, "ovn-controller") is not None:
                    self.run(["ovn-appctl", "-t", str(self.ovn_controller_ctl(i)), "exit"], d, 5)
            with contextlib.suppress(OvnError):
                if (d / "ovs-vswitchd.ctl").exists():
                    ctl = str(d / "ovs-vswitchd.ctl")
                    self.run(["ovs-appctl", "-t", ctl, "exit", "--cleanup"], d, 5)
        for pidfile, name in reversed(self.started):
            pid = self.pid(pidfile.parent, pidfile.name.removesuffix(".pid"))
            if pid is None or not _is(pid, name):
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if not _gone(pid, 5):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                _gone(pid, 5)
        for ns in self.made_netns:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.made_netns = []
        shutil.rmtree(self.dir, ignore_errors=True)
        _reap()


def _is(pid: int, name: str) -> bool:
    """``pid`` is still a live process named ``name`` (not a recycled pid)."""
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return False
    return comm == name[:15] and alive(pid)
