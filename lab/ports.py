"""Free TCP ports for the daemons a lab, a test or a benchmark starts.

A port from ``bind(("127.0.0.1", 0))`` comes from the kernel's ephemeral range, and
between that call and the daemon's own bind any outgoing connection on the machine (a
controller's MQTT client, an agent's HTTP client) may take it as its source port: a CI
run saw a controller die of EADDRINUSE that way. A port below that range is only ever
taken by an explicit bind, so one that is free now stays free unless another starter
picks it too; this process never hands the same one out twice.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

LOWEST = 10000
_handed_out: set[int] = set()


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def bindable(port: int) -> bool:
    """A daemon can bind ``port`` on every IPv4 address: nothing listens on it or is
    bound to it (a closed connection's TIME_WAIT does not count: the daemons set
    SO_REUSEADDR, and so does this check)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def free_port(taken: tuple[int, ...] = ()) -> int:
    """A port below the ephemeral range that nothing holds, not in ``taken`` and not
    handed out before by this process."""
    top = _ephemeral_start()
    if top - LOWEST < 1000:  # a machine whose ephemeral range starts low: ask the kernel
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])
    if len(_handed_out) > (top - LOWEST) // 2:
        _handed_out.clear()
    pick = random.SystemRandom()
    while True:
        port = pick.randrange(LOWEST, top)
        if port in _handed_out or port in taken or not bindable(port):
            continue
        _handed_out.add(port)
        return port
