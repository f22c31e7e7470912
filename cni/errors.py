"""The CNI error: what a runtime reads on stdout when the plugin fails, with its exit
status non-zero. Codes below 100 are the spec's ("Well-known error codes", 1.1.0); 100
and up are this plugin's own.

::

    CniError(code, msg, details)
    ├── codes 1-11, 50, 51: the spec's (version, environment, decoding, configuration,
    │   try again later, plugin not available)
    └── codes 100+: the controller refused the request (conflict, credential, scope),
        or CHECK found the namespace not as it should be
"""

from __future__ import annotations

# typing is for the type checker only: importing it costs a start a few ms
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENV = 4
IO_FAILURE = 5
DECODE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
NOT_AVAILABLE = 50
LIMITED_CONNECTIVITY = 51

#: the controller answered 409: an address, an inode, an id is taken
CONFLICT = 100
#: the controller answered 401: no token, or a wrong one (``tokenFile``)
UNAUTHORIZED = 101
#: the controller answered 403: the token's host is not this one, or the route is admin's
FORBIDDEN = 102
#: any other refusal, or an answer that is not the controller's JSON
CONTROLLER_ERROR = 103
#: CHECK: the namespace, the controller or ``prevResult`` disagree (msg says how)
CHECK_FAILED = 110


class CniError(Exception):
    """A failure a runtime is told about: ``code`` (above), ``msg`` (one line, what
    happened and what to do), ``details`` (optional, free text: the pending hosts...)."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def to_json(self, cni_version: str) -> dict[str, Any]:
        out: dict[str, Any] = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out
