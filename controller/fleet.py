"""The broker layer as this controller sees it: the broker each host's agent is on (the
``broker`` of its status) and each relay's bridge to the root broker.

A relay's state is Mosquitto's own bridge notification (:mod:`broker.relays` writes it
into the relay's configuration): on ``plexus/relays/NAME``
(:func:`proto.topics.relay_state`), retained, ``1`` once the relay's bridge is
connected to the root, ``0`` published by the root as the bridge's Last Will when the
connection is lost (a relay killed; a relay stopped cleanly sends ``0`` too: both
checked with Mosquitto 2.0.11). The payload is Mosquitto's plain text, not a Plexus
message, which is why the topic is outside ``plexus/v1/``. It is validated as strictly:
anything but ``1``, ``0`` or empty (a cleared retained message: the relay is forgotten)
is logged and ignored. Every replica follows it, as it follows the hosts' statuses.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import structlog

from proto import topics
from proto.errors import BadTopic, WireError

log = structlog.get_logger("plexus.controller.fleet")

RelayState = Literal["connected", "disconnected"]
_STATES: dict[bytes, RelayState] = {b"1": "connected", b"0": "disconnected"}


def relay_state(topic: str, payload: bytes) -> tuple[str, RelayState | None]:
    """The relay a message names and its state (None: cleared); raises
    :class:`~proto.errors.WireError` (a :class:`~proto.errors.BadTopic` for the topic)
    for anything else."""
    name = topics.relay_of(topic)
    if name is None:
        raise BadTopic(topic, f"not under {topics.RELAYS}/")
    if not payload:
        return name, None
    state = _STATES.get(payload)
    if state is None:
        raise WireError(f"{topic}: payload {payload[:16]!r} is not a relay's state (1 or 0)")
    return name, state


@dataclass(frozen=True, slots=True)
class Relay:
    name: str
    state: RelayState
    #: when this controller saw it take that state (or first heard of it), Unix time
    since: float


class Fleet:
    """Relays' states and the broker each host is on; fed by the bus, read by the API."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.relays: dict[str, Relay] = {}
        #: the states before the broker session began: kept (with their ``since``) for
        #: the relays whose retained state, the same, comes with the new subscription
        self._before: dict[str, Relay] = {}
        #: host → the broker its last status named ("" when it named none)
        self.brokers: dict[str, str] = {}

    def on_session(self) -> None:
        """A new broker session, about to subscribe: what the broker holds now replaces
        what was known (a root restarted meanwhile holds only the bridges that connected
        to it again; a relay that died meanwhile is not left connected here)."""
        self._before, self.relays = self.relays, {}

    def on_relay(self, topic: str, payload: bytes, retained: bool = False) -> None:
        """Fold a message of ``plexus/relays/+`` in (never raises: logged and ignored);
        ``retained``: the broker's stored state, sent as the subscription was made."""
        try:
            name, state = relay_state(topic, payload)
        except WireError as e:
            log.warning("relay_state_rejected", topic=topic[:256], reason=e.reason[:512])
            return
        old = self.relays.get(name)
        if old is None and retained:
            old = self._before.get(name)
        if state is None:
            if self.relays.pop(name, None) is not None:
                log.info("relay_forgotten", relay=name)
        elif old is None or old.state != state:
            self.relays[name] = Relay(name, state, self.clock())
            log.info("relay_state", relay=name, state=state)
        else:
            self.relays[name] = old

    def on_status(self, host: str, broker: str) -> None:
        self.brokers[host] = broker

    def view(self) -> list[dict[str, Any]]:
        """The relays, by name, as ``/v1/status`` shows them."""
        return [
            {"name": r.name, "state": r.state, "since": r.since}
            for _, r in sorted(self.relays.items())
        ]
