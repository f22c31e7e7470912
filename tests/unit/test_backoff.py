"""The reconnect backoff of the agent and the controller (proto.backoff)."""

from __future__ import annotations

import random

import pytest

from proto.backoff import Backoff


class Top(random.Random):
    """Always draws the upper bound: the nominal delays themselves."""

    def uniform(self, a: float, b: float) -> float:
        return b


class Bottom(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return a


def test_the_first_retry_comes_soon() -> None:
    """A broker restart is a fraction of a second: the first retry waits 0.05 to 0.1 s."""
    for seed in range(200):
        assert 0.05 <= Backoff(rng=random.Random(seed)).next() <= 0.1


def test_the_delay_doubles_while_attempts_fail_up_to_the_cap() -> None:
    b = Backoff(rng=Top())
    assert [b.next() for _ in range(6)] == [0.1, 0.2, 0.4, 0.5, 0.5, 0.5]


def test_a_long_outage_stays_at_the_cap() -> None:
    """Thousands of failed attempts (hours without a broker): still at most ``cap``
    between attempts, so a returning broker is found within half a second."""
    b = Backoff(rng=Top())
    delays = [b.next() for _ in range(5000)]
    assert max(delays) == 0.5
    assert delays[-1] == 0.5


def test_a_success_resets_the_sequence() -> None:
    b = Backoff(rng=Top())
    for _ in range(10):
        b.next()
    b.reset()
    assert [b.next() for _ in range(3)] == [0.1, 0.2, 0.4]


def test_jitter_draws_between_half_and_the_whole_nominal_delay() -> None:
    low = Backoff(rng=Bottom())
    assert [low.next() for _ in range(5)] == [0.05, 0.1, 0.2, 0.25, 0.25]
    rng = random.Random(7)
    b = Backoff(rng=rng)
    nominal = [0.1, 0.2, 0.4] + [0.5] * 97
    delays = [b.next() for _ in nominal]
    assert all(d / 2 <= x <= d for x, d in zip(delays, nominal, strict=True))
    # jittered, not constant: a fleet that lost the broker together comes back spread out
    assert len({round(x, 6) for x in delays[3:]}) > 50


def test_parameters() -> None:
    b = Backoff(first=1.0, cap=8.0, factor=3.0, jitter=0.0)
    assert [b.next() for _ in range(4)] == [1.0, 3.0, 8.0, 8.0]
    for bad in (
        {"first": 0.0},
        {"first": 2.0, "cap": 1.0},
        {"factor": 0.5},
        {"jitter": 1.0},
        {"jitter": -0.1},
    ):
        with pytest.raises(ValueError):
            Backoff(**bad)  # type: ignore[arg-type]
