"""What the plugin remembers, in one JSON file written whole (``os.replace``) after
every change, so that a restarted plugin still knows which Docker network it made and
which it only bound, and which Plexus endpoint stands behind each Docker address and
endpoint. Docker never replays its calls to a remote driver: this file is the only
memory of them.

- ``pools``: pool id (the subnet) → ``{"subnet", "ip_range"}`` (RequestPool)
- ``networks``: Docker network id → ``{"network", "made", "pool"}`` (CreateNetwork)
- ``addresses``: ``POOL|IP`` → the attachment (RequestAddress): ``endpoint``,
  ``compartment``, ``network``, ``ip``, ``prefixlen``, ``mac``, ``interface``, ``gateway``
- ``endpoints``: Docker endpoint id → ``POOL|IP`` (CreateEndpoint)
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

SECTIONS = ("pools", "networks", "addresses", "endpoints")


class State:
    def __init__(self, path: Path) -> None:
        self.path = path
        #: held while a handler reads and changes the sections (not across requests)
        self.lock = threading.RLock()
        self.data: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
        if path.exists():
            loaded = json.loads(path.read_text())
            for s in SECTIONS:
                self.data[s] = dict(loaded.get(s) or {})

    @property
    def pools(self) -> dict[str, Any]:
        return self.data["pools"]

    @property
    def networks(self) -> dict[str, Any]:
        return self.data["networks"]

    @property
    def addresses(self) -> dict[str, Any]:
        return self.data["addresses"]

    @property
    def endpoints(self) -> dict[str, Any]:
        return self.data["endpoints"]

    def network_of_pool(self, pool: str) -> str | None:
        """The Plexus network of the Docker network that uses ``pool`` (once created)."""
        for rec in self.networks.values():
            if rec["pool"] == pool:
                return str(rec["network"])
        return None

    def save(self) -> None:
        with self.lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True))
            os.replace(tmp, self.path)
