"""What a lab is and everything it makes, fixed before anything is made.

The spec is written to ``DIR/lab.json`` first, so that ``plexus lab down`` can remove
every namespace, link, process and file the lab made, even when ``lab up`` or the
lab's processes died half-way.

The lab's errors are one class, raised with the reason shown to the user; what the
lab meets underneath (OSError, netlink's errors, a broker's set-up refused, a process
that exits) is translated into it where it is met::

    PlexusError                  (proto.errors)
    └── LabError                 a lab operation cannot go on (``plexus lab``: exit 1)
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from proto import names
from proto.errors import PlexusError

DEFAULT_DIR = Path("/run/plexus/lab")
#: the benchmarking range (RFC 2544): never routed on the internet
UNDERLAY = ipaddress.IPv4Network("198.18.0.0/15")
STATE = "lab.json"
HOST_NS_PREFIX = "plab-"
AGENT_METRICS_PORT = 9470


class LabError(PlexusError):
    """A lab operation cannot go on; ``reason`` is shown to the user."""


class LabSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dir: Path
    hosts: list[str]
    subnet: str = Field(description="the underlay, a /24 in 198.18.0.0/15")
    bridge: str = Field(description="the underlay bridge in the machine's namespace")
    broker_port: int
    controller_port: int
    #: the broker's listeners are TLS with client certificates (else passwords)
    tls: bool = False
    #: ``sqlite``, ``postgresql`` (a private cluster in ``DIR/postgres``) or a URL
    store: str = "sqlite"
    #: the API ports of further controller replicas (``controller-2``…)
    more_controller_ports: list[int] = Field(default_factory=list)
    #: the ports of the relays ``relay-1``… (agents connect to them, not to the root)
    relay_ports: list[int] = Field(default_factory=list)
    created: float = Field(default_factory=time.time)
    #: pid of every process the lab started: "broker", "postgres", "relay-N",
    #: "controller", "controller-N", "agent:HOST"
    pids: dict[str, int] = Field(default_factory=dict)

    @classmethod
    def new(
        cls,
        directory: Path,
        hosts: list[str],
        subnet: str,
        broker_port: int,
        controller_port: int,
        tls: bool = False,
        store: str = "sqlite",
        more_controller_ports: list[int] | None = None,
        relay_ports: list[int] | None = None,
    ) -> LabSpec:
        directory = directory.resolve()
        return cls(
            dir=directory,
            hosts=hosts,
            subnet=subnet,
            bridge=bridge_name(directory),
            broker_port=broker_port,
            controller_port=controller_port,
            tls=tls,
            store=store,
            more_controller_ports=more_controller_ports or [],
            relay_ports=relay_ports or [],
        )

    # -- names and addresses -----------------------------------------------------------

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    @property
    def gateway(self) -> str:
        """The machine's own address on the underlay: broker and controller listen here."""
        return str(self.network[254])

    def vtep(self, host: str) -> str:
        return str(self.network[self.hosts.index(host) + 1])

    def host_ns(self, host: str) -> str:
        return f"{HOST_NS_PREFIX}{host}"

    def port(self, host: str) -> str:
        """The underlay veth end on the machine's side (≤ 15 characters)."""
        return f"{self.bridge}-{self.hosts.index(host)}"

    def compartment_ns(self, host: str, compartment: str) -> str:
        return names.netns(host, compartment)

    # -- processes and files -----------------------------------------------------------

    @property
    def broker_dir(self) -> Path:
        return self.dir / "broker"

    @property
    def broker_url(self) -> str:
        """Where the agents, inside their host namespaces, reach the root broker."""
        return f"{self.scheme}://{self.gateway}:{self.broker_port}"

    @property
    def relays(self) -> list[str]:
        return [f"relay-{i + 1}" for i in range(len(self.relay_ports))]

    def relay_dir(self, relay: str) -> Path:
        return self.dir / relay

    def relay_url(self, relay: str) -> str:
        """Where the agents reach ``relay``."""
        port = self.relay_ports[self.relays.index(relay)]
        return f"{self.scheme}://{self.gateway}:{port}"

    @property
    def agent_brokers(self) -> list[str]:
        """The agents' broker URLs: every relay, or the root broker without relays."""
        return [self.relay_url(r) for r in self.relays] or [self.broker_url]

    @property
    def controllers(self) -> list[str]:
        """The controller replicas' process names: ``controller``, ``controller-2``…"""
        more = range(2, len(self.more_controller_ports) + 2)
        return ["controller", *(f"controller-{i}" for i in more)]

    def controller_port_of(self, replica: str) -> int:
        return [self.controller_port, *self.more_controller_ports][self.controllers.index(replica)]

    @property
    def controller_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{self.controller_port_of(c)}" for c in self.controllers]

    def controller_config_of(self, replica: str) -> Path:
        return self.dir / f"{replica}.toml"

    @property
    def postgres_dir(self) -> Path:
        return self.dir / "postgres"

    @property
    def store_url(self) -> str:
        """What the controllers get as ``store``."""
        if self.store == "sqlite":
            return str(self.dir / "plexus.db")
        if self.store == "postgresql":
            return f"postgresql://plexus@/postgres?host={self.postgres_dir}"
        return self.store

    @property
    def api_token_file(self) -> Path:
        return self.dir / "api-token"

    @property
    def local_broker_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.broker_port}"

    @property
    def scheme(self) -> str:
        return "mqtts" if self.tls else "mqtt"

    def identity(self, name: str) -> Path:
        """The broker credentials of ``name`` (a host id, or the controller's)."""
        return self.broker_dir / "identities" / name

    @property
    def controller_url(self) -> str:
        return f"http://127.0.0.1:{self.controller_port}"

    @property
    def controller_config(self) -> Path:
        return self.dir / "controller.toml"

    def agent_config(self, host: str) -> Path:
        return self.dir / "agents" / f"{host}.toml"

    def log(self, process: str) -> Path:
        """``broker``, ``controller``, ``controller-N``, ``relay-N``, or a host id."""
        if process in ("broker", *self.controllers, *self.relays):
            return self.dir / "logs" / f"{process}.log"
        return self.dir / "logs" / f"agent-{process}.log"

    def marks(self) -> set[str]:
        """Arguments only this lab's processes carry: how they are found after a crash."""
        return {
            str(self.broker_dir),
            str(self.broker_dir / "mosquitto.conf"),
            str(self.controller_config),
            *(str(self.controller_config_of(c)) for c in self.controllers),
            *(str(self.relay_dir(r)) for r in self.relays),
            *(str(self.relay_dir(r) / "mosquitto.conf") for r in self.relays),
            str(self.postgres_dir / "data"),
            *(str(self.agent_config(h)) for h in self.hosts),
        }

    # -- the state file ----------------------------------------------------------------

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".{STATE}.tmp"
        tmp.write_text(self.model_dump_json(indent=2) + "\n")
        os.replace(tmp, self.dir / STATE)

    @classmethod
    def load(cls, directory: Path) -> LabSpec | None:
        path = directory / STATE
        try:
            return cls.model_validate(json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise LabError(f"cannot read the lab's state {path}: {e}") from None


def bridge_name(directory: Path) -> str:
    """``plab`` + 6 hex digits of the lab directory: one bridge per lab, ≤ 10 characters
    so that ports ``BRIDGE-N`` fit in 15."""
    return "plab" + hashlib.sha256(str(directory).encode()).hexdigest()[:6]


LOCK = Path("/run/plexus/lab.lock")


@contextlib.contextmanager
def machine_lock(timeout: float = 120.0) -> Iterator[None]:
    """Held from choosing a lab's underlay /24 and ports until what it chose is in use
    (its bridge has the address, its broker and controller listen): two labs coming up
    at once on one machine would otherwise choose the same ones."""
    try:
        LOCK.parent.mkdir(parents=True, exist_ok=True)
        f = open(LOCK, "a")  # noqa: SIM115 - closed below, after the lock is released
    except OSError as e:
        raise LabError(f"cannot take the labs' lock {LOCK}: {e.strerror}") from None
    with f:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LabError(f"another lab has been coming up for {timeout:.0f} s") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def free_subnet(in_use: list[ipaddress.IPv4Network]) -> str:
    """The first /24 of the underlay range that overlaps nothing on this machine."""
    for candidate in UNDERLAY.subnets(new_prefix=24):
        if candidate.network_address.packed[2] == 0:
            continue  # 198.18.0.0/24 and 198.19.0.0/24: left for people's own use
        if not any(candidate.overlaps(n) for n in in_use):
            return str(candidate)
    raise LabError("no free /24 left in 198.18.0.0/15 on this machine")
