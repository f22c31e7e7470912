"""``plexus docker-plugin``: Docker's libnetwork remote ``NetworkDriver`` and
``IpamDriver`` on a unix socket, each call a few requests to the controller.

- :mod:`.server`: the HTTP server on ``SOCKET_DIR/NAME.sock`` (why threads, not asyncio)
- :mod:`.driver`: what each libnetwork call does with Plexus objects
- :mod:`.state`: what the plugin must remember across its restarts (a JSON file)

It speaks to the controller with the CNI plugin's standard-library client
(:mod:`cni.api`), under the same host-scoped credential.
"""

from __future__ import annotations

from .driver import Driver
from .errors import PluginError
from .server import serve
from .state import State

__all__ = ["Driver", "PluginError", "State", "serve"]
