"""Several brokers for one client (a root broker and its relays, or any clustered
MQTT 5 broker's nodes): the client starts on one chosen at random, so that a fleet
spreads over them, and moves to the next whenever a connect fails or a session drops.
The delay before each attempt is :class:`proto.backoff.Backoff`'s (jittered, reset by
a session that came up), so a client whose broker died is on the next one within a
fraction of a second, and a fleet that lost a broker together does not arrive in step.
The broker a client started on is its **home**: away from it, the client goes back
once home answers again (``AgentDaemon``: a TCP probe every ``broker_return_interval``
seconds, jittered), so that a fleet spreads again after a relay returns.

    brokers = Brokers.of([(str(url), connector(url)) for url in urls])
    while True:
        broker = brokers.current
        try:
            async with broker.connect("id") as session:
                ...
        except BrokerUnavailable:
            ...
        brokers.advance()
        await asyncio.sleep(backoff.next())
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass

from .models import BROKER_URL
from .mqtt import Connect


@dataclass(frozen=True, slots=True)
class Broker:
    """One broker: ``name`` (its URL, without credentials) for the logs."""

    name: str
    connect: Connect

    @property
    def url(self) -> str:
        """The name as a host's status carries it (``HostStatus.broker``): empty unless
        it is a broker URL without credentials."""
        return self.name if len(self.name) <= 256 and re.fullmatch(BROKER_URL, self.name) else ""


class Brokers:
    """The brokers a client may use, in a ring; :attr:`current` is the one to try."""

    def __init__(self, brokers: Iterable[Broker], rng: random.Random | None = None) -> None:
        self.ring = tuple(brokers)
        if not self.ring:
            raise ValueError("no broker to connect to")
        self._i = self._home = (rng or random.Random()).randrange(len(self.ring))

    @classmethod
    def of(
        cls, brokers: Iterable[tuple[str, Connect]], rng: random.Random | None = None
    ) -> Brokers:
        return cls((Broker(name, connect) for name, connect in brokers), rng)

    @property
    def current(self) -> Broker:
        return self.ring[self._i]

    @property
    def home(self) -> Broker:
        """The broker this client started on (chosen at random)."""
        return self.ring[self._home]

    @property
    def away(self) -> bool:
        """On another broker than its home."""
        return self._i != self._home

    def go_home(self) -> Broker:
        """Home answers again: it is the one to try."""
        self._i = self._home
        return self.current

    def advance(self) -> Broker:
        """The current broker failed (or its session dropped): the next one."""
        self._i = (self._i + 1) % len(self.ring)
        return self.current
