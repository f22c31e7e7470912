"""Errors of broker administration (``plexus broker``, the lab's broker). Foreign
errors (OSError from the broker's files, a failing ``mosquitto_passwd``) are
translated once, where the public operations of :mod:`broker.identities` and
:mod:`broker.mosquitto` meet them::

    PlexusError                  (proto.errors)
    └── BrokerError              the broker's set-up cannot be carried out
        ├── IdentityError        a name that is no host id, a directory not (or already)
        │   (ValueError)         initialised, an unknown identity, mosquitto_passwd failed
        ├── BadListen            a listen address that is not HOST:PORT, or none
        │   (ValueError)
        └── BrokerFiles          the broker's directory or a program cannot be read,
                                 written or run (OSError, ``filename`` and ``errno``)
"""

from __future__ import annotations

from proto.errors import PlexusError


class BrokerError(PlexusError):
    """The broker's set-up cannot be carried out; ``reason`` says why."""


class IdentityError(BrokerError, ValueError):
    """A request about identities that cannot be carried out."""


class BadListen(BrokerError, ValueError):
    """A listen address that is not ``HOST:PORT``, or no listener at all."""


class BrokerFiles(BrokerError):
    """A file or program of the broker could not be used (an OSError, translated)."""

    def __init__(self, error: OSError) -> None:
        where = f"{error.filename}: " if error.filename else ""
        super().__init__(f"{where}{error.strerror or error}")
        self.filename = error.filename
        self.errno = error.errno
