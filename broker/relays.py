"""Broker relays: Mosquitto brokers bridged to the root broker, for fan-out past one
broker. Agents know several broker URLs and fail over between them.

On the root broker's directory, ``add_relay`` issues the identity ``@relay-NAME`` (no
host id starts with ``@``) and its ACL block (:func:`broker.identities.relay_acl`): read
every host's desired document and the network topics, write every host's status and
events. A relay directory (``plexus broker init DIR --relay-of URL``) is a broker
directory like the root's, plus::

    bridge/       the relay's identity on the root (copied from the root's directory)
    relay-of      the root's URL; identities-from: the root's directory

Its ``mosquitto.conf`` ends with a bridge to the root that carries down what agents
read (desired documents, network records, snapshots, changes: retained ones stay
retained on the relay) and up what they write (status, its Last Will included, and
events). Hosts use the same credentials on the root and on every relay: the relay holds
a copy of the root's host identities and revoked list, and the same per-host ACL, so a
host reads only its own desired document wherever it connects. :func:`sync_identities`
copies them again after an ``add-host`` or ``revoke`` on the root.

The relay keeps nothing across a restart (``persistence false``, as the root): its
bridge subscribes again and the root sends every retained record anew.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from proto import topics
from proto.mqtt import BrokerURL
from proto.types import is_id

from .errors import IdentityError
from .identities import (
    RELAY_PREFIX,
    BrokerDir,
    _acl,
    _existing,
    _new_identity,
    _translated,
    _write_passwd,
    config,
    is_relay,
)
from .pki import write as _write

#: the bridge's topics: (pattern, direction, QoS). Down: what agents subscribe to;
#: up: what they publish. No pattern is both, so nothing loops back.
BRIDGE_TOPICS = (
    (f"{topics.ROOT}/hosts/+/desired", "in", 1),
    (f"{topics.ROOT}/networks/#", "in", 1),
    (f"{topics.ROOT}/hosts/+/status", "out", 1),
    (f"{topics.ROOT}/hosts/+/events", "out", 0),
)
BRIDGE_DIR = "bridge"
RELAY_OF = "relay-of"
IDENTITIES_FROM = "identities-from"


def relay_identity(name: str) -> str:
    """``NAME`` → ``@relay-NAME``, the relay's user on the root broker."""
    if not is_id(name):
        raise IdentityError(f"relay name {name!r} is not an id ([a-z0-9][a-z0-9._-]{{0,62}})")
    return RELAY_PREFIX + name


def relay_name(identity: str) -> str:
    """``@relay-NAME`` → ``NAME``."""
    if not is_relay(identity):
        raise IdentityError(f"{identity!r} is not a relay's identity (@relay-NAME)")
    return identity[len(RELAY_PREFIX) :]


@_translated
def add_relay(directory: Path, name: str) -> Path:
    """Issue the identity of relay ``name`` on the root broker of ``directory`` (kept
    when it exists; a revoked one gets a new credential). Returns its directory, to
    give to ``init_relay`` as ``credentials``."""
    bd = _existing(directory)
    if (bd.path / RELAY_OF).exists():
        raise IdentityError(f"{directory} is a relay: add relays on the root broker")
    ident = relay_identity(name)
    revoked = set(bd.revoked())
    if ident in revoked or not (bd.identity(ident) / "password").exists():
        _new_identity(bd, ident)
    still = revoked - {ident}
    _write(bd.revoked_file, "".join(f"{n}\n" for n in sorted(still)))
    _acl(bd, still)
    _write_passwd(bd)
    return bd.identity(ident)


