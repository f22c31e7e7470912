"""The broker configuration ``plexus broker init`` makes, with a real Mosquitto: each
host credential is confined to its own topics, anonymous and wrong credentials are
refused, TLS client certificates work and a foreign one is refused, revocation takes
effect on a live connection. Every refusal is observed, not assumed: a subscriber with
the controller's credential sees what arrives, and a sentinel the host may send proves
that anything forbidden sent before it would have arrived."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiomqtt
import pytest

from broker import identities
from broker.errors import IdentityError
from broker.identities import CONTROLLER
from proto import topics
from proto.mqtt import BrokerURL, client
from tests.support import LogWatch, free_port, need, wait_port

pytestmark = pytest.mark.broker


class SecureBroker:
    def __init__(self, directory: Path, tls: bool = False) -> None:
        self.port = free_port()
        self.tls_port = free_port() if tls else None
        self.dir = identities.init(
            directory,
            [("127.0.0.1", self.port)],
            ["h1", "h2"],
            tls_listeners=[("127.0.0.1", self.tls_port)] if self.tls_port else [],
            log_file=directory / "mosquitto.log",
        )
        self.log = directory / "mosquitto.log"
        self.proc = subprocess.Popen([need("mosquitto"), "-c", str(self.dir.conf)])
        wait_port(self.port)

    def url(self, name: str | None, tls: bool = False) -> BrokerURL:
        if tls:
            base = BrokerURL.parse(f"mqtts://127.0.0.1:{self.tls_port}")
        else:
            base = BrokerURL.parse(f"mqtt://127.0.0.1:{self.port}")
        return base.with_credentials(self.dir.identity(name) if name else None)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[SecureBroker]:
    b = SecureBroker(tmp_path / "broker", tls=True)
    try:
        yield b
    finally:
        b.stop()


@contextlib.asynccontextmanager
async def connect(url: BrokerURL, ident: str = "c") -> AsyncIterator[aiomqtt.Client]:
    async with client(url, f"{ident}-{time.monotonic_ns()}", timeout=3) as c:
        yield c


async def collect(c: aiomqtt.Client, until: str, within: float = 3.0) -> list[tuple[str, bytes]]:
    """Messages ``c`` receives until one on ``until`` (the sentinel) arrives."""
    got: list[tuple[str, bytes]] = []
    async with asyncio.timeout(within):
        async for m in c.messages:
            got.append((str(m.topic), bytes(m.payload)))  # type: ignore[arg-type]
            if str(m.topic) == until:
                return got
    raise AssertionError("unreachable")


async def test_a_host_credential_writes_only_its_own_status_and_events(
    broker: SecureBroker,
) -> None:
    forbidden = [
        topics.host_status("h2"),
        topics.host_events("h2"),
        topics.host_desired("h1"),
        topics.host_desired("h2"),
        topics.network("n1"),
        topics.network_snapshot("n1", 0),
        topics.network_changes("n1"),
        "plexus/v1/anything/else",
    ]
    async with connect(broker.url(CONTROLLER), "observer") as obs:
        await obs.subscribe("plexus/v1/#", qos=1)
        async with connect(broker.url("h1")) as h1:
            for t in forbidden:
                await h1.publish(t, b"hostile", qos=1)
            await h1.publish(topics.host_events("h1"), b"own-events", qos=1)
            await h1.publish(topics.host_status("h1"), b"sentinel", qos=1)
        got = await collect(obs, topics.host_status("h1"))
    assert got == [
        (topics.host_events("h1"), b"own-events"),
        (topics.host_status("h1"), b"sentinel"),
    ]


async def test_a_host_reads_only_its_own_desired_document_and_the_networks(
    broker: SecureBroker,
) -> None:
    async with connect(broker.url(CONTROLLER), "ctl") as ctl:
        for t in (topics.host_desired("h2"), topics.host_status("h2"), topics.host_desired("h1")):
            await ctl.publish(t, t.encode(), qos=1, retain=True)
        await ctl.publish(topics.network_snapshot("n1", 0), b"snap", qos=1, retain=True)
    async with connect(broker.url("h1")) as h1:
        await h1.subscribe(topics.host_desired("h2"), qos=1)
        await h1.subscribe(topics.ALL_HOST_STATUS, qos=1)
        await h1.subscribe(topics.network_snapshots("n1"), qos=1)
        await h1.subscribe(topics.host_desired("h1"), qos=1)  # the sentinel, subscribed last
        got = dict(await collect(h1, topics.host_desired("h1")))
    assert got == {
        topics.network_snapshot("n1", 0): b"snap",
        topics.host_desired("h1"): topics.host_desired("h1").encode(),
    }


async def test_anonymous_and_wrong_credentials_are_refused(broker: SecureBroker) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with connect(broker.url(None)):
            pass
    wrong = BrokerURL.parse(f"mqtt://h1:not-the-password@127.0.0.1:{broker.port}")
    with pytest.raises(aiomqtt.MqttError):
        async with connect(wrong):
            pass


async def test_no_host_can_take_over_another_session(broker: SecureBroker) -> None:
    """The client id is the user name: h1 claiming h2's client id does not kick h2."""
    async with connect(broker.url(CONTROLLER), "observer") as obs:
        await obs.subscribe(topics.host_status("h2"), qos=1)
        async with client(broker.url("h2"), "plexus-agent-h2") as h2:
            log = LogWatch(broker.log)
            async with client(broker.url("h1"), "plexus-agent-h2"):
                # the broker took h1's session in (a takeover would happen right here)
                await log.wait(lambda line: "New client connected" in line and " as h1 " in line)
            await h2.publish(topics.host_status("h2"), b"still-connected", qos=1)
            got = await collect(obs, topics.host_status("h2"))
            # nor did the broker ever close h2's session meanwhile
            assert not [ln for ln in log.lines() if "h2" in ln], log.lines()
    assert got == [(topics.host_status("h2"), b"still-connected")]


