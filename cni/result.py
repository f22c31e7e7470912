"""The ADD result, built from the endpoint view the controller answered (pure).

Interface 0 is the host end of the veth, interface 1 the container's (``sandbox`` the
namespace's path); the address and the default route name interface 1. ``mtu`` on an
interface is a 1.1.0 field, given only to a 1.1.0 runtime.
"""

from __future__ import annotations

# typing is for the type checker only: importing it costs a start a few ms
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def build(
    view: dict[str, Any], cni_version: str, netns: str, default_route: bool
) -> dict[str, Any]:

    container: dict[str, Any] = {"name": view["interface"], "mac": view["mac"], "sandbox": netns}
    if cni_version != "1.0.0" and view.get("mtu"):
        container["mtu"] = view["mtu"]
    ip: dict[str, Any] = {"address": f"{view['ip']}/{view['prefixlen']}", "interface": 1}
    gateway = view.get("gateway")
    if gateway:
        ip["gateway"] = gateway
    out: dict[str, Any] = {
        "cniVersion": cni_version,
        "interfaces": [{"name": view["host_interface"], "mac": view["host_mac"]}, container],
        "ips": [ip],
    }
    if default_route and gateway:
        out["routes"] = [{"dst": "0.0.0.0/0", "gw": gateway}]
    dns = view.get("resolver")  # its own DNS settings, else its network's
    if dns:
        out["dns"] = {
            k: v for k in ("nameservers", "domain", "search", "options") if (v := dns.get(k))
        }
    return out


def expected(prev: dict[str, Any] | None, netns: str, ifname: str) -> tuple[str | None, list[str]]:
    """What ``prevResult`` says of the interface ``ifname`` in ``netns``: its MAC and its
    addresses (``ip/prefixlen``); (None, []) when it does not list it."""
    if not prev:
        return None, []
    for index, iface in enumerate(prev.get("interfaces") or []):
        if iface.get("name") == ifname and iface.get("sandbox") == netns:
            ips = [
                str(ip.get("address"))
                for ip in prev.get("ips") or []
                if ip.get("interface") == index
            ]
            return iface.get("mac"), ips
    return None, []
