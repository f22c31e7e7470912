"""Signal handlers that act in their own process only.

A handler set with ``signal.signal`` survives ``fork``: a helper process forked by a
library (pyroute2 forks one for some namespace operations and stops it with SIGTERM)
runs the parent's handler — and a handler that sets a stop flag or exits then acts in
the child, through the parent's ``finally`` blocks and state. Each Plexus process
(agent, controller, lab, benchmarks) installs its handlers with :func:`on_signals`: in
any other pid than the one that installed it, the handler restores the default
disposition and re-raises the signal, as if it had never been set.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterable

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def on_signals(
    action: Callable[[int], None], signals: Iterable[signal.Signals] = STOP_SIGNALS
) -> None:
    """Run ``action(signum)`` when one of ``signals`` reaches this process."""
    owner = os.getpid()

    def handler(signum: int, frame: object) -> None:
        if os.getpid() != owner:  # a forked child: behave as if no handler were set
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        action(signum)

    for sig in signals:
        signal.signal(sig, handler)


def exit_on_signals(signals: Iterable[signal.Signals] = (signal.SIGTERM,)) -> None:
    """``signals`` exit this process through its ``finally`` blocks (status 128 + N),
    so that what it made is removed when a runner or ``timeout`` stops it."""
    on_signals(lambda signum: sys.exit(128 + signum), signals)
