"""How long a client waits before it tries the broker again: one policy for the agent
and the controller.

The first retry comes soon after a disconnect (a broker restart takes a fraction of a
second); the delay doubles while attempts keep failing, up to a cap low enough that a
broker back after a long outage is found within ``cap`` seconds — the fleet does not
sit out a 7 s backoff while the broker is already accepting connections. A success
resets the sequence. Every delay is drawn at random from ``[(1 - jitter) * d, d]`` of
its nominal value ``d``, so that a fleet that lost the broker together does not come
back in step.

    backoff = Backoff()
    while True:
        try:
            async with connect() as c:
                backoff.reset()
                ...
        except MqttError:
            ...
        await asyncio.sleep(backoff.next())
"""

from __future__ import annotations

import random

#: defaults: first retry after 0.05 to 0.1 s; then 0.1-0.2, 0.2-0.4, and 0.25-0.5 s onwards
FIRST = 0.1
CAP = 0.5
FACTOR = 2.0
JITTER = 0.5


class Backoff:
    """The delays before successive reconnect attempts (see the module docstring)."""

    def __init__(
        self,
        first: float = FIRST,
        cap: float = CAP,
        factor: float = FACTOR,
        jitter: float = JITTER,
        rng: random.Random | None = None,
    ) -> None:
        if not 0 < first <= cap:
            raise ValueError(f"backoff: need 0 < first ({first}) <= cap ({cap})")
        if factor < 1:
            raise ValueError(f"backoff: factor {factor} < 1 would shrink the delay")
        if not 0 <= jitter < 1:
            raise ValueError(f"backoff: jitter {jitter} must be in [0, 1)")
        self.first = first
        self.cap = cap
        self.factor = factor
        self.jitter = jitter
        self._rng = rng or random.Random()
        #: nominal delay of the next attempt; kept, not recomputed from a count, so that
        #: a long outage cannot overflow ``factor ** attempts``
        self._nominal = first

    def next(self) -> float:
        """The delay before the next attempt, in seconds; the one after grows."""
        nominal = self._nominal
        self._nominal = min(nominal * self.factor, self.cap)
        return nominal * self._rng.uniform(1 - self.jitter, 1.0)

    def reset(self) -> None:
        """An attempt succeeded: the next disconnect is retried soon again."""
        self._nominal = self.first
