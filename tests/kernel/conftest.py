from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.kernel.lab import Lab
from tests.support import InProcessController, in_process_controller


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    lab = Lab(tmp_path)
    lab.up()
    try:
        yield lab
        # every agent checked its view of the kernel against full reads: none missed
        assert lab.diverged() == []
    finally:
        lab.close()


@pytest.fixture
async def ctl(lab: Lab, tmp_path: Path) -> AsyncIterator[InProcessController]:
    async with in_process_controller(lab.broker.url, tmp_path / "plexus.db") as c:
        yield c
