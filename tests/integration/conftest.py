"""Fixtures of the integration tests that several modules use."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Mosquitto


@pytest.fixture
def debug_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A Mosquitto that logs every PUBLISH it receives ("Received PUBLISH from CLIENT":
    who published what, from the broker's side; each controller's client id carries its
    replica name)."""
    broker = Mosquitto(tmp_path)
    broker.conf.write_text(broker.conf.read_text() + "log_type debug\n")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
