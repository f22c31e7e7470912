"""The controller's REST API over :mod:`.wire` (the standard library's sockets: the
plugin starts per container; httpx alone costs more than the whole plugin, and
``http.client`` more than the rest of it).

Every failure leaves as a :class:`~cni.errors.CniError`: unreachable, timed out or 502-504
is 11 (try again later); 401, 403, 409 and any other refusal are this plugin's codes
(100+) with the controller's ``reason``; 404 is for the caller to decide (an unknown
network is a configuration error, a missing endpoint is what DEL wants), and so is 422.
"""

from __future__ import annotations

import json
from urllib.parse import quote, urlencode

from .errors import (
    CONFLICT,
    CONTROLLER_ERROR,
    FORBIDDEN,
    IO_FAILURE,
    TRY_AGAIN_LATER,
    UNAUTHORIZED,
    CniError,
)
from .wire import Closed, Connection, WireError

# typing is for the type checker only: importing it costs a start a few ms
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


#: seconds an exchange may take beyond the controller's own ``timeout`` (a wait)
SLACK = 10.0

_REFUSALS = {409: CONFLICT, 401: UNAUTHORIZED, 403: FORBIDDEN}


class ApiError(CniError):
    """The controller refused: its HTTP ``status`` and ``reason`` kept for the caller."""

    def __init__(self, code: int, msg: str, status: int, reason: str) -> None:
        super().__init__(code, msg)
        self.status = status
        self.reason = reason


def read_token(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        with open(path) as f:
            return f.read().strip() or None
    except OSError as e:
        raise CniError(IO_FAILURE, f"tokenFile {path}: {e.strerror or e}") from None


def path(*parts: str, **query: Any) -> str:
    """``/v1/endpoints/ID?wait=true&wait_for=H``: parts quoted, None and False left out,
    True as ``true``, lists repeated."""
    out = "/" + "/".join(quote(p, safe="") for p in parts)
    pairs = []
    for key, value in query.items():
        for v in value if isinstance(value, list) else [value]:
            if v is None or v is False:
                continue
            pairs.append((key, "true" if v is True else str(v)))
    return out + ("?" + urlencode(pairs) if pairs else "")


class Controller:
    """One connection to the controller, kept for the command's few requests."""

    def __init__(self, host: str, port: int, token: str | None = None) -> None:
        self.where = f"http://{host}:{port}"
        self.host, self.port = host, port
        self.headers = {"Accept": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.conn = Connection(host, port)

    def request(
        self, method: str, target: str, body: Any = None, timeout: float = 0.0
    ) -> tuple[int, Any]:
        """(status, JSON or None); raises for unreachable, 5xx, 401/403/409 (not 404/422)."""
        data = None if body is None else json.dumps(body).encode()
        headers = dict(self.headers)
        if data is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (0, 1):
            try:
                status, raw = self.conn.exchange(method, target, headers, data, timeout + SLACK)
                break
            except (OSError, WireError) as e:
                # a kept connection the server closed meanwhile: once more on a new one
                if attempt == 0 and isinstance(e, Closed | BrokenPipeError | ConnectionResetError):
                    continue
                raise CniError(
                    TRY_AGAIN_LATER,
                    f"the controller at {self.where} is unreachable: {e or type(e).__name__}",
                ) from None
        return status, self._answer(method, target, status, raw)

    def _answer(self, method: str, target: str, status: int, raw: bytes) -> Any:
        try:
            doc = json.loads(raw) if raw else None
        except ValueError:
            doc = None
        reason = ""
        if isinstance(doc, dict):
            reason = str(doc.get("reason") or doc.get("detail") or doc.get("error") or "")
        reason = reason or raw[:200].decode(errors="replace").strip()
        what = f"{method} {target.split('?', 1)[0]}"
        if status in (502, 503, 504):
            raise CniError(
                TRY_AGAIN_LATER, f"the controller is not available ({status}): {reason}", what
            )
        if status in _REFUSALS or (status >= 400 and status not in (404, 422)):
            code = _REFUSALS.get(status, CONTROLLER_ERROR)
            raise ApiError(
                code, f"the controller refused {what} ({status}): {reason}", status, reason
            )
        if status >= 400:
            return {"status": status, "reason": reason}
        if not isinstance(doc, dict | list):
            raise CniError(
                CONTROLLER_ERROR, f"{self.where} answered {what} with something other than JSON"
            )
        return doc

    def get(self, target: str) -> tuple[int, Any]:
        return self.request("GET", target)

    def close(self) -> None:
        self.conn.close()
