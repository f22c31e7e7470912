"""Errors of the ``plexus`` command: each carries the one line printed after
``error:`` (``reason``) and the exit status (``code``). The command tree's group
translates every :class:`~proto.errors.PlexusError` into that line once
(:mod:`cli.app`); foreign errors (httpx's, OSError, a bad settings file) are
translated where they arise, into the most specific class below::

    PlexusError                  (proto.errors)
    └── CliError                 a command cannot be carried out (exit 1, or ``code``)
        ├── BadController        --controller is not an http(s) URL
        ├── Unreachable          no HTTP answer from the controller (httpx's errors)
        ├── ApiError             the controller answered 4xx/5xx (``status``, ``method``,
        │                        ``path``), or something that is not Plexus JSON
        └── TopologyError        ``plexus apply``: the file is wrong, or the world
                                 differs from it (exit 3 when hosts are late)

The other packages' trees reach the same boundary: ``lab.spec.LabError`` (exit 1) and
``broker.errors.BrokerError`` (exit 2: the broker's directory or arguments are wrong).
"""

from __future__ import annotations

from typing import Any

from broker.errors import BrokerError
from proto.errors import PlexusError


class CliError(PlexusError):
    """A command cannot be carried out; ``code`` is the process's exit status."""

    def __init__(self, reason: str, code: int = 1) -> None:
        super().__init__(reason)
        self.code = code


class BadController(CliError):
    """The controller's address is not an http(s) URL."""


class Unreachable(CliError):
    """The controller did not answer (refused, timed out, reset, bad TLS)."""

    def __init__(self, base: str, why: str) -> None:
        super().__init__(f"cannot reach the controller at {base}: {why}")
        self.base = base


class ApiError(CliError):
    """The controller refused a request (``status`` ≥ 400, its ``reason`` from the
    error body), or answered with something that is not Plexus JSON (``status`` < 400)."""

    def __init__(
        self, reason: str, *, status: int, method: str, path: str, items: list[Any] | None = None
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.method = method
        self.path = path
        #: a refused batch's operations, each ``{"index", "error", "reason"}``
        self.items = items or []


class TopologyError(CliError):
    """``plexus apply``: the file is wrong, or the world differs from the file."""


def exit_code(error: PlexusError) -> int:
    """The exit status for any Plexus error reaching the command line: a CliError's
    own, 2 for the broker's (its directory or arguments are wrong), else 1."""
    if isinstance(error, CliError):
        return error.code
    return 2 if isinstance(error, BrokerError) else 1
