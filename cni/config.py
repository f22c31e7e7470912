"""The request a runtime makes: the ``CNI_*`` environment and the network configuration
on stdin, parsed and checked without I/O (but :func:`agent_host`, which reads the agent's
configuration file when the plugin's configuration names no host), and the ids of the
Plexus objects a container's attachment becomes.

Each mistake is a :class:`~cni.errors.CniError` with the spec's code: 1 for a version the
plugin does not speak, 4 for the environment, 6 for what is not JSON, 7 for the
configuration.
"""

from __future__ import annotations

import hashlib
import json
import os
import re

from .errors import DECODE, INCOMPATIBLE_VERSION, INVALID_CONFIG, INVALID_ENV, CniError

# typing is for the type checker only: importing it costs a start a few ms
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

SUPPORTED_VERSIONS = ("1.0.0", "1.1.0")
#: the commands that appeared in 1.1.0, and refused for a 1.0.0 configuration
NEW_IN_1_1 = ("STATUS", "GC")
COMMANDS = ("ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC")
DEFAULT_CONTROLLER = "http://127.0.0.1:8470"
#: where ``plexus agent`` reads its settings (deploy/systemd/plexus-agent.service)
AGENT_CONFIG = "/etc/plexus/plexus.toml"
MAX_TIMEOUT = 300.0  # the controller's bound on ``timeout``

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_IPV4 = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$")
_URL = re.compile(r"^http://(?P<host>[A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\])(:(?P<port>\d{1,5}))?/?$")


def compartment_id(host: str, container: str) -> str:
    """The compartment of a container on a host (the contract's derivation)."""
    return "cni-" + hashlib.sha256(f"{host}/{container}".encode()).hexdigest()[:20]


def endpoint_id(host: str, container: str, ifname: str) -> str:
    """The endpoint of a container's interface on a host (the contract's derivation)."""
    return "cni-" + hashlib.sha256(f"{host}/{container}/{ifname}".encode()).hexdigest()[:20]


class Env:
    """The ``CNI_*`` variables; what a command does not need may be empty. (Plain
    classes, not dataclasses: ``dataclasses`` imports ``inspect``, a tenth of a start.)"""

    __slots__ = ("args", "command", "container_id", "ifname", "netns", "path")

    def __init__(
        self,
        command: str,
        container_id: str = "",
        netns: str = "",
        ifname: str = "",
        args: dict[str, str] | None = None,
        path: str = "",
    ) -> None:
        self.command = command
        self.container_id = container_id
        self.netns = netns
        self.ifname = ifname
        self.args = args or {}
        self.path = path


class Config:
    """The plugin's network configuration (the conflist's ``plexus`` entry)."""

    __slots__ = (
        "cni_version",
        "controller_host",
        "controller_port",
        "default_route",
        "host",
        "ip",
        "mac",
        "name",
        "network",
        "ports",
        "prev_result",
        "timeout",
        "token_file",
        "valid_attachments",
    )

    def __init__(
        self,
        *,
        cni_version: str,
        name: str,
        network: str,
        controller_host: str,
        controller_port: int,
        host: str,
        token_file: str | None = None,
        default_route: bool | None = None,
        timeout: float = 10.0,
        ip: str | None = None,
        mac: str | None = None,
        ports: list[dict[str, Any]] | None = None,
        prev_result: dict[str, Any] | None = None,
        valid_attachments: list[tuple[str, str]] | None = None,
    ) -> None:
        self.cni_version = cni_version
        self.name = name
        self.network = network
        self.controller_host = controller_host
        self.controller_port = controller_port
        self.host = host
        self.token_file = token_file
        self.default_route = default_route
        self.timeout = timeout
        #: static address (no prefix: the network's subnet gives it) and MAC, if asked for
        self.ip = ip
        self.mac = mac
        #: the endpoint's published ports, in the REST API's shape
        self.ports = ports or []
        self.prev_result = prev_result
        #: GC: the (containerID, ifname) pairs the runtime still uses
        self.valid_attachments = valid_attachments or []

    def __repr__(self) -> str:
        return f"Config({', '.join(f'{k}={getattr(self, k)!r}' for k in self.__slots__)})"


def parse_cni_args(value: str) -> dict[str, str]:
    """``CNI_ARGS``: ``K=V;K=V``. Every key is kept; the plugin reads ``IP`` and ``MAC``
    and ignores the others (as if ``IgnoreUnknown`` were always set)."""
    out: dict[str, str] = {}
    for pair in value.split(";"):
        if not pair.strip():
            continue
        key, sep, val = pair.partition("=")
        if not sep or not key.strip():
            raise CniError(INVALID_ENV, f"CNI_ARGS: {pair!r} is not KEY=VALUE")
        out[key.strip()] = val.strip()
    return out


