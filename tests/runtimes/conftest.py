from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runtimes.cni import Cni
from tests.runtimes.common import Image, test_image
from tests.runtimes.harness import Containerd, Podman


@pytest.fixture(scope="session")
def image() -> Image:
    """The test image, built on the machine's first run (scripts/test-image)."""
    return test_image()


@pytest.fixture
def cni(tmp_path: Path) -> Cni:
    return Cni(tmp_path)


@pytest.fixture(scope="session")
def podman_images(image: Image, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A podman storage holding the test image, loaded once for the session."""
    store = Podman(Cni(tmp_path_factory.mktemp("podman-images")))
    try:
        store.load(image)
        yield store.image_store
    finally:
        store.close()


@pytest.fixture
def podman(cni: Cni, podman_images: Path) -> Iterator[Podman]:
    """podman on its own storage (the session's image store under it: the test image is
    there) and ``cni``'s networks."""
    p = Podman(cni, images=podman_images)
    try:
        yield p
    finally:
        p.close()


@pytest.fixture
def containerd(cni: Cni, image: Image) -> Iterator[Containerd]:
    """A containerd daemon of the test's own, started, with the test image imported."""
    c = Containerd(cni)
    try:
        c.start()
        c.load(image)
        yield c
    finally:
        c.close()
