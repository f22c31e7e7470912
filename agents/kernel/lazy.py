"""pyroute2 without its package ``__init__``, for the agent's process.

``import pyroute2`` runs ``pyroute2/__init__.py``, which imports every part of the
library to re-export it: IPDB, NDB (and sqlite3), wireless, devlink, conntrack, IPVS,
plan9, ``unittest.mock``… — 64 modules, ~3 MiB and ~0.1 s the agent never uses. The
driver needs the rtnetlink socket (``pyroute2.iproute``), its errors and
``pyroute2.netns``. :func:`install` puts the package in ``sys.modules`` without running
its ``__init__``: submodules import as usual, the names the driver takes from the
package (:data:`NAMES`) come from the submodules that define them, and any other name
runs the real ``__init__`` then (so any code asking for more still gets it).

The agent's entry point (:mod:`agents.main`) installs it before anything imports
pyroute2; without it (tests, the lab) pyroute2 is imported whole, as usual.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

#: what the driver imports from the package itself, and the module that defines it
NAMES = {
    "AsyncIPRoute": "pyroute2.iproute",
    "IPRoute": "pyroute2.iproute",
    "NetlinkError": "pyroute2.netlink.exceptions",
}


def install() -> bool:
    """Make ``pyroute2`` a package whose ``__init__`` runs only if a name other than
    :data:`NAMES` or a submodule is asked of it. False if pyroute2 was already imported
    (nothing to do) or is not there."""
    if "pyroute2" in sys.modules:
        return False
    spec = importlib.util.find_spec("pyroute2")
    if spec is None or spec.loader is None:
        return False
    package = importlib.util.module_from_spec(spec)
    complete = False

    def __getattr__(name: str) -> Any:
        nonlocal complete
        where = NAMES.get(name)
        if where is not None:
            value = getattr(importlib.import_module(where), name)
        elif complete or (name.startswith("__") and name not in ("__all__", "__version__")):
            raise AttributeError(f"module 'pyroute2' has no attribute {name!r}")
        elif importlib.util.find_spec(f"pyroute2.{name}") is not None:
            value = importlib.import_module(f"pyroute2.{name}")  # a submodule, alone
        else:
            complete = True
            assert spec.loader is not None
            spec.loader.exec_module(package)  # the real __init__, once
            value = getattr(package, name)
        setattr(package, name, value)
        return value

    package.__getattr__ = __getattr__  # type: ignore[method-assign]
    sys.modules["pyroute2"] = package
    return True
