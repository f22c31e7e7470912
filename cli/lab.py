"""``plexus lab``: a multi-host Plexus on one Linux machine, no Docker needed."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from lab.spec import DEFAULT_DIR, LabError, LabSpec, machine_lock
from proto.signals import on_signals

from .console import Output, err, out, say, show
from .errors import CliError
from .options import OutputOpt

lab_app = typer.Typer(
    help="A multi-host lab on this machine: hosts are network namespaces, each with a "
    "real agent process, beside a real broker and controller (needs root).",
    no_args_is_help=True,
)

DirOpt = Annotated[
    Path, typer.Option("--dir", envvar="PLEXUS_LAB_DIR", help="the lab's state directory")
]
HostsOpt = Annotated[int, typer.Option("--hosts", help="how many hosts")]
PrefixOpt = Annotated[str, typer.Option("--host-prefix", help="host ids are PREFIX1, PREFIX2, …")]
TlsOpt = Annotated[
    bool, typer.Option("--tls", help="the broker speaks TLS; clients present certificates")
]
ControllersOpt = Annotated[
    int, typer.Option("--controllers", help="controller replicas (more than 1: a shared store)")
]
StoreOpt = Annotated[
    str,
    typer.Option(
        "--store",
        help="sqlite, postgresql (a private cluster made by initdb in the lab directory) "
        "or a postgresql:// URL",
    ),
]
RelaysOpt = Annotated[
    int, typer.Option("--relays", help="relays bridged to the root broker; agents use them")
]


class Steps:
    """Shows the step under way with a spinner and each finished one with its time."""

    def __init__(self) -> None:
        self.status = err.status("")
        self.current: str | None = None
        self.started = 0.0

    def __call__(self, message: str) -> None:
        self._finish("[green]✓[/green]")
        self.current, self.started = message, time.monotonic()
        self.status.update(escape(message))

    def _finish(self, mark: str) -> None:
        if self.current is not None:
            ms = (time.monotonic() - self.started) * 1000
            err.print(f"{mark} {escape(self.current)} [dim]({ms:.0f} ms)[/dim]", highlight=False)
            self.current = None

    def __enter__(self) -> Steps:
        self.status.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.status.stop()
        self._finish("[red]✗[/red]" if t else "[green]✓[/green]")


def _interrupt(signum: int) -> None:
    raise KeyboardInterrupt


def _up(
    directory: Path,
    hosts: int,
    host_prefix: str,
    tls: bool,
    controllers: int = 1,
    store: str = "sqlite",
    relays: int = 0,
) -> LabSpec:
    from lab import core

    core.require_root()  # before the machine's lock, which only root may take
    on_signals(_interrupt)  # SIGTERM too removes what was made (this process only)
    try:
        with machine_lock():
            spec = core.plan(
                directory,
                hosts,
                host_prefix,
                tls,
                controllers=controllers,
                store=store,
                relays=relays,
            )
            with Steps() as step:
                return core.up(spec, step)
    except KeyboardInterrupt:
        raise CliError("interrupted: what the lab had made is removed again", code=130) from None


def _load(directory: Path) -> LabSpec:
    spec = LabSpec.load(directory)
    if spec is None:
        raise LabError(f"no lab in {directory}: start one with `plexus lab up`")
    return spec


def _summary(spec: LabSpec) -> None:
    table = Table(show_edge=False, header_style="bold", title="plexus lab")
    for c in ("HOST", "NAMESPACE", "VTEP", "AGENT PID", "LOG"):
        table.add_column(c)
    for h in spec.hosts:
        pid = spec.pids.get(f"agent:{h}")
        table.add_row(*map(Text, (h, spec.host_ns(h), spec.vtep(h), str(pid), str(spec.log(h)))))
    out.print(table)
    auth = "client certificates" if spec.tls else "passwords"
    say(
        f"broker      {spec.local_broker_url} (agents: {spec.broker_url}); {auth} and ACLs, "
        f"credentials in {spec.broker_dir / 'identities'}"
    )
    for relay in spec.relays:
        say(f"{relay:<11} {spec.relay_url(relay)}, bridged to the root broker")
    if spec.store == "postgresql":
        say(f"postgresql  {spec.store_url}")
    for replica, url in zip(spec.controllers, spec.controller_urls, strict=True):
        say(f"{replica:<11} {url}")
    say(f"logs        {spec.dir / 'logs'}")
    say(f"underlay    {spec.subnet} on bridge {spec.bridge}")
    say(f"\nexport PLEXUS_CONTROLLER={spec.controller_url}")


@lab_app.command("up")
def lab_up(
    hosts: HostsOpt = 3,
    directory: DirOpt = DEFAULT_DIR,
    host_prefix: PrefixOpt = "h",
    tls: TlsOpt = False,
    controllers: ControllersOpt = 1,
    store: StoreOpt = "sqlite",
    relays: RelaysOpt = 0,
    output: OutputOpt = Output.table,
) -> None:
    """Bring a lab up: underlay, broker (credentials and ACLs on), its relays, the store,
    the controller replicas and one agent per host."""
    spec = _up(directory, hosts, host_prefix, tls, controllers, store, relays)
    if output is Output.json:
        show(spec.model_dump(mode="json"), output, [])
    else:
        _summary(spec)


@lab_app.command("down")
def lab_down(directory: DirOpt = DEFAULT_DIR, output: OutputOpt = Output.table) -> None:
    """Stop every process of the lab and remove its namespaces, links and files."""
    from lab import core

    report = core.down(directory)
    if output is Output.json:
        show(vars(report), output, [])
    elif not report.existed:
        say(f"no lab in {directory}: nothing to do")
    else:
        say(
            f"lab in {directory} removed: {len(report.processes)} processes stopped, "
            f"{len(report.removed)} namespaces and links removed"
        )


@lab_app.command("status")
def lab_status(directory: DirOpt = DEFAULT_DIR, output: OutputOpt = Output.table) -> None:
    """The lab's processes and hosts (exit 4 when a process is down or a host not in sync)."""
    from lab import core

    data = core.status(_load(directory))
    if output is Output.json:
        show(data, output, [])
    else:
        show(data["services"], output, ["name", "role", "url", "pid", "running", "log"])
        out.print()
        hosts = ["host", "vtep", "agent_pid", "agent_running", "state", "in_sync"]
        show(data["hosts"], output, [*hosts, "compartments", "broker"], optional=("broker",))
    healthy = all(s["running"] for s in data["services"]) and all(
        h["agent_running"] and h["in_sync"] for h in data["hosts"]
    )
    if not healthy:
        raise typer.Exit(4)


