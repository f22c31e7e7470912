from __future__ import annotations

import random

import pytest

from controller.errors import Conflict, Invalid
from controller.ipam import Pool, random_mac


def test_allocation_skips_network_gateway_and_broadcast() -> None:
    pool = Pool("10.0.0.0/29", "10.0.0.1")
    got = []
    for _ in range(5):
        ip = pool.next_free()
        pool.take(ip)
        got.append(ip)
    assert got == ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
    with pytest.raises(Conflict, match="exhausted"):
        pool.next_free()


def test_release_and_reuse_after_wrap() -> None:
    """A released address is not handed out again at once (stale ARP caches), but is
    reused once the cursor wraps round."""
    pool = Pool("10.0.0.0/29", "10.0.0.1")
    for _ in range(3):
        pool.take(pool.next_free())
    pool.release("10.0.0.3")
    assert pool.next_free() == "10.0.0.5"
    for _ in range(2):
        pool.take(pool.next_free())
    assert pool.next_free() == "10.0.0.3"
    pool.take("10.0.0.3")
    assert pool.used == pool.capacity == 5


def test_static_addresses_checked() -> None:
    pool = Pool("10.0.0.0/24", "10.0.0.1")
    pool.check_static("10.0.0.7")
    for bad, why in [
        ("10.0.1.7", "outside"),
        ("10.0.0.0", "network"),
        ("10.0.0.255", "broadcast"),
        ("10.0.0.1", "gateway"),
    ]:
        with pytest.raises(Invalid, match=why):
            pool.check_static(bad)
    pool.take("10.0.0.2")
    assert pool.is_used("10.0.0.2")
    assert pool.next_free() == "10.0.0.3"


def test_pool_without_gateway() -> None:
    pool = Pool("192.168.5.0/30", None)
    assert pool.capacity == 2


def test_random_mac_is_locally_administered_unicast() -> None:
    rng = random.Random(1)
    for _ in range(100):
        first = int(random_mac(rng)[:2], 16)
        assert first & 0b10 and not first & 0b1