def _check_ifname(name: str) -> str:
    if (
        not 0 < len(name) <= 15
        or name in (".", "..")
        or any(c in name for c in "/:")
        or any(c.isspace() for c in name)
    ):
        raise CniError(INVALID_ENV, f"CNI_IFNAME {name!r} is not an interface name")
    return name


def parse_env(environ: Mapping[str, str]) -> Env:
    """The environment, with what the command needs checked (code 4)."""
    command = environ.get("CNI_COMMAND", "")
    if command not in COMMANDS:
        raise CniError(INVALID_ENV, f"CNI_COMMAND {command!r} is not one of {', '.join(COMMANDS)}")
    env = Env(
        command=command,
        container_id=environ.get("CNI_CONTAINERID", ""),
        netns=environ.get("CNI_NETNS", ""),
        ifname=environ.get("CNI_IFNAME", ""),
        args=parse_cni_args(environ.get("CNI_ARGS", "")),
        path=environ.get("CNI_PATH", ""),
    )
    if command in ("ADD", "DEL", "CHECK"):
        cid = env.container_id
        if not cid or len(cid) > 256 or not cid.isprintable():
            raise CniError(INVALID_ENV, f"CNI_CONTAINERID {cid!r}: 1 to 256 printable characters")
        _check_ifname(env.ifname)
    if command in ("ADD", "CHECK") and not env.netns:
        raise CniError(INVALID_ENV, f"{command} needs CNI_NETNS (the namespace's path)")
    return env


def decode(data: bytes) -> dict[str, Any]:
    """Stdin's JSON object (code 6 otherwise)."""
    try:
        conf = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise CniError(DECODE, f"the network configuration is not JSON: {e}") from None
    if not isinstance(conf, dict):
        raise CniError(DECODE, "the network configuration is not a JSON object")
    return conf


def check_version(conf: Mapping[str, Any], command: str) -> str:
    version = conf.get("cniVersion")
    if version not in SUPPORTED_VERSIONS:
        raise CniError(
            INCOMPATIBLE_VERSION,
            "incompatible CNI version",
            f"cniVersion {version!r}: plexus-cni speaks {', '.join(SUPPORTED_VERSIONS)}",
        )
    if command in NEW_IN_1_1 and version != "1.1.0":
        raise CniError(
            INCOMPATIBLE_VERSION,
            "incompatible CNI version",
            f"{command} is a CNI 1.1.0 command; the configuration says {version}",
        )
    return str(version)


def _bad(msg: str) -> CniError:
    return CniError(INVALID_CONFIG, msg)


def _ipv4(value: Any, what: str) -> str:
    m = _IPV4.match(value) if isinstance(value, str) else None
    if m is None or any(int(part) > 255 for part in m.groups()):
        raise _bad(f"{what}: {value!r} is not an IPv4 address")
    return ".".join(str(int(part)) for part in m.groups())


def _static_ip(values: Any, what: str) -> str | None:
    """One IPv4 address of ``["10.1.0.5/24"]`` (a Plexus endpoint has one)."""
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list):
        raise _bad(f"{what}: expected a list of addresses")
    v4 = [v for v in values if not (isinstance(v, str) and ":" in v)]
    if len(v4) > 1:
        raise _bad(f"{what}: a Plexus endpoint has one IPv4 address, not {len(v4)}")
    if not v4:
        return None
    return _ipv4(v4[0].split("/", 1)[0] if isinstance(v4[0], str) else v4[0], what)


def _mac(value: Any, what: str) -> str | None:
    if value is None or value == "":
        return None
    mac = value.lower().replace("-", ":") if isinstance(value, str) else ""
    if not _MAC.match(mac):
        raise _bad(f"{what}: {value!r} is not a MAC address")
    return mac


def _ports(mappings: Any) -> list[dict[str, Any]]:
    """``runtimeConfig.portMappings`` → the endpoint's ``ports``. IPv6 host addresses are
    left out (Plexus publishes on IPv4), and so are the duplicates that leaves."""
    if mappings is None:
        return []
    if not isinstance(mappings, list):
        raise _bad("runtimeConfig.portMappings: expected a list")
    out: list[dict[str, Any]] = []
    for m in mappings:
        if not isinstance(m, dict):
            raise _bad(f"runtimeConfig.portMappings: {m!r} is not an object")
        host_ip = m.get("hostIP") or None
        if isinstance(host_ip, str) and ":" in host_ip:
            continue
        protocol = str(m.get("protocol") or "tcp").lower()
        port: dict[str, Any] = {
            "host_port": m.get("hostPort"),
            "port": m.get("containerPort"),
            "protocol": protocol,
        }
        for key in ("host_port", "port"):
            if not isinstance(port[key], int) or not 0 < port[key] < 65536:
                raise _bad(f"runtimeConfig.portMappings: {m!r}: ports are 1 to 65535")
        if protocol not in ("tcp", "udp"):
            raise _bad(f"runtimeConfig.portMappings: {m!r}: protocol tcp or udp")
        if host_ip not in (None, "0.0.0.0"):
            port["host_ip"] = _ipv4(host_ip, "runtimeConfig.portMappings hostIP")
        if port not in out:
            out.append(port)
    return out


