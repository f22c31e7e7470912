"""proto.paho: paho-mqtt's MQTT v5 property tables shared, with the values of each
packet's properties its own, and the patch refused for a class it does not know."""

from __future__ import annotations

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import proto.mqtt  # noqa: F401 (applies the patch, as the daemons' imports do)
from proto import paho


def test_the_installed_paho_is_patched_and_its_properties_round_trip() -> None:
    assert paho.share_tables()
    sent = Properties(PacketTypes.PUBLISH)
    sent.MessageExpiryInterval = 30
    sent.ContentType = "application/msgpack"
    sent.UserProperty = ("a", "1")
    sent.UserProperty = ("b", "2")
    got = Properties(PacketTypes.PUBLISH)
    got.unpack(sent.pack())
    assert got.json() == {
        "MessageExpiryInterval": 30,
        "ContentType": "application/msgpack",
        "UserProperty": [("a", "1"), ("b", "2")],
    }
    # each instance's values are its own; only the tables are shared
    other = Properties(PacketTypes.PUBLISH)
    assert other.json() == {} and other.names is got.names
    assert other.packetType == PacketTypes.PUBLISH
    # paho's checks still run: a property of another packet type is refused
    with pytest.raises(Exception, match="does not apply to packet type"):
        other.ReceiveMaximum = 5


def test_a_properties_class_it_does_not_know_is_left_as_it_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Other:
        def __init__(self, packetType: int) -> None:
            self.packetType, self.types, self.names, self.properties = packetType, [], {}, {}
            self.extra = True

    init = Other.__init__
    monkeypatch.setattr(paho, "Properties", Other)
    assert not paho.share_tables()
    assert Other.__init__ is init
