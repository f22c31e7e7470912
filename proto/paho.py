"""paho-mqtt's MQTT v5 property tables, built once instead of once per packet.

paho-mqtt (under aiomqtt) makes a :class:`paho.mqtt.properties.Properties` for every
PUBLISH it reads, and its ``__init__`` builds four tables anew each time: the property
types, their names, and which packets each may appear in (dicts and lists of some 30
entries, set through its validating ``__setattr__``). Nothing ever changes them per
instance. At 1,000 hosts reporting after every change, building them was the largest
single item of the controller's CPU (py-spy on ``benchmarks.fanout --hosts 1000``).

:func:`share_tables` makes every instance refer to the tables of one made by paho's
own ``__init__``. It applies only to a ``Properties`` whose ``__init__`` sets exactly
those four attributes and nothing else (checked on a fresh instance), so that a paho
release that changes the class is left as it is. The values an instance holds and
unpacks are paho's own: only the constant tables are shared.
"""

from __future__ import annotations

from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

TABLES = ("types", "names", "properties")


def share_tables() -> bool:
    """Patch :class:`Properties` (once); returns whether it is patched."""
    if getattr(Properties.__init__, "_plexus_shared", False):
        return True
    made = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    if set(vars(made)) != {"packetType", *TABLES}:
        return False
    shared = {name: getattr(made, name) for name in TABLES}

    def __init__(self: Properties, packetType: int) -> None:
        fields: dict[str, Any] = vars(self)
        fields["packetType"] = packetType
        fields.update(shared)

    __init__._plexus_shared = True  # type: ignore[attr-defined]
    Properties.__init__ = __init__  # type: ignore[method-assign]
    return True