def controller_address(url: Any) -> tuple[str, int]:
    m = _URL.match(url) if isinstance(url, str) else None
    if m is None:
        raise _bad(f"controller: {url!r} is not http://HOST[:PORT]")
    port = int(m["port"] or 80)
    if not 0 < port < 65536:
        raise _bad(f"controller: port {port} is out of range")
    return m["host"].strip("[]"), port


def agent_host(path: str) -> str:
    """``[agent] host_id`` of ``plexus agent``'s TOML file (tomllib is loaded only here)."""
    import tomllib

    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise _bad(
            f'no "host" in the configuration, and the agent\'s file {path} is unreadable: {e}'
        ) from None
    host = data.get("agent", {}).get("host_id")
    if not isinstance(host, str) or not host:
        raise _bad(f'no "host" in the configuration, and no [agent] host_id in {path}')
    return host


def _valid_attachments(value: Any) -> list[tuple[str, str]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad("cni.dev/valid-attachments: expected a list")
    out = []
    for a in value:
        if not isinstance(a, dict) or not isinstance(a.get("containerID"), str):
            raise _bad(f"cni.dev/valid-attachments: {a!r} has no containerID")
        out.append((a["containerID"], str(a.get("ifname", ""))))
    return out


def parse_config(
    conf: Mapping[str, Any], env: Env, environ: Mapping[str, str] | None = None
) -> Config:
    """The configuration of any command but VERSION (codes 1 and 7). Static address and
    MAC: ``runtimeConfig`` first, then ``args.cni``, then ``CNI_ARGS`` ``IP=``/``MAC=``."""
    version = check_version(conf, env.command)
    for key in ("name", "network"):
        if not isinstance(conf.get(key), str) or not conf[key]:
            raise _bad(f'"{key}" is missing from the network configuration')
    host_name, port = controller_address(conf.get("controller", DEFAULT_CONTROLLER))
    host = conf.get("host")
    if host is None:
        environ = os.environ if environ is None else environ
        host = agent_host(
            str(conf.get("agentConfig") or environ.get("PLEXUS_CONFIG", AGENT_CONFIG))
        )
    if not isinstance(host, str) or not host:
        raise _bad('"host" must be a host id')
    timeout = conf.get("timeout", 10)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise _bad(f'"timeout": {timeout!r} is not a number of seconds')
    if not 0 < timeout <= MAX_TIMEOUT:
        raise _bad(f'"timeout": {timeout} is not within (0, {MAX_TIMEOUT:g}] seconds')
    # unset: the controller's choice (the compartment's first endpoint in a network with
    # a gateway routes its default; a network without one cannot)
    default_route = conf.get("defaultRoute")
    if default_route is not None and not isinstance(default_route, bool):
        raise _bad('"defaultRoute" must be true or false')
    token_file = conf.get("tokenFile")
    if token_file is not None and not isinstance(token_file, str):
        raise _bad('"tokenFile" must be a path')
    rc = conf.get("runtimeConfig") or {}
    args = ((conf.get("args") or {}).get("cni")) or {}
    if not isinstance(rc, dict) or not isinstance(args, dict):
        raise _bad('"runtimeConfig" and "args.cni" must be objects')
    ip = (
        _static_ip(rc.get("ips"), "runtimeConfig.ips")
        or _static_ip(args.get("ips"), "args.cni.ips")
        or _static_ip(env.args.get("IP"), "CNI_ARGS IP")
    )
    mac = (
        _mac(rc.get("mac"), "runtimeConfig.mac")
        or _mac(args.get("mac"), "args.cni.mac")
        or _mac(env.args.get("MAC"), "CNI_ARGS MAC")
    )
    prev = conf.get("prevResult")
    if prev is not None and not isinstance(prev, dict):
        raise _bad('"prevResult" must be an object')
    return Config(
        cni_version=version,
        name=conf["name"],
        network=conf["network"],
        controller_host=host_name,
        controller_port=port,
        host=host,
        token_file=token_file,
        default_route=default_route,
        timeout=float(timeout),
        ip=ip,
        mac=mac,
        ports=_ports(rc.get("portMappings")),
        prev_result=prev,
        valid_attachments=_valid_attachments(conf.get("cni.dev/valid-attachments")),
    )
