"""``plexus lab up | down | status``: the lab's life cycle.

``up`` fixes the spec, saves it, then builds the underlay and starts a real Mosquitto,
its relays, a private PostgreSQL (:mod:`.ha`), the controller replicas and one
``plexus-agent`` process per host namespace, each detached from the CLI and logging
to ``DIR/logs``. ``down`` stops every process of the lab and
removes every namespace, link and file it made; it is idempotent and works after a
crash, because the spec was saved before anything was made.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from broker import identities
from broker.errors import BrokerError
from cli.client import Client
from cli.errors import CliError
from proto import names
from proto.types import is_id

from . import ha, procs, underlay
from .ports import bindable, free_port
from .records import record
from .spec import AGENT_METRICS_PORT, LabError, LabSpec, free_subnet

Step = Callable[[str], None]
MAX_HOSTS = 100


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("plexus lab needs root (it makes network namespaces): run it as root")


def _free_port(preferred: int, taken: tuple[int, ...] = ()) -> int:
    if preferred not in taken and bindable(preferred):
        return preferred
    return free_port(taken)


def _free_ports(count: int, first: int, taken: tuple[int, ...]) -> list[int]:
    ports: list[int] = []
    for i in range(count):
        ports.append(_free_port(first + i, (*taken, *ports)))
    return ports


def host_ids(count: int, prefix: str) -> list[str]:
    if not 1 <= count <= MAX_HOSTS:
        raise LabError(f"--hosts must be between 1 and {MAX_HOSTS}")
    hosts = [f"{prefix}{i + 1}" for i in range(count)]
    bad = [h for h in hosts if not is_id(h)]
    if bad:
        raise LabError(f"host id {bad[0]!r} is not a valid id: check --host-prefix")
    return hosts


def plan(
    directory: Path,
    hosts: int,
    host_prefix: str = "h",
    tls: bool = False,
    *,
    controllers: int = 1,
    store: str = "sqlite",
    relays: int = 0,
) -> LabSpec:
    """The spec of a new lab in ``directory``; refuses when one is there already."""
    require_root()
    if not 1 <= controllers <= 9:
        raise LabError("--controllers must be between 1 and 9")
    if not 0 <= relays <= 9:
        raise LabError("--relays must be between 0 and 9")
    if controllers > 1 and ha.check_store(store) == "sqlite":
        raise LabError("several controllers share a PostgreSQL store: add --store postgresql")
    if relays and tls:
        raise LabError("--relays with --tls: not in the lab yet (relays listen in plain MQTT)")
    existing = LabSpec.load(directory)
    if existing is not None:
        raise LabError(
            f"a lab is already up in {directory} ({len(existing.hosts)} hosts): "
            f"see `plexus lab status`, or remove it with `plexus lab down`"
        )
    broker_port = _free_port(1883)
    api = _free_ports(controllers, 8470, (broker_port,))
    spec = LabSpec.new(
        directory,
        host_ids(hosts, host_prefix),
        free_subnet(underlay.addresses_in_use()),
        broker_port=broker_port,
        controller_port=api[0],
        tls=tls,
        store=ha.check_store(store),
        more_controller_ports=api[1:],
        relay_ports=_free_ports(relays, 1884, (broker_port, *api)),
    )
    taken = underlay.conflicts(spec)
    if taken:
        raise LabError(
            f"another lab (or a leftover) holds {', '.join(taken[:4])}: "
            "bring it down, or choose other host ids with --host-prefix"
        )
    return spec


def _configs(spec: LabSpec) -> None:
    for replica in spec.controllers:
        spec.controller_config_of(replica).write_text(ha.controller_config(spec, replica))
    brokers = ", ".join(f'"{u}"' for u in spec.agent_brokers)
    for h in spec.hosts:
        path = spec.agent_config(h)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            "[agent]\n"
            f'host_id = "{h}"\n'
            f"broker = [{brokers}]\n"
            f'broker_credentials = "{spec.identity(h)}"\n'
            f'vtep_address = "{spec.vtep(h)}"\n'
            f"metrics_port = {AGENT_METRICS_PORT}\n"
            'log_format = "json"\n'
        )


def up(spec: LabSpec, step: Step, timeout: float = 30.0) -> LabSpec:
    """Build the lab of ``spec``; on any failure, remove what was made and raise."""
    record("lab", str(spec.dir))
    spec.save()
    try:
        step(f"underlay {spec.subnet} on {spec.bridge}, {len(spec.hosts)} host namespaces")
        underlay.create(spec)
        listeners = [("127.0.0.1", spec.broker_port), (spec.gateway, spec.broker_port)]
        try:
            identities.init(
                spec.broker_dir,
                [] if spec.tls else listeners,
                spec.hosts,
                tls_listeners=listeners if spec.tls else [],
                controllers=len(spec.controllers),
            )
        except BrokerError as e:
            raise LabError(f"cannot make the broker's credentials: {e}") from None
        ha.make_relays(spec)
        _configs(spec)

        step(
            f"broker (Mosquitto) on {spec.local_broker_url} and {spec.broker_url}, "
            f"{'client certificates' if spec.tls else 'passwords'} and ACLs"
        )
        start(spec, "broker")
        _until(spec, "broker", timeout, lambda: _listening(spec.broker_port))
        for relay, port in zip(spec.relays, spec.relay_ports, strict=True):
            step(f"{relay} on {spec.relay_url(relay)}, bridged to the root broker")
            start(spec, relay)
            _until(spec, relay, timeout, partial(_listening, port))
        if spec.store == "postgresql":
            step(f"PostgreSQL (initdb) on a unix socket in {spec.postgres_dir}")
            spec.pids["postgres"] = ha.start_postgres(spec)
            spec.save()
        for replica, url in zip(spec.controllers, spec.controller_urls, strict=True):
            step(f"{replica} on {url}")
            start(spec, replica)
            _until(spec, replica, timeout, partial(_healthy, url))

        step(f"agents: {', '.join(spec.hosts)}")
        for h in spec.hosts:
            start(spec, f"agent:{h}")
        _until(spec, "agents", timeout, lambda: not _offline(spec))
    except OSError as e:  # the lab's files (configurations, state): translated here, once
        down(spec.dir)
        raise LabError(f"cannot bring the lab up: {e}") from None
    except BaseException:
        down(spec.dir)
        raise
    return spec


def command(spec: LabSpec, process: str) -> list[str]:
    """How the lab runs ``process``: ``broker``, ``relay-N``, ``controller``,
    ``controller-N`` or ``agent:HOST``."""
    plexus = procs.plexus_command()
    if process == "broker":
        return [*plexus, "broker", "run", "--dir", str(spec.broker_dir)]
    if process in spec.relays:
        return [*plexus, "broker", "run", "--dir", str(spec.relay_dir(process))]
    if process in spec.controllers:
        config = str(spec.controller_config_of(process))
        return [*procs.daemon_command("controller"), "--config", config]
    host = process.removeprefix("agent:")
    if process.startswith("agent:") and host in spec.hosts:
        return [
            "nsenter",  # the host's network namespace only, not a private mount ns
            f"--net=/run/netns/{spec.host_ns(host)}",
            *procs.daemon_command("agent"),
            "--config",
            str(spec.agent_config(host)),
        ]
    raise LabError(f"no process {process!r} in this lab")


def start(spec: LabSpec, process: str) -> int:
    """Start one of the lab's processes (again) and record its pid in the state file."""
    argv = command(spec, process)
    log = spec.log(process.removeprefix("agent:"))
    spec.pids[process] = pid = procs.spawn(argv, log)
    spec.save()
    return pid


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _get_from(url: str, path: str, timeout: float) -> Any:
    try:
        with Client(url, timeout=timeout) as api:
            return api.get(path)
    except CliError:
        return None


