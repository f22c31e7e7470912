"""One MQTT publish as the controller queues it (:class:`Publish`)."""

from __future__ import annotations

from collections.abc import Callable


class Publish:
    """One MQTT publish. A lazy one (``build``) makes its payload when first asked for
    it: a host's desired document is built when the bus sends it, from the state as it
    is then, so that many changes of one host in quick succession cost one document."""

    __slots__ = ("_build", "_payload", "generation", "retain", "topic")

    def __init__(
        self,
        topic: str,
        payload: bytes | None,
        retain: bool,
        build: Callable[[], bytes] | None = None,
        generation: int = 0,  # a snapshot shard's: the bus never sends one below one sent
    ) -> None:
        if payload is None and build is None:
            raise ValueError("a publish needs a payload or a way to build it")
        self.topic, self.retain, self.generation = topic, retain, generation
        self._payload, self._build = payload, build

    @property
    def lazy(self) -> bool:
        return self._payload is None

    @property
    def payload(self) -> bytes:
        if self._payload is None:
            assert self._build is not None
            self._payload = self._build()
        return self._payload

    def __repr__(self) -> str:
        size = "lazy" if self._payload is None else len(self._payload)
        return f"Publish({self.topic!r}, {size}, retain={self.retain})"