@lab_app.command("logs")
def lab_logs(
    target: Annotated[
        str, typer.Argument(help="a host id, `controller[-N]`, `relay-N` or `broker`")
    ],
    lines: Annotated[int, typer.Option("--lines", "-n", help="how many lines")] = 50,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing")] = False,
    directory: DirOpt = DEFAULT_DIR,
) -> None:
    """Print the log of a host's agent, the controller or the broker."""
    spec = _load(directory)
    if target not in (*spec.hosts, *spec.controllers, *spec.relays, "broker"):
        raise CliError(
            f"no {target!r} in this lab: a host ({', '.join(spec.hosts)}), "
            f"{', '.join([*spec.controllers, *spec.relays])} or broker"
        )
    path = spec.log(target)
    try:
        with open(path, errors="replace") as f:
            for line in f.readlines()[-lines:] if lines > 0 else []:
                typer.echo(line, nl=False)
            while follow:
                line = f.readline()
                if line:
                    typer.echo(line, nl=False)
                else:
                    time.sleep(0.2)
    except OSError as e:
        raise CliError(f"cannot read {path}: {e}") from None
    except KeyboardInterrupt:
        pass


@lab_app.command(
    "exec",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
def lab_exec(
    host: Annotated[str, typer.Argument(help="host id")],
    args: Annotated[
        list[str] | None, typer.Argument(help="COMPARTMENT -- CMD… (a shell if no CMD)")
    ] = None,
    host_ns: Annotated[
        bool, typer.Option("--host-ns", help="run in the host's own namespace instead")
    ] = False,
    directory: DirOpt = DEFAULT_DIR,
) -> None:
    """Run a command inside a compartment, like `docker exec`."""
    from pyroute2 import netns

    spec = _load(directory)
    if host not in spec.hosts:
        raise CliError(f"no host {host!r} in this lab (hosts: {', '.join(spec.hosts)})")
    rest = [a for a in args or [] if a != "--"] if host_ns else list(args or [])
    if host_ns:
        ns = spec.host_ns(host)
    else:
        if not rest:
            raise CliError(
                "name a compartment (or use --host-ns): plexus lab exec HOST COMPARTMENT -- CMD"
            )
        compartment = rest.pop(0)
        ns = spec.compartment_ns(host, compartment)
        if ns not in netns.listnetns():
            raise CliError(
                f"no compartment {compartment!r} on host {host} (namespace {ns} does not exist)"
            )
    if rest and rest[0] == "--":
        rest.pop(0)
    cmd = rest or [os.environ.get("SHELL", "/bin/sh")]
    try:
        os.execvp("nsenter", ["nsenter", f"--net=/run/netns/{ns}", *cmd])
    except OSError as e:
        raise CliError(f"cannot run nsenter: {e}") from None


@lab_app.command("demo")
def lab_demo(
    hosts: HostsOpt = 3,
    directory: DirOpt = DEFAULT_DIR,
    host_prefix: PrefixOpt = "h",
    tls: TlsOpt = False,
    output: OutputOpt = Output.table,
) -> None:
    """A lab (brought up if none runs), an overlay network with two compartments per host
    made through the API, and a ping matrix. The lab stays up for you to explore."""
    from lab import core, demo, procs

    from .apply import apply, wait_hosts
    from .client import Client

    spec = LabSpec.load(directory)
    if spec is None:
        spec = _up(directory, hosts, host_prefix, tls)
        if output is not Output.json:
            _summary(spec)
            out.print()
    # replicas and relays may be down (the lab is HA), as long as one of each runs
    spare = (*spec.controllers, *spec.relays)
    down = [name for name, pid in spec.pids.items() if not procs.alive(pid) and name not in spare]
    if spec.relays and not any(procs.alive(spec.pids.get(r, 0)) for r in spec.relays):
        down.append("every relay")
    if down:
        raise LabError(
            f"the lab in {directory} is not healthy ({', '.join(down)} not running): "
            "`plexus lab down`, then `plexus lab demo` again"
        )
    topo = demo.topology(spec.hosts)
    url = core.live_controller(spec)
    with Steps() as step, Client(url) as api:
        step("hosts online")
        wait_hosts(api, spec.hosts, 30)
        step(
            f"overlay network {demo.NETWORK} ({demo.SUBNET}, VNI {demo.VNI}), "
            f"{len(topo.compartments)} compartments, {len(topo.endpoints)} endpoints"
        )
        apply(api, topo)
        eps = api.get("/v1/endpoints", params={"network": demo.NETWORK})
        targets = [
            demo.Target(e["id"], e["host"], e["compartment"], e["ip"])
            for e in eps
            if e["id"] in {x.id for x in topo.endpoints}
        ]
        step(f"ping matrix ({len(targets) * (len(targets) - 1)} pairs)")
        probes = asyncio.run(demo.matrix(targets))
    reached = sum(1 for p in probes if p.rtt_ms is not None)
    if output is Output.json:
        show(
            {
                "controller_url": url,
                "network": demo.NETWORK,
                "endpoints": [vars(t) for t in targets],
                "probes": [vars(p) for p in probes],
                "reachable": reached,
                "pairs": len(probes),
            },
            output,
            [],
        )
    else:
        _matrix(targets, probes)
        first, second = targets[0], targets[-1]
        say(
            f"\n{reached}/{len(probes)} pairs reachable. The lab stays up; try:\n"
            f"  export PLEXUS_CONTROLLER={url}\n"
            f"  plexus endpoint list\n"
            f"  plexus lab exec {first.host} {first.compartment} -- ping -c 3 {second.ip}\n"
            f"  plexus lab down"
        )
    if reached != len(probes):
        raise typer.Exit(1)


def _matrix(targets: list[Any], probes: list[Any]) -> None:
    rtt = {(p.source, p.target): p.rtt_ms for p in probes}
    table = Table(
        title="ping matrix (round trip, ms)", show_edge=False, header_style="bold", show_lines=False
    )
    table.add_column("FROM \\ TO")
    for t in targets:
        table.add_column(Text(t.compartment), justify="right")
    for s in targets:
        cells = []
        for t in targets:
            if s == t:
                cells.append("[dim]·[/dim]")
            elif rtt.get((s.endpoint, t.endpoint)) is None:
                cells.append("[red]✗[/red]")
            else:
                cells.append(f"[green]{rtt[(s.endpoint, t.endpoint)]:.2f}[/green]")
        table.add_row(Text(f"{s.compartment} {s.ip}"), *cells)
    out.print(table)