async def test_tls_with_a_client_certificate_and_a_foreign_one_refused(
    broker: SecureBroker, tmp_path: Path
) -> None:
    async with connect(broker.url(CONTROLLER), "observer") as obs:
        await obs.subscribe(topics.host_status("h1"), qos=1)
        url = broker.url("h1", tls=True)
        # the certificate alone authenticates: no password over the TLS listener
        async with connect(
            BrokerURL(url.host, url.port, True, None, None, url.ca, url.cert, url.key)
        ) as h1:
            await h1.publish(topics.host_status("h2"), b"hostile", qos=1)
            await h1.publish(topics.host_status("h1"), b"over-tls", qos=1)
        assert await collect(obs, topics.host_status("h1")) == [
            (topics.host_status("h1"), b"over-tls")
        ]
    other = identities.init(
        tmp_path / "other", [("127.0.0.1", 1)], ["h1"], tls_listeners=[("127.0.0.1", 2)]
    )
    foreign = broker.url("h1", tls=True)
    foreign = BrokerURL(
        foreign.host,
        foreign.port,
        True,
        None,
        None,
        foreign.ca,
        other.identity("h1") / "cert.pem",
        other.identity("h1") / "key.pem",
    )
    with pytest.raises(aiomqtt.MqttError):
        async with connect(foreign):
            pass
    no_cert = BrokerURL(foreign.host, foreign.port, True, None, None, foreign.ca)
    with pytest.raises(aiomqtt.MqttError):
        async with connect(no_cert):
            pass


async def test_revoking_a_host_cuts_its_live_connection_and_its_credential(
    broker: SecureBroker,
) -> None:
    old = broker.url("h1")
    async with connect(broker.url(CONTROLLER), "observer") as obs:
        await obs.subscribe("plexus/v1/#", qos=1)
        log = LogWatch(broker.log)
        dropped: aiomqtt.MqttError | None = None
        try:
            async with connect(old) as h1:
                identities.revoke(broker.dir.path, ["h1"])
                assert identities.reload(broker.dir.path)
                await log.wait("Reloading config.")
                # the broker drops the live connection on reload ...
                await log.wait("Client h1 disconnected.")
                # ... and the client sees it: its message stream ends in an error
                async with asyncio.timeout(5):
                    async for _ in h1.messages:
                        pass
        except aiomqtt.MqttError as e:
            dropped = e
        assert dropped is not None, "the revoked host's live connection was kept"
        async with connect(broker.url("h2")) as h2:
            await h2.publish(topics.host_status("h2"), b"sentinel", qos=1)
        got = await collect(obs, topics.host_status("h2"))
    assert got == [(topics.host_status("h2"), b"sentinel")]
    with pytest.raises(aiomqtt.MqttError):
        async with connect(old):
            pass
    # a new credential for the same name works again, the old password does not
    log = LogWatch(broker.log)
    identities.add_hosts(broker.dir.path, ["h1"])
    assert identities.reload(broker.dir.path)
    await log.wait("Reloading config.")
    async with connect(broker.url("h1")):
        pass
    with pytest.raises(aiomqtt.MqttError):
        async with connect(old):
            pass


async def test_controller_replicas_each_have_a_session_of_their_own(
    broker: SecureBroker,
) -> None:
    """``add-controller``: a second controller credential with the controller's ACL;
    two replicas connected at once (each claiming the same client id: the user name is
    used) keep both sessions, and each reads statuses and writes desired state."""
    log = LogWatch(broker.log)
    identities.add_controllers(broker.dir.path, ["b"])
    assert identities.reload(broker.dir.path)
    await log.wait("Reloading config.")
    second = f"{CONTROLLER}-b"
    async with (
        client(broker.url(CONTROLLER), "plexus-controller") as a,
        client(broker.url(second), "plexus-controller") as b,
    ):
        for c in (a, b):
            await c.subscribe(topics.host_status("h1"), qos=1)
        async with connect(broker.url("h1")) as h1:
            await h1.subscribe(topics.host_desired("h1"), qos=1)
            await b.publish(topics.host_desired("h1"), b"from-b", qos=1)
            assert await collect(h1, topics.host_desired("h1")) == [
                (topics.host_desired("h1"), b"from-b")
            ]
            await h1.publish(topics.host_status("h1"), b"up", qos=1)
        for c in (a, b):  # both sessions are alive: neither took the other over
            assert await collect(c, topics.host_status("h1")) == [(topics.host_status("h1"), b"up")]
    assert not [ln for ln in log.lines() if "already connected" in ln or "taken over" in ln]
    with pytest.raises(IdentityError, match="is not a controller name"):
        identities.add_controllers(broker.dir.path, ["Bad Name"])
