"""Domain errors of the controller, each mapped to one HTTP status by the API::

ControllerError
├── NotFound     404  the object (or one it names) does not exist
├── Conflict     409  duplicate name/VNI/IP/MAC, pool exhausted, still in use
└── Invalid      422  well-formed but not acceptable (IP outside subnet, …)
"""

from __future__ import annotations


class ControllerError(Exception):
    status = 400
    error = "bad_request"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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
