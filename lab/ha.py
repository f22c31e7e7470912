"""The lab's highly available parts: a private PostgreSQL cluster shared by several
controller replicas (each its own broker credential, API port and ``replica`` name,
one API token file), and relays bridged to the root broker, the agents' brokers.

What :mod:`.core` calls while a lab comes up; every process started here is recorded
(``PLEXUS_RECORDS``) and in the lab's state, so ``plexus lab down`` stops it, also
after a crash, and removes its directory with the lab's.
"""

from __future__ import annotations

from broker import identities, relays
from broker.errors import BrokerError

from .postgres import Cluster
from .spec import LabError, LabSpec

STORES = ("sqlite", "postgresql")


def check_store(store: str) -> str:
    if store in STORES or store.startswith(("postgresql://", "postgres://")):
        return store
    raise LabError(f"--store {store!r}: sqlite, postgresql (a private cluster) or a URL")


def start_postgres(spec: LabSpec) -> int:
    """``initdb`` in ``DIR/postgres`` and its server on a unix socket there; its pid."""
    return Cluster(spec.postgres_dir).start()


def controller_identity(spec: LabSpec, replica: str) -> str:
    """``controller`` → ``@controller``, ``controller-2`` → ``@controller-2``."""
    return identities.CONTROLLER + replica.removeprefix("controller")


def controller_config(spec: LabSpec, replica: str) -> str:
    return (
        "[controller]\n"
        f'broker = "{spec.local_broker_url}"\n'
        f'broker_credentials = "{spec.identity(controller_identity(spec, replica))}"\n'
        f'store = "{spec.store_url}"\n'
        f'listen = "127.0.0.1:{spec.controller_port_of(replica)}"\n'
        f'api_token_file = "{spec.api_token_file}"\n'
        f'replica = "{replica}"\n'
        'log_format = "json"\n'
    )


def make_relays(spec: LabSpec) -> None:
    """Each relay's identity on the root (``add-relay``) and its directory (``init
    --relay-of``): what ``plexus broker`` does, before the root broker starts."""
    for relay in spec.relays:
        port = spec.relay_ports[spec.relays.index(relay)]
        try:
            creds = relays.add_relay(spec.broker_dir, relay.removeprefix("relay-"))
            relays.init_relay(
                spec.relay_dir(relay),
                spec.local_broker_url,
                creds,
                spec.broker_dir,
                [("127.0.0.1", port), (spec.gateway, port)],
            )
        except BrokerError as e:
            raise LabError(f"cannot make {relay}: {e}") from None
