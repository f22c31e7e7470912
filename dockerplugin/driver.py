"""libnetwork's remote driver calls as Plexus objects (README, "Use Plexus with Docker").

A Docker network is a Plexus network the plugin made (``-o mode=… -o vni=…``) or one it
binds to (``-o network=ID``): libnetwork's local scope gives every host's Docker a
network of its own, and the Docker name never reaches the driver, so hosts meet on the
Plexus network by option. Each container address is a **handed-over** compartment with
one endpoint (``RequestAddress``: the controller allocates, or takes ``--ip``; the
call waits until this host's agent made the pair); ``CreateEndpoint`` answers the Plexus
MAC (or makes the endpoint again with ``--mac-address``'s); ``Join`` names the pair's
inner end (``pxi…``) for libnetwork to move into the container, with the gateway;
``DeleteEndpoint`` (else ``ReleaseAddress``) deletes the compartment and its endpoint,
and the agent deletes the pair wherever its inner end is.

Every refusal is a :class:`PluginError`, which the server answers as ``{"Err": …}``:
Docker shows it to the user after its own words.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable
from typing import Any

from cni.api import ApiError, Controller
from cni.api import path as p
from cni.errors import CniError

from .calls import Calls
from .errors import PluginError
from .ports import published
from .state import State

GENERIC = "com.docker.network.generic"
GATEWAY_REQUEST = "com.docker.network.gateway"
MAC_OPTION = "com.docker.network.endpoint.macaddress"
#: ``-o`` options of ``docker network create``
OPTIONS = frozenset({"mode", "vni", "outbound_nat", "network", "name"})
ADDRESS_SPACE = "plexus"

Handler = Callable[[dict[str, Any]], dict[str, Any]]


def _bool(value: str, what: str) -> bool:
    if value.lower() in ("true", "1", "yes", "on"):
        return True
    if value.lower() in ("false", "0", "no", "off", ""):
        return False
    raise PluginError(f"-o {what}={value}: expected true or false")


def _ip(cidr: str) -> str:
    return cidr.split("/", 1)[0]


class Driver(Calls):
    """``host``: this host's id in Plexus; ``connect``: a new controller client (each
    server thread keeps its own: a client is one kept connection); ``timeout``: how
    long a call waits for this host's agent."""

    def __init__(
        self, host: str, connect: Callable[[], Controller], state: State, timeout: float = 10.0
    ) -> None:
        self.host = host
        self.connect = connect
        self.state = state
        self.timeout = timeout
        self._local = threading.local()
        self.calls: dict[str, Handler] = {
            "Plugin.Activate": lambda _: {"Implements": ["NetworkDriver", "IpamDriver"]},
            "NetworkDriver.GetCapabilities": lambda _: {
                "Scope": "local",
                "ConnectivityScope": "local",
            },
            "NetworkDriver.CreateNetwork": self.create_network,
            "NetworkDriver.DeleteNetwork": self.delete_network,
            "NetworkDriver.CreateEndpoint": self.create_endpoint,
            "NetworkDriver.EndpointOperInfo": lambda _: {"Value": {}},
            "NetworkDriver.DeleteEndpoint": self.delete_endpoint,
            "NetworkDriver.Join": self.join,
            "NetworkDriver.Leave": lambda _: {},
            "NetworkDriver.ProgramExternalConnectivity": self.program_external,
            "NetworkDriver.RevokeExternalConnectivity": self.revoke_external,
            "NetworkDriver.DiscoverNew": lambda _: {},
            "NetworkDriver.DiscoverDelete": lambda _: {},
            "NetworkDriver.AllocateNetwork": lambda _: {},
            "NetworkDriver.FreeNetwork": lambda _: {},
            "IpamDriver.GetCapabilities": lambda _: {"RequiresMACAddress": False},
            "IpamDriver.GetDefaultAddressSpaces": lambda _: {
                "LocalDefaultAddressSpace": ADDRESS_SPACE,
                "GlobalDefaultAddressSpace": ADDRESS_SPACE + "-global",
            },
            "IpamDriver.RequestPool": self.request_pool,
            "IpamDriver.ReleasePool": self.release_pool,
            "IpamDriver.RequestAddress": self.request_address,
            "IpamDriver.ReleaseAddress": self.release_address,
        }

    def call(self, name: str, req: dict[str, Any]) -> dict[str, Any]:
        handler = self.calls.get(name)
        if handler is None:
            raise PluginError(f"{name}: not implemented by Plexus")
        try:
            return handler(req)
        except CniError as e:  # the controller refused or is unreachable: its words
            raise PluginError(e.msg + (f" ({e.details})" if e.details else "")) from None

    # -- IPAM ----------------------------------------------------------------------

    def request_pool(self, req: dict[str, Any]) -> dict[str, Any]:
        if req.get("V6"):
            raise PluginError("Plexus networks are IPv4 only: leave out --ipv6")
        if not req.get("Pool"):
            raise PluginError("Plexus's IPAM takes the network's subnet: give --subnet")
        try:
            subnet = str(ipaddress.IPv4Network(req["Pool"]))
            sub = str(ipaddress.IPv4Network(req["SubPool"])) if req.get("SubPool") else None
        except ValueError as e:
            raise PluginError(f"--subnet/--ip-range: {e}") from None
        with self.state.lock:
            if subnet in self.state.pools:
                raise PluginError(f"subnet {subnet} is another Docker network's on this host")
            self.state.pools[subnet] = {"subnet": subnet, "ip_range": sub}
            self.state.save()
        return {"PoolID": subnet, "Pool": subnet, "Data": {}}

    def release_pool(self, req: dict[str, Any]) -> dict[str, Any]:
        with self.state.lock:
            if self.state.pools.pop(req.get("PoolID", ""), None) is not None:
                self.state.save()
        return {}

    def _pool(self, pool: str) -> ipaddress.IPv4Network:
        if pool not in self.state.pools:
            raise PluginError(f"pool {pool} is not Plexus's: use --ipam-driver with -d")
        return ipaddress.IPv4Network(pool)

    def request_address(self, req: dict[str, Any]) -> dict[str, Any]:
        pool = self._pool(req.get("PoolID", ""))
        opts = req.get("Options") or {}
        if opts.get("RequestAddressType") == GATEWAY_REQUEST:
            # before CreateNetwork: the gateway asked (--gateway) or Plexus's default
            gw = req.get("Address") or str(next(pool.hosts()))
            return {"Address": f"{gw}/{pool.prefixlen}", "Data": {}}
        network = self.state.network_of_pool(str(pool))
        if network is None:
            raise PluginError(f"pool {pool} has no Plexus network yet")
        att = self._attach(network, req.get("Address") or None, opts.get(MAC_OPTION) or None)
        with self.state.lock:
            self.state.addresses[f"{pool}|{att['ip']}"] = att
            self.state.save()
        return {"Address": f"{att['ip']}/{att['prefixlen']}", "Data": {}}

    def release_address(self, req: dict[str, Any]) -> dict[str, Any]:
        with self.state.lock:
            att = self.state.addresses.pop(f"{req.get('PoolID')}|{req.get('Address')}", None)
            if att is not None:
                self.state.save()
        if att is not None:  # no DeleteEndpoint took it (a run that failed half-way)
            self._detach(att)
        return {}

    # -- networks ------------------------------------------------------------------

    def create_network(self, req: dict[str, Any]) -> dict[str, Any]:
        opts: dict[str, str] = {
            k: str(v) for k, v in ((req.get("Options") or {}).get(GENERIC) or {}).items()
        }
        unknown = sorted(set(opts) - OPTIONS)
        if unknown:
            raise PluginError(
                f"unknown option(s) {', '.join(unknown)}: Plexus takes {', '.join(sorted(OPTIONS))}"
            )
        v4 = req.get("IPv4Data") or []
        if len(v4) != 1:
            raise PluginError("a Plexus network has exactly one IPv4 subnet")
        subnet = str(self._pool(str(ipaddress.IPv4Network(v4[0]["Pool"]))))
        gateway = _ip(v4[0].get("Gateway") or "") or None
        if "network" in opts:
            made, network = False, self._bind(opts, subnet, gateway)
        else:
            made, network = True, self._make(req["NetworkID"], opts, subnet, gateway)
        try:
            self._pin(network)
        except (PluginError, CniError):
            if made:
                self.api.request("DELETE", p("v1", "networks", network))
            raise
        with self.state.lock:
            self.state.networks[req["NetworkID"]] = {
                "network": network,
                "made": made,
                "pool": subnet,
            }
            self.state.save()
        return {}

    def _bind(self, opts: dict[str, str], subnet: str, gateway: str | None) -> str:
        network = opts["network"]
        other = sorted(set(opts) - {"network"})
        if other:
            raise PluginError(
                f"-o network={network} binds to a Plexus network: its {', '.join(other)} "
                "are set where it was made"
            )
        status, have = self.api.get(p("v1", "networks", network))
        if status == 404:
            raise PluginError(f"no Plexus network {network!r} to bind to")
        if status >= 400:
            raise PluginError(f"Plexus network {network!r}: {have.get('reason')}")
        if have["subnet"] != subnet:
            raise PluginError(
                f"Plexus network {network!r} is {have['subnet']}: give --subnet {have['subnet']}"
            )
        if have.get("gateway") and gateway and have["gateway"] != gateway:
            raise PluginError(
                f"Plexus network {network!r}'s gateway is {have['gateway']}: "
                f"give --gateway {have['gateway']}"
            )
        return network

    def _make(self, docker_id: str, opts: dict[str, str], subnet: str, gateway: str | None) -> str:
        network = opts.get("name") or f"docker-{docker_id[:12]}"
        body: dict[str, Any] = {"id": network, "mode": opts.get("mode", "overlay")}
        body["subnet"] = subnet
        if gateway:
            body["gateway"] = gateway
        if self.state.pools[subnet].get("ip_range"):
            body["ip_range"] = self.state.pools[subnet]["ip_range"]
        if "vni" in opts:
            if not opts["vni"].isdigit():
                raise PluginError(f"-o vni={opts['vni']}: expected a number")
            body["vni"] = int(opts["vni"])
        if "outbound_nat" in opts:
            body["outbound_nat"] = _bool(opts["outbound_nat"], "outbound_nat")
        try:
            status, answer = self.api.request("POST", p("v1", "networks"), body)
        except ApiError as e:
            hint = " (making a network takes the admin token; bind with -o network=ID)"
            raise PluginError(e.msg + (hint if e.status == 403 else "")) from None
        if status >= 400:
            raise PluginError(f"Plexus refused network {network!r}: {answer['reason']}")
        return network

    def delete_network(self, req: dict[str, Any]) -> dict[str, Any]:
        with self.state.lock:
            rec = self.state.networks.get(req.get("NetworkID", ""))
        if rec is not None:  # 404: gone already
            self.api.request("DELETE", p("v1", "networks", rec["network"], "hosts", self.host))
        if rec is not None and rec["made"]:
            self.api.request("DELETE", p("v1", "networks", rec["network"]))  # 404: gone
        with self.state.lock:
            self.state.networks.pop(req.get("NetworkID", ""), None)
            self.state.save()
        return {}

    # -- endpoints -----------------------------------------------------------------

    def _attachment(self, req: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        rec = self.state.networks.get(req.get("NetworkID", ""))
        if rec is None:
            raise PluginError(f"Docker network {req.get('NetworkID')} is not Plexus's")
        address = _ip((req.get("Interface") or {}).get("Address") or "")
        key = f"{rec['pool']}|{address}"
        att = self.state.addresses.get(key)
        if att is None:
            raise PluginError(f"address {address or '(none)'} was not given by Plexus's IPAM")
        return key, att

    def create_endpoint(self, req: dict[str, Any]) -> dict[str, Any]:
        with self.state.lock:
            key, att = self._attachment(req)
        mac = (req.get("Interface") or {}).get("MacAddress") or None
        if mac is not None and mac.lower() != att["mac"].lower():
            # --mac-address: the endpoint made again with it (the address kept)
            self.api.request("DELETE", p("v1", "endpoints", att["endpoint"]))
            att = self._endpoint(att["compartment"], att["network"], att["ip"], mac)
        with self.state.lock:
            self.state.addresses[key] = att
            self.state.endpoints[req["EndpointID"]] = key
            self.state.save()
        # a MAC in the answer where Docker gave one is refused by libnetwork
        return {"Interface": {}} if mac else {"Interface": {"MacAddress": att["mac"]}}

    def join(self, req: dict[str, Any]) -> dict[str, Any]:
        att = self._joined(req)
        if att is None:
            raise PluginError(f"endpoint {req.get('EndpointID')} is not Plexus's")
        out: dict[str, Any] = {
            "InterfaceName": {"SrcName": att["interface"], "DstPrefix": "eth"},
            # Plexus routes the container: no docker_gwbridge beside it
            "DisableGatewayService": True,
        }
        if att.get("gateway"):
            out["Gateway"] = att["gateway"]
        return out

    def _joined(self, req: dict[str, Any]) -> dict[str, Any] | None:
        with self.state.lock:
            key = self.state.endpoints.get(req.get("EndpointID", ""))
            return self.state.addresses.get(key or "")

    def program_external(self, req: dict[str, Any]) -> dict[str, Any]:
        """``-p``: the endpoint's published ports, applied on this host when answered."""
        ports = published(req.get("Options") or {})
        att = self._joined(req)
        if att is None:
            raise PluginError(f"endpoint {req.get('EndpointID')} is not Plexus's")
        if ports:
            self._publish(att, ports)
        return {}

    def revoke_external(self, req: dict[str, Any]) -> dict[str, Any]:
        att = self._joined(req)
        if att is not None and att.get("published"):
            self._publish(att, [])
        return {}

    def delete_endpoint(self, req: dict[str, Any]) -> dict[str, Any]:
        with self.state.lock:
            key = self.state.endpoints.pop(req.get("EndpointID", ""), None)
            att = self.state.addresses.pop(key or "", None)
            self.state.save()
        if att is not None:
            # the interface is back in this namespace, down: deleting the endpoint
            # makes the agent delete its pair
            self._detach(att)
        return {}
