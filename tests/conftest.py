from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ControllerProcess, Mosquitto


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def controller_proc(mosquitto: Mosquitto, tmp_path: Path) -> Iterator[ControllerProcess]:
    proc = ControllerProcess(mosquitto.url, tmp_path / "plexus.db", tmp_path / "controller.log")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
