"""Errors of the agent side, hanging from :class:`proto.errors.PlexusError`::

    PlexusError                  (proto.errors)
    ├── BrokerUnavailable        the MQTT session failed or was lost (proto.mqtt): the
    │                            daemon reconnects with backoff, the dataplane stays
    ├── WireError                a message refused (proto.errors): counted, logged and
    │                            dropped by :meth:`agents.agent.Agent.on_message`
    └── AgentError               raised by the agent itself
        ├── KernelError          a kernel operation failed; carries the operation, the
        │                        object and the errno. pyroute2's ``NetlinkError``,
        │                        ``nft``'s failures and ``OSError`` of the driver are
        │                        translated into it once, in :mod:`agents.kernel`
        └── VtepUnresolved       the configured VTEP interface does not exist or has
            (ValueError)         no IPv4 address (the agent cannot start)

Within the kernel driver, "ensure" intents turn the kernel's ``EEXIST`` (on an add)
and ``ENOENT``/``ENODEV`` (on a delete) into success before any translation.
"""

from __future__ import annotations

from proto.errors import PlexusError


class AgentError(PlexusError):
    """Root of the errors the agent raises on purpose."""


class KernelError(AgentError):
    """A kernel operation failed; carries the operation, the object and the errno."""

    def __init__(self, op: str, obj: str, errno: int, message: str) -> None:
        super().__init__(f"{op} {obj}: [errno {errno}] {message}")
        self.op = op
        self.obj = obj
        self.errno = errno


class VtepUnresolved(AgentError, ValueError):
    """The VTEP interface named in the settings cannot give the agent its address."""

    def __init__(self, interface: str, why: str) -> None:
        super().__init__(f"VTEP interface {interface!r} {why}")
        self.interface = interface


__all__ = ["AgentError", "KernelError", "VtepUnresolved"]
