"""What ``plexus broker add-relay`` and ``plexus broker init --relay-of`` write: the
relay's identity and ACL block on the root, a relay directory holding the root's host
credentials (the same ones: a host authenticates on any of them) and a bridge that
carries down what agents read and up what they write. The brokers themselves run in
tests/integration/test_relays.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker import identities, relays
from broker.errors import IdentityError
from tests.support import need


@pytest.fixture
def root(tmp_path: Path) -> Path:
    need("mosquitto_passwd")
    identities.init(tmp_path / "root", [("127.0.0.1", 1883)], ["h1", "h2"])
    return tmp_path / "root"


def test_a_relay_identity_reads_desired_and_networks_and_writes_status_up(root: Path) -> None:
    creds = relays.add_relay(root, "a")
    assert creds.name == "@relay-a" and (creds / "password").exists()
    acl = (root / "acl").read_text()
    block = acl[acl.index("user @relay-a") :]
    assert block.splitlines()[1:6] == [
        "topic read plexus/v1/hosts/+/desired",
        "topic read plexus/v1/networks/#",
        "topic write plexus/v1/hosts/+/status",
        "topic write plexus/v1/hosts/+/events",
        "topic write plexus/relays/a",  # its own state (the bridge's notification) only
    ]
    # the controllers read every relay's state, beside everything under plexus/v1/
    head = acl[acl.index("user @controller") :].splitlines()
    assert head[1:3] == ["topic readwrite plexus/v1/#", "topic read plexus/relays/+"]
    assert "@relay-a:" in (root / "passwd").read_text()
    # kept on an add-host, gone once revoked
    identities.add_hosts(root, ["h3"])
    assert "user @relay-a" in (root / "acl").read_text()
    identities.revoke(root, ["@relay-a"])
    assert "topic read plexus/v1/hosts/+/desired" not in (root / "acl").read_text()
    with pytest.raises(IdentityError):
        relays.add_relay(root, "@bad")


def test_a_relay_directory_has_the_roots_host_credentials_and_a_bridge(
    root: Path, tmp_path: Path
) -> None:
    creds = relays.add_relay(root, "a")
    rd = relays.init_relay(
        tmp_path / "ra", "mqtt://127.0.0.1:1883", creds, root, [("127.0.0.1", 1884)]
    )
    assert rd.names() == ["h1", "h2"]  # not the controller's, not the relay's
    for h in ("h1", "h2"):
        assert (rd.identity(h) / "password").read_text() == (
            root / "identities" / h / "password"
        ).read_text()
    assert (rd.path / "acl").read_text() == identities.acl([], [])  # the per-host ACL
    conf = rd.conf.read_text()
    assert rd.conf.stat().st_mode & 0o077 == 0  # it holds the relay's password
    bridge = conf[conf.index("connection plexus-root") :].splitlines()
    assert {
        "address 127.0.0.1:1883",
        "bridge_protocol_version mqttv50",
        "remote_username @relay-a",
        "remote_clientid @relay-a",
        "cleansession true",
        "try_private false",
        # the bridge's state, on the root too (not local only): "1" up, "0" its Last Will
        "notifications true",
        "notification_topic plexus/relays/a",
        "notifications_local_only false",
        "topic plexus/v1/hosts/+/desired in 1",
        "topic plexus/v1/networks/# in 1",
        "topic plexus/v1/hosts/+/status out 1",
        "topic plexus/v1/hosts/+/events out 0",
    } <= set(bridge)
    # a host added and one revoked on the root reach the relay with sync-identities
    identities.add_hosts(root, ["h3"])
    identities.revoke(root, ["h1"])
    assert relays.sync_identities(rd.path) == (["h3"], ["h1"])
    assert rd.names() == ["h2", "h3"] and rd.revoked() == ["h1"]
    assert "user h1\ntopic deny" in (rd.path / "acl").read_text()
    assert relays.sync_identities(rd.path) == ([], [])
    with pytest.raises(IdentityError):  # relays are added on the root
        relays.add_relay(rd.path, "b")
    with pytest.raises(IdentityError):  # a relay's credentials, not a host's
        relays.init_relay(tmp_path / "rb", "mqtt://x", root / "identities" / "h2", root, [])
