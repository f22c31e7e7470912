"""Errors of the controller, each mapped to one HTTP status by the API::

    proto.errors.PlexusError
    └── ControllerError      400
        ├── Forbidden        403  a host token acting beyond its host (controller.api.access)
        ├── NotFound         404  the object (or one it names) does not exist
        ├── Conflict         409  duplicate name/VNI/IP/MAC, pool exhausted, still in use
        ├── Invalid          422  well-formed but not acceptable (IP outside subnet, …)
        └── StoreError       503  the store could not read or write (sqlite3's and
            │                     psycopg's errors, translated once in
            │                     :mod:`controller.store` and :mod:`controller.pgstore`)
            ├── StoreConflict 503 another controller committed first: the caller
            │                     catches up and runs the command again
            │                     (:mod:`controller.replica`), holding the log's
            │                     head: never seen by the API
            └── LogTrimmed    503 the change log no longer holds the changes after
                                  the caller's head (trimmed by the leader): the
                                  caller reloads its state from the tables
                                  (:func:`controller.replica.catch_up`): never seen
                                  by the API

The broker's failures are :class:`proto.errors.BrokerUnavailable`, handled by the bus.
"""

from __future__ import annotations

from proto.errors import PlexusError


class ControllerError(PlexusError):
    status = 400
    error = "bad_request"


class Forbidden(ControllerError):
    """The caller is known but may not do this (a host token, outside its host)."""

    status = 403
    error = "forbidden"


class NotFound(ControllerError):
    status = 404
    error = "not_found"

    def __init__(self, what: str, ident: str) -> None:
        super().__init__(f"{what} {ident!r} not found")
        self.what = what
        self.ident = ident


class Conflict(ControllerError):
    status = 409
    error = "conflict"


class Invalid(ControllerError):
    status = 422
    error = "invalid"


class StoreError(ControllerError):
    """The store could not read or write (disk, corruption, constraint)."""

    status = 503
    error = "unavailable"


class StoreConflict(StoreError):
    """Another controller committed to the shared store since this one last read it:
    nothing was written. ``head`` is the store's head now, ``expected`` the caller's."""

    def __init__(self, reason: str, *, expected: int, head: int) -> None:
        super().__init__(reason)
        self.expected = expected
        self.head = head


class LogTrimmed(StoreError):
    """The change log no longer holds change ``wanted`` (the one after the caller's
    head): the leader trimmed it (:mod:`controller.leader`). ``oldest`` is the oldest
    change still logged (0: none)."""

    def __init__(self, reason: str, *, wanted: int, oldest: int) -> None:
        super().__init__(reason)
        self.wanted = wanted
        self.oldest = oldest