def _get(spec: LabSpec, path: str, timeout: float) -> Any:
    """The answer to ``GET path`` of the first lab controller that gives one; None
    while none can (not up yet, or gone): the lab polls, and a failure is "not yet"."""
    for url in spec.controller_urls:
        answer = _get_from(url, path, timeout)
        if answer is not None:
            return answer
    return None


def live_controller(spec: LabSpec) -> str:
    """The URL of the first controller replica that answers."""
    for url in spec.controller_urls:
        if _get_from(url, "/healthz", 1) is not None:
            return url
    raise LabError(f"no controller of the lab answers ({', '.join(spec.controller_urls)})")


def _healthy(url: str) -> bool:
    health = _get_from(url, "/healthz", 1)
    return isinstance(health, dict) and bool(health.get("broker_connected"))


def _offline(spec: LabSpec) -> list[str]:
    """Hosts of the lab the controller does not see online."""
    hosts = _get(spec, "/v1/hosts", 2) or []
    online = {h["id"] for h in hosts if h["state"] == "online"}
    return [h for h in spec.hosts if h not in online]


def _until(spec: LabSpec, what: str, timeout: float, ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        dead = [name for name, pid in spec.pids.items() if not procs.alive(pid)]
        if dead:
            name = dead[0]
            raise LabError(f"{name} exited while the lab came up:\n{tail(spec, name)}")
        if time.monotonic() > deadline:
            raise LabError(f"{what} not ready after {timeout:g} s")
        time.sleep(0.05)


def tail(spec: LabSpec, process: str, lines: int = 15) -> str:
    """The last ``lines`` of a process's log (``agent:h1`` or ``h1`` for an agent)."""
    path = spec.log(process.removeprefix("agent:"))
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


@dataclass
class DownReport:
    existed: bool
    processes: list[int] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def down(directory: Path) -> DownReport:
    """Stop and remove everything of the lab in ``directory``. Idempotent."""
    require_root()
    spec = LabSpec.load(directory)
    if spec is None:
        return DownReport(existed=False)
    report = DownReport(existed=True)
    report.processes = procs.stop(spec)
    report.removed = underlay.destroy(spec)
    shutil.rmtree(spec.dir, ignore_errors=True)
    return report


def status(spec: LabSpec) -> dict[str, Any]:
    """Processes, hosts as the controller sees them, compartments per host."""
    answer = _get(spec, "/v1/hosts", 2)
    hosts = {h["id"]: h for h in answer or []}
    reachable = answer is not None
    namespaces = underlay.host_namespaces(spec)
    rows = []
    for h in spec.hosts:
        known = hosts.get(h, {})
        pid = spec.pids.get(f"agent:{h}")
        rows.append(
            {
                "host": h,
                "namespace": spec.host_ns(h),
                "vtep": spec.vtep(h),
                "agent_pid": pid,
                "agent_running": pid is not None and procs.alive(pid),
                "state": known.get("state", "unknown"),
                "in_sync": known.get("in_sync", False),
                "broker": known.get("broker", ""),
                "compartments": sum(
                    1
                    for ns in namespaces
                    if ns.startswith(names.netns_prefix(h)) and not names.is_router_netns(ns)
                ),
                "log": str(spec.log(h)),
            }
        )
    overall = _get(spec, "/v1/status", 2) or {}
    leader, epoch = overall.get("leader"), overall.get("epoch")
    bridges = {f"relay-{r['name']}": r["state"] for r in overall.get("relays", ())}
    services = []
    for name, url, role in (
        ("broker", spec.local_broker_url, "root broker"),
        *((r, spec.relay_url(r), f"relay ({bridges.get(r, 'unknown')})") for r in spec.relays),
        *(("postgres", spec.store_url, "store") for _ in spec.pids.keys() & {"postgres"}),
        *(
            (c, u, f"leader (epoch {epoch})" if c == leader else "replica")
            for c, u in zip(spec.controllers, spec.controller_urls, strict=True)
        ),
    ):
        pid = spec.pids.get(name)
        log = spec.postgres_dir / "server.log" if name == "postgres" else spec.log(name)
        services.append(
            {
                "name": name,
                "role": role,
                "url": url,
                "pid": pid,
                "running": pid is not None and procs.alive(pid),
                "log": str(log),
            }
        )
    return {
        "leader": leader,
        "epoch": epoch,
        "dir": str(spec.dir),
        "underlay": spec.subnet,
        "bridge": spec.bridge,
        "controller_url": spec.controller_url,
        "controller_reachable": reachable,
        "services": services,
        "hosts": rows,
    }
