"""The one client of the controller's REST API: every ``plexus`` command, ``plexus
apply``, the lab and the benchmarks use it.

A request either returns the controller's JSON (a dict or a list) or raises one
:mod:`cli.errors` error with a one-line reason: httpx's errors become
:class:`~cli.errors.Unreachable`, a 4xx/5xx answer becomes :class:`~cli.errors.ApiError`
with the controller's own ``reason``, and so does an answer that is not JSON (the URL
is not a controller's). :class:`Client` blocks; :class:`AsyncClient` is the same client
for asyncio (the benchmarks), sharing every rule but the I/O.

``wait`` (seconds) asks the controller to answer once every affected host applied the
change, or that budget ran out; the HTTP timeout then grows by that budget.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

import httpx

from .errors import ApiError, BadController, Unreachable

#: seconds an HTTP exchange may take beyond the controller's own ``wait`` budget
TIMEOUT = 30.0


def base_url(base: str) -> httpx.URL:
    """The controller's address, which must be an http(s) URL with a host."""
    try:
        url = httpx.URL(base)
    except httpx.InvalidURL as e:
        raise BadController(f"--controller {base!r} is not a URL: {e}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise BadController(
            f"--controller {base!r}: expected http://HOST:PORT or https://HOST:PORT"
        )
    return url


def headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _params(params: dict[str, Any] | None, wait: float | None) -> dict[str, Any]:
    """Query parameters without the unset ones (None, False); ``wait`` as the API's
    ``wait=true&timeout=SECONDS``."""
    out = {k: v for k, v in (params or {}).items() if v is not None and v is not False}
    if wait is not None:
        out |= {"wait": "true", "timeout": wait}
    return out


def _result(base: str, resp: httpx.Response, missing_ok: bool) -> Any:
    """The answer's JSON, or the error it stands for."""
    method, path = resp.request.method, resp.request.url.path
    if resp.status_code == 404 and missing_ok:
        return None
    try:
        data = resp.json()
    except ValueError:
        data = None
    if resp.status_code >= 400:
        reason = data.get("reason") if isinstance(data, dict) else None
        reason = reason or resp.text.strip()[:200]
        items = data.get("items") if isinstance(data, dict) else None
        raise ApiError(
            f"{resp.status_code} {reason}",
            status=resp.status_code,
            method=method,
            path=path,
            items=items if isinstance(items, list) else None,
        )
    if not isinstance(data, dict | list):
        raise ApiError(
            f"{base} answered {path} with something other than Plexus JSON: is it a controller?",
            status=resp.status_code,
            method=method,
            path=path,
        )
    return data


class _Base:
    def __init__(self, base: str, *, token: str | None = None, timeout: float = TIMEOUT) -> None:
        self.base = base
        self.url = base_url(base)
        self.timeout = timeout
        self.headers = headers(token)

    def _timeout(self, wait: float | None) -> float:
        return self.timeout + (wait or 0.0)

    def _unreachable(self, e: httpx.HTTPError) -> Unreachable:
        return Unreachable(self.base, str(e) or type(e).__name__)


class Client(_Base):
    """The REST API, blocking. Use as a context manager (one connection pool);
    ``transport`` is httpx's seam (tests pass an ``httpx.MockTransport``)."""

    def __init__(
        self,
        base: str,
        *,
        token: str | None = None,
        timeout: float = TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base, token=token, timeout=timeout)
        self.http = httpx.Client(
            base_url=self.url, timeout=timeout, headers=self.headers, transport=transport
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        wait: float | None = None,
        missing_ok: bool = False,
    ) -> Any:
        """The JSON answer to one request; with ``missing_ok``, None for a 404."""
        try:
            resp = self.http.request(
                method, path, params=_params(params, wait), json=body, timeout=self._timeout(wait)
            )
        except httpx.HTTPError as e:
            raise self._unreachable(e) from None
        return _result(self.base, resp, missing_ok)

    def get(self, path: str, params: dict[str, Any] | None = None, missing_ok: bool = False) -> Any:
        return self.request("GET", path, params=params, missing_ok=missing_ok)

    def post(self, path: str, body: Any, wait: float | None = None) -> Any:
        return self.request("POST", path, body=body, wait=wait)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncClient(_Base):
    """The REST API for asyncio; the same rules as :class:`Client`."""

    def __init__(
        self,
        base: str,
        *,
        token: str | None = None,
        timeout: float = TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base, token=token, timeout=timeout)
        self.http = httpx.AsyncClient(
            base_url=self.url, timeout=timeout, headers=self.headers, transport=transport
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        wait: float | None = None,
        missing_ok: bool = False,
    ) -> Any:
        try:
            resp = await self.http.request(
                method, path, params=_params(params, wait), json=body, timeout=self._timeout(wait)
            )
        except httpx.HTTPError as e:
            raise self._unreachable(e) from None
        return _result(self.base, resp, missing_ok)

    async def get(
        self, path: str, params: dict[str, Any] | None = None, missing_ok: bool = False
    ) -> Any:
        return await self.request("GET", path, params=params, missing_ok=missing_ok)

    async def post(self, path: str, body: Any, wait: float | None = None) -> Any:
        return await self.request("POST", path, body=body, wait=wait)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
