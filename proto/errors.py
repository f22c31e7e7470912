"""Errors of the contract, the root of every Plexus error.

Every way a payload or a topic can be refused has its own class, and each carries
the data a log line needs (the reason, and where known the kind or the topic). Each
other package's tree hangs from :class:`PlexusError` (``controller.errors``,
``agents.errors``, ``broker.errors``, ``cli.errors``, ``lab.spec``)::

    PlexusError
    ├── BrokerUnavailable        the MQTT connection failed or was lost (aiomqtt's
    │                            errors, translated once in :mod:`proto.mqtt`)
    └── WireError (ValueError)
        ├── OversizePayload      larger than the codec's limit
        ├── MalformedPayload     not one msgpack map (truncated, trailing bytes, bad types)
        ├── UnsupportedVersion   schema version this build does not speak
        ├── UnknownKind          a kind no model has
        ├── WrongKind            a valid kind, but not one the receiver expects here
        ├── SchemaViolation      fields missing, unknown, mistyped or out of range
        └── BadTopic             a topic outside ``plexus/v1/`` or with an id that
                                 does not parse
"""

from __future__ import annotations


class PlexusError(Exception):
    """Root of every error Plexus raises on purpose. ``reason``: one line for a log or a
    user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BrokerUnavailable(PlexusError):
    """The broker could not be reached, refused the session, or dropped it."""


class WireError(PlexusError, ValueError):
    """A payload or a topic was refused. ``reason`` is one line fit for a log."""

    code = "wire_error"


class OversizePayload(WireError):
    code = "oversize"

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"payload of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class MalformedPayload(WireError):
    code = "malformed"


class UnsupportedVersion(WireError):
    code = "unsupported_version"

    def __init__(self, version: object) -> None:
        super().__init__(f"unsupported schema version {version!r}")
        self.version = version


class UnknownKind(WireError):
    code = "unknown_kind"

    def __init__(self, kind: object) -> None:
        super().__init__(f"unknown message kind {kind!r}")
        self.kind = kind


class WrongKind(WireError):
    code = "wrong_kind"

    def __init__(self, kind: str, expected: tuple[str, ...]) -> None:
        super().__init__(f"message kind {kind!r} where {', '.join(expected)} was expected")
        self.kind = kind
        self.expected = expected


class SchemaViolation(WireError):
    code = "schema"

    def __init__(self, kind: str, errors: list[str]) -> None:
        super().__init__(f"invalid {kind}: " + "; ".join(errors))
        self.kind = kind
        self.errors = errors


class BadTopic(WireError):
    code = "bad_topic"

    def __init__(self, topic: str, why: str) -> None:
        super().__init__(f"bad topic {topic!r}: {why}")
        self.topic = topic
