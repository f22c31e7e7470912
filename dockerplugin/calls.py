"""What the Docker plugin asks of the controller: a container's handed-over
compartment and endpoint (made and waited for on this host), its published ports, the
network held on this host. A mixin of :class:`~dockerplugin.driver.Driver`, whose
attributes (``api``, ``host``, ``state``, ``timeout``) it uses."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from typing import Any

from cni.api import Controller
from cni.api import path as p

from .errors import PluginError
from .state import State


class Calls:
    host: str
    state: State
    timeout: float
    connect: Callable[[], Controller]
    _local: threading.local

    @property
    def api(self) -> Controller:
        """This thread's controller client (each server thread keeps its own: a client
        is one kept connection)."""
        api: Controller | None = getattr(self._local, "api", None)
        if api is None:
            api = self._local.api = self.connect()
        return api

    def _pin(self, network: str) -> None:
        """This host holds the network from now on, containers or not: its bridge is
        there before the first container and stays between one and the next."""
        target = p("v1", "networks", network, "hosts", self.host, wait=True,
                   wait_for=self.host, timeout=self.timeout)  # fmt: skip
        status, view = self.api.request("PUT", target, timeout=self.timeout)
        if status >= 400:
            raise PluginError(f"Plexus network {network!r} on host {self.host}: {view['reason']}")
        self._applied(view, f"make network {network}")

    def _attach(self, network: str, ip: str | None, mac: str | None) -> dict[str, Any]:
        """A handed-over compartment with one endpoint, made on this host (waited for)."""
        ident = f"dk-{secrets.token_hex(6)}"
        body = {"id": ident, "host": self.host, "handover": True}
        status, answer = self.api.request("POST", p("v1", "compartments"), body)
        if status >= 400:
            raise PluginError(f"compartment on host {self.host}: {answer['reason']}")
        try:
            return self._endpoint(ident, network, ip, mac)
        except BaseException:
            self._detach({"compartment": ident})
            raise

    def _endpoint(
        self, ident: str, network: str, ip: str | None, mac: str | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"id": ident, "network": network, "compartment": ident}
        body |= {k: v for k, v in (("ip", ip), ("mac", mac)) if v}
        target = p("v1", "endpoints", wait=True, wait_for=self.host, timeout=self.timeout)
        status, view = self.api.request("POST", target, body, timeout=self.timeout)
        if status >= 400:
            raise PluginError(f"endpoint in Plexus network {network!r}: {view['reason']}")
        self._applied(view, f"make endpoint {ident}")
        return {
            "endpoint": ident,
            "compartment": ident,
            "network": network,
            "ip": view["ip"],
            "prefixlen": view["prefixlen"],
            "mac": view["mac"],
            "interface": view["interface"],
            "gateway": view.get("gateway"),
        }

    def _applied(self, view: dict[str, Any], what: str) -> None:
        conv = view.get("convergence") or {}
        if self.host in conv.get("offline", []) or not conv.get("converged", True):
            raise PluginError(
                f"host {self.host} did not {what} within {self.timeout:g} s: "
                "is its plexus agent running?"
            )

    def _detach(self, att: dict[str, Any]) -> None:
        """The compartment goes with its endpoint (404: already gone)."""
        target = p("v1", "compartments", att["compartment"], force=True)
        self.api.request("DELETE", target)

    def _publish(self, att: dict[str, Any], ports: list[dict[str, Any]]) -> None:
        target = p("v1", "endpoints", att["endpoint"], "ports", wait=True,
                   wait_for=self.host, timeout=self.timeout)  # fmt: skip
        status, view = self.api.request("PUT", target, {"ports": ports}, timeout=self.timeout)
        if status == 404 and not ports:
            return  # the endpoint is gone already: so are its ports
        if status >= 400:
            raise PluginError(f"-p on Plexus endpoint {att['endpoint']}: {view['reason']}")
        self._applied(view, f"publish endpoint {att['endpoint']}'s ports")
        with self.state.lock:
            att["published"] = bool(ports)
            self.state.save()
