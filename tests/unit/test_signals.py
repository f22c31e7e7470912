"""Signal handlers act in the process that installed them, never in a forked child."""

from __future__ import annotations

import os
import signal
import time

from proto.signals import on_signals


def test_a_forked_child_dies_of_the_signal_instead_of_running_the_handler() -> None:
    """pyroute2-style helpers are forked and stopped with SIGTERM: the parent's handler
    must not run in them (it once deleted a lab the parent was still building)."""
    seen: list[tuple[int, int]] = []
    old = signal.getsignal(signal.SIGTERM)
    on_signals(lambda signum: seen.append((os.getpid(), signum)), [signal.SIGTERM])
    try:
        read, write = os.pipe()
        child = os.fork()
        if child == 0:  # the child: tell the parent it is ready, then wait to be stopped
            os.write(write, b"x")
            time.sleep(10)
            os._exit(0)  # reached only if SIGTERM did not end it
        assert os.read(read, 1) == b"x"
        os.kill(child, signal.SIGTERM)
        _, status = os.waitpid(child, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
        assert seen == []  # the child did not run it, and told the parent nothing
        os.kill(os.getpid(), signal.SIGTERM)  # in the owner, the action runs
        assert seen == [(os.getpid(), signal.SIGTERM)]
    finally:
        signal.signal(signal.SIGTERM, old)
