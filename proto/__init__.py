"""The Plexus wire contract shared by the controller and the agents.

It imports no other Plexus package; every other one imports it.
"""

from . import topics
from .codec import MAX_PAYLOAD, DesiredDecoder, decode, decode_rows, encode, pack, pack_parts
from .errors import (
    BadTopic,
    MalformedPayload,
    OversizePayload,
    SchemaViolation,
    UnknownKind,
    UnsupportedVersion,
    WireError,
    WrongKind,
)
from .models import (
    KINDS,
    TABLE_MODES,
    Compartment,
    Event,
    HostDesired,
    HostStatus,
    LocalEndpoint,
    Message,
    NetworkMode,
    NetworkSpec,
    PortMapping,
)
from .table import EndpointRecord, NetworkChange, NetworkSnapshot, SnapshotIndex
from .wire import SCHEMA_VERSION, Wire

__all__ = [
    "KINDS",
    "MAX_PAYLOAD",
    "SCHEMA_VERSION",
    "TABLE_MODES",
    "BadTopic",
    "Compartment",
    "DesiredDecoder",
    "EndpointRecord",
    "Event",
    "HostDesired",
    "HostStatus",
    "LocalEndpoint",
    "MalformedPayload",
    "Message",
    "NetworkChange",
    "NetworkMode",
    "NetworkSnapshot",
    "NetworkSpec",
    "OversizePayload",
    "PortMapping",
    "SchemaViolation",
    "SnapshotIndex",
    "UnknownKind",
    "UnsupportedVersion",
    "Wire",
    "WireError",
    "WrongKind",
    "decode",
    "decode_rows",
    "encode",
    "pack",
    "pack_parts",
    "topics",
]
__version__ = "0.1.0"
