"""A controller that (re)connects takes every host's retained status and desired
document at once: 2N messages for N hosts, queued by the broker faster than one
client reads them. Mosquitto's default queue (1,000 a client) dropped every one past
it without a word (seen at N = 1,000 in ``benchmarks.fanout``: hosts whose status was
dropped looked behind). The configuration Plexus writes lets them all through."""

from __future__ import annotations

import asyncio
import logging

import pytest

from broker.mosquitto import MAX_QUEUED
from tests.support import Mosquitto, mqtt_client, retained

pytestmark = pytest.mark.broker


async def test_a_subscriber_gets_every_retained_message_of_thousands(
    mosquitto: Mosquitto,
) -> None:
    n = 5000  # 2N for N = 2,500 hosts; five times Mosquitto's default queue
    assert n < MAX_QUEUED
    async with mqtt_client(mosquitto.url, "publisher") as c:
        for first in range(0, n, 250):
            await asyncio.gather(
                *(
                    c.publish(f"plexus-test/q/{i}", b"x" * 200, qos=1, retain=True)
                    for i in range(first, first + 250)
                )
            )
    got = await retained(mosquitto.url, "plexus-test/q/#", timeout=30)
    assert len(got) == n


async def test_a_thousand_publishes_in_flight_together_log_nothing(
    mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    """The controller publishes a batch's documents together; aiomqtt's default logged
    a warning on each publish made while more than 10 waited for their PUBACK."""
    async with mqtt_client(mosquitto.url, "publisher") as c:
        with caplog.at_level(logging.WARNING, logger="mqtt"):  # aiomqtt's logger
            await asyncio.gather(
                *(c.publish(f"plexus-test/burst/{i}", b"x", qos=1) for i in range(1000))
            )
    assert [r.getMessage() for r in caplog.records if r.name == "mqtt"] == []
