"""Docker's ``-p`` bindings (libnetwork's portmap option) as Plexus published ports."""

from __future__ import annotations

import pytest

from dockerplugin.errors import PluginError
from dockerplugin.ports import PORTMAP, published


def binding(**kw: object) -> dict[str, object]:
    return {
        "Proto": 6,
        "IP": "",
        "Port": 80,
        "HostIP": "",
        "HostPort": 8080,
        "HostPortEnd": 8080,
    } | kw


def test_bindings_become_ports_once_each() -> None:
    opts = {
        PORTMAP: [
            binding(),
            binding(HostIP="::"),  # Docker's IPv6 twin: Plexus networks are IPv4
            binding(Proto=17, Port=53, HostPort=8053, HostPortEnd=8053),
            binding(HostIP="127.0.0.1", HostPort=9000, HostPortEnd=9010),
            binding(),
        ]
    }
    assert published(opts) == [
        {"protocol": "tcp", "host_port": 8080, "port": 80},
        {"protocol": "udp", "host_port": 8053, "port": 53},
        {"protocol": "tcp", "host_port": 9000, "port": 80, "host_ip": "127.0.0.1"},
    ]
    assert published({}) == published({PORTMAP: None}) == []


@pytest.mark.parametrize(
    ("b", "reason"),
    [
        (binding(HostPort=0, HostPortEnd=0), "give -p HOST_PORT:80/tcp"),
        (binding(Proto=132), "tcp and udp ports only"),
        (binding(HostIP="fd00::1"), "IPv4 only"),
        (binding(HostIP="nonsense"), "not an address"),
    ],
)
def test_bindings_plexus_cannot_make_are_refused(b: dict[str, object], reason: str) -> None:
    with pytest.raises(PluginError, match=reason):
        published({PORTMAP: [b]})
