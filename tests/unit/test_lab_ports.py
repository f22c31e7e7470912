"""Ports for the daemons a lab, a test or a benchmark starts: below the ephemeral range,
so no outgoing connection can take one before the daemon binds it."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from lab import ports


def _ephemeral() -> tuple[int, int]:
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return int(low), int(high)


def test_a_free_port_is_below_the_ephemeral_range_bindable_and_never_handed_out_twice() -> None:
    low, _ = _ephemeral()
    got = [ports.free_port() for _ in range(300)]
    assert len(set(got)) == len(got)
    assert all(ports.LOWEST <= p < low for p in got)
    with socket.socket() as s:
        s.bind(("127.0.0.1", got[-1]))


def test_a_port_that_is_held_or_taken_is_not_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    holders = []
    try:
        for _ in range(50):  # a listener on each of 50 ports
            port = ports.free_port()
            s = socket.create_server(("127.0.0.1", port))
            holders.append(s)
            assert not ports.bindable(port)
        held = {s.getsockname()[1] for s in holders}
        # forget them: only the bind check keeps them out now
        monkeypatch.setattr(ports, "_handed_out", set())
        taken = tuple(range(ports.LOWEST, ports.LOWEST + 5000))
        for _ in range(2000):
            port = ports.free_port(taken)
            assert port not in held and port not in taken
    finally:
        for s in holders:
            s.close()


def test_an_outgoing_connection_never_takes_a_port_it_hands_out() -> None:
    """The race CI met: a connect's source port comes from the ephemeral range."""
    low, high = _ephemeral()
    with socket.create_server(("127.0.0.1", 0)) as srv:
        conns = [socket.create_connection(srv.getsockname()) for _ in range(20)]
        try:
            assert all(low <= c.getsockname()[1] <= high for c in conns)
        finally:
            for c in conns:
                c.close()
