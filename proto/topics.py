"""Topic builders and the one parser for ``plexus/v1/...``.

plexus/v1/hosts/{host}/desired            retained, controller -> one agent
plexus/v1/hosts/{host}/status             retained, agent -> controller (and Last Will)
plexus/v1/hosts/{host}/events             not retained, agent -> controller
plexus/v1/networks/{net}                  retained, the network's spec
plexus/v1/networks/{net}/snapshot/{shard} retained, a shard of the endpoint table
plexus/v1/networks/{net}/snapshot/index   retained, the shards making up the table at G
plexus/v1/networks/{net}/changes          not retained, one change per generation

Outside the versioned root, because its payload is Mosquitto's, not a Plexus message:

plexus/relays/{relay}                     retained, a relay's bridge: "1" up, "0" down
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .errors import BadTopic
from .table import MAX_SHARDS
from .types import is_id

ROOT = "plexus/v1"

TopicKind = Literal[
    "host_desired",
    "host_status",
    "host_events",
    "network",
    "network_snapshot",
    "network_snapshot_index",
    "network_changes",
]

#: subscription filters
ALL_HOST_STATUS = f"{ROOT}/hosts/+/status"
ALL_HOST_EVENTS = f"{ROOT}/hosts/+/events"
ALL_HOST_DESIRED = f"{ROOT}/hosts/+/desired"
ALL_NETWORKS = f"{ROOT}/networks/#"

#: a relay's bridge state (Mosquitto's bridge notification: plain "1" or "0")
RELAYS = "plexus/relays"
ALL_RELAYS = f"{RELAYS}/+"


def host_desired(host: str) -> str:
    return f"{ROOT}/hosts/{_checked(host)}/desired"


def host_status(host: str) -> str:
    return f"{ROOT}/hosts/{_checked(host)}/status"


def host_events(host: str) -> str:
    return f"{ROOT}/hosts/{_checked(host)}/events"


def network(net: str) -> str:
    return f"{ROOT}/networks/{_checked(net)}"


def network_snapshot(net: str, shard: int) -> str:
    if not 0 <= shard < MAX_SHARDS:
        raise ValueError(f"shard {shard} out of range")
    return f"{ROOT}/networks/{_checked(net)}/snapshot/{shard}"


def network_snapshot_index(net: str) -> str:
    return f"{ROOT}/networks/{_checked(net)}/snapshot/index"


def network_snapshots(net: str) -> str:
    """Filter matching every shard of a network's snapshot, and its index."""
    return f"{ROOT}/networks/{_checked(net)}/snapshot/+"


def network_changes(net: str) -> str:
    return f"{ROOT}/networks/{_checked(net)}/changes"


def relay_state(relay: str) -> str:
    return f"{RELAYS}/{_checked(relay)}"


def relay_of(topic: str) -> str | None:
    """The relay a ``plexus/relays/{relay}`` topic names; None for any other topic;
    :class:`BadTopic` when it is one but the name does not parse."""
    prefix = RELAYS + "/"
    if not topic.startswith(prefix):
        return None
    name = topic[len(prefix) :]
    if not is_id(name):
        raise BadTopic(topic, f"relay name {name[:64]!r} does not parse")
    return name


def kind_of(topic: str) -> str:
    """A topic's kind, or ``other`` (for metrics' labels)."""
    try:
        return parse(topic).kind
    except BadTopic:
        return "other"


def _checked(ident: str) -> str:
    if not is_id(ident):
        raise ValueError(f"{ident!r} is not a valid id")
    return ident


@dataclass(frozen=True, slots=True)
class Topic:
    kind: TopicKind
    host: str | None = None
    network: str | None = None
    shard: int | None = None


_HOST_LEAVES: dict[str, TopicKind] = {
    "desired": "host_desired",
    "status": "host_status",
    "events": "host_events",
}


def parse(topic: str) -> Topic:
    """Parse a concrete topic; raises :class:`BadTopic` for anything off-contract."""
    prefix = ROOT + "/"
    if not topic.startswith(prefix):
        raise BadTopic(topic, f"not under {ROOT}/")
    parts = topic[len(prefix) :].split("/")
    if parts[0] == "hosts" and len(parts) == 3:
        host, leaf = parts[1], parts[2]
        if not is_id(host):
            raise BadTopic(topic, f"host id {host!r} does not parse")
        if leaf not in _HOST_LEAVES:
            raise BadTopic(topic, f"unknown host topic {leaf!r}")
        return Topic(_HOST_LEAVES[leaf], host=host)
    if parts[0] == "networks" and 2 <= len(parts) <= 4:
        net = parts[1]
        if not is_id(net):
            raise BadTopic(topic, f"network id {net!r} does not parse")
        if len(parts) == 2:
            return Topic("network", network=net)
        if len(parts) == 3 and parts[2] == "changes":
            return Topic("network_changes", network=net)
        if len(parts) == 4 and parts[2] == "snapshot":
            shard = parts[3]
            if shard == "index":
                return Topic("network_snapshot_index", network=net)
            if not shard.isdigit() or len(shard) > 4 or int(shard) >= MAX_SHARDS:
                raise BadTopic(topic, f"shard {shard!r} does not parse")
            return Topic("network_snapshot", network=net, shard=int(shard))
    raise BadTopic(topic, "unknown topic")