def bridge_config(bd: BrokerDir, root: BrokerURL) -> str:
    """The bridge section of a relay's ``mosquitto.conf`` (after every listener and
    global option: Mosquitto reads bridge options up to the end of the file)."""
    creds = bd.path / BRIDGE_DIR
    user = (creds / "username").read_text().strip()
    lines = [
        "# the bridge to the root broker (plexus broker init --relay-of)",
        "connection plexus-root",
        f"address {root.host}:{root.port}",
        "bridge_protocol_version mqttv50",
        f"remote_clientid {user}",
        f"remote_username {user}",
        f"remote_password {(creds / 'password').read_text().strip()}",
        # a fresh session on every connect: the root sends every retained record again,
        # which is what a relay restarted without persistence needs
        "cleansession true",
        # a bridge-aware root is a Mosquitto feature; plain MQTT 5 (retained records
        # arrive retained and stay so here: tests/integration/test_relays.py)
        "try_private false",
        # the bridge's state, on the root (and here): retained "1" once connected, and
        # "0" by the bridge's Last Will on the root when the connection is lost (a
        # Mosquitto bridge feature; the root needs only plain MQTT); the controllers
        # read it (plexus status). Not local only: that would keep it on this relay
        "notifications true",
        f"notification_topic {topics.relay_state(relay_name(user))}",
        "notifications_local_only false",
        "start_type automatic",
        "restart_timeout 1 5",
        "keepalive_interval 10",
    ]
    if root.tls:
        lines += [
            f"bridge_cafile {creds / 'ca.pem'}",
            f"bridge_certfile {creds / 'cert.pem'}",
            f"bridge_keyfile {creds / 'key.pem'}",
            "bridge_tls_version tlsv1.2",
        ]
    lines += [f"topic {t} {way} {qos}" for t, way, qos in BRIDGE_TOPICS]
    return "\n".join(lines) + "\n"


@_translated
def init_relay(
    directory: Path,
    root_url: str,
    credentials: Path,
    identities_from: Path,
    listeners: Sequence[tuple[str, int]],
    *,
    log_file: Path | None = None,
) -> BrokerDir:
    """A new relay directory: its listeners, the root's host identities (same
    credentials, same per-host ACL), and a bridge to ``root_url`` with the relay's
    identity in ``credentials`` (from ``add_relay``)."""
    directory = directory.resolve()  # Mosquitto runs from anywhere
    bd = BrokerDir(directory)
    if bd.initialised():
        raise IdentityError(f"{directory} already holds a broker configuration")
    try:
        root = BrokerURL.parse(root_url)
    except ValueError as e:
        raise IdentityError(str(e)) from None
    user = (credentials / "username").read_text().strip()
    if not is_relay(user):
        raise IdentityError(
            f"{credentials} holds {user!r}, not a relay's identity (plexus broker add-relay)"
        )
    if root.tls and not (credentials / "cert.pem").exists():
        raise IdentityError(f"{root_url} is TLS but {credentials} holds no client certificate")
    _existing(identities_from)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    bd.identities.mkdir(exist_ok=True)
    creds = bd.path / BRIDGE_DIR
    creds.mkdir(mode=0o700, exist_ok=True)
    for f in sorted(credentials.iterdir()):
        if f.is_file():
            _write(creds / f.name, f.read_bytes(), 0o600)
    _write(bd.path / RELAY_OF, f"{root}\n")
    _write(bd.path / IDENTITIES_FROM, f"{identities_from.resolve()}\n")
    _sync(bd, BrokerDir(identities_from))
    # the configuration last (an initialised directory is a complete one); 0600: it
    # holds the relay's password on the root
    conf = config(bd, listeners, [], log_file) + bridge_config(bd, root)
    _write(bd.conf, conf, 0o600)
    return bd


@_translated
def sync_identities(directory: Path, root_dir: Path | None = None) -> tuple[list[str], list[str]]:
    """Copy the root's host identities and revoked list to the relay in ``directory``
    again (after ``add-host`` or ``revoke`` on the root). Returns the host names added
    (or whose credential changed) and removed."""
    bd = _existing(directory)
    if not (bd.path / RELAY_OF).exists():
        raise IdentityError(f"{directory} is not a relay (plexus broker init --relay-of)")
    source = root_dir or Path((bd.path / IDENTITIES_FROM).read_text().strip())
    return _sync(bd, _existing(source))


def _hosts(bd: BrokerDir) -> list[str]:
    """Host identities only: not the controller's, not a relay's, nor any other name
    starting with ``@`` (no host id does)."""
    return [n for n in bd.names() if is_id(n)]


def _sync(bd: BrokerDir, root: BrokerDir) -> tuple[list[str], list[str]]:
    want = set(_hosts(root))
    have = set(_hosts(bd))
    changed = []
    for n in sorted(want):
        src, dst = root.identity(n), bd.identity(n)
        if n in have and (src / "password").read_bytes() == (dst / "password").read_bytes():
            continue
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(src, dst)
        changed.append(n)
    removed = sorted(have - want)
    for n in removed:
        shutil.rmtree(bd.identity(n))
    revoked = [n for n in root.revoked() if is_id(n)]
    _write(bd.revoked_file, "".join(f"{n}\n" for n in revoked))
    _acl(bd, revoked)
    _write_passwd(bd)
    return changed, removed
