"""The CNI plugin's pure parts: the request's parsing and its errors, the ids, the
result built from an endpoint view, the error JSON; and the commands' decisions against
an in-memory controller (a fake of :class:`cni.api.Controller`'s one method)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from cni import commands, result
from cni.api import ApiError
from cni.api import path as api_path
from cni.check import compare
from cni.config import (
    Env,
    compartment_id,
    endpoint_id,
    parse_cni_args,
    parse_config,
    parse_env,
)
from cni.errors import CniError
from cni.main import main

ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "c0ffee",
    "CNI_NETNS": "/proc/self/ns/net",
    "CNI_IFNAME": "eth0",
}
CONF: dict[str, Any] = {
    "cniVersion": "1.0.0",
    "name": "blue",
    "type": "plexus",
    "network": "blue",
    "host": "h1",
}

VIEW: dict[str, Any] = {
    "id": endpoint_id("h1", "c0ffee", "eth0"),
    "network": "blue",
    "compartment": compartment_id("h1", "c0ffee"),
    "host": "h1",
    "ip": "10.1.0.5",
    "prefixlen": 24,
    "mac": "02:00:0a:01:00:05",
    "interface": "eth0",
    "host_interface": "pxh1234",
    "host_mac": "02:aa:bb:cc:dd:ee",
    "mtu": 1450,
    "gateway": "10.1.0.1",
    "default_route": True,
    "resolver": {"nameservers": ["10.1.0.53"], "domain": "lab", "search": ["lab"], "options": []},
}


def err(code: int, f: Any, *args: Any, **kwargs: Any) -> CniError:
    with pytest.raises(CniError) as e:
        f(*args, **kwargs)
    assert e.value.code == code, e.value.msg
    return e.value


def config(env: dict[str, str] | None = None, **conf: Any) -> Any:
    e = parse_env({**ENV, **(env or {})})
    return parse_config({**CONF, **conf}, e, {})


def test_ids_are_the_contracts_derivation() -> None:
    import hashlib

    assert compartment_id("h1", "c") == "cni-" + hashlib.sha256(b"h1/c").hexdigest()[:20]
    assert endpoint_id("h1", "c", "eth0") == "cni-" + hashlib.sha256(b"h1/c/eth0").hexdigest()[:20]
    assert len(endpoint_id("h1", "c", "eth0")) == 24


def test_cni_args_keep_every_key_and_refuse_what_is_not_a_pair() -> None:
    assert parse_cni_args("IgnoreUnknown=1;IP=10.1.0.5;K8S_POD_NAME=x;") == {
        "IgnoreUnknown": "1",
        "IP": "10.1.0.5",
        "K8S_POD_NAME": "x",
    }
    err(4, parse_cni_args, "IP")


def test_the_environment_is_checked_per_command() -> None:
    err(4, parse_env, {})
    err(4, parse_env, {**ENV, "CNI_IFNAME": "a-name-over-15-chars"})
    err(4, parse_env, {**ENV, "CNI_IFNAME": "eth/0"})
    err(4, parse_env, {**ENV, "CNI_NETNS": ""})
    assert parse_env({**ENV, "CNI_COMMAND": "DEL", "CNI_NETNS": ""}).netns == ""
    assert parse_env({"CNI_COMMAND": "GC"}).command == "GC"


def test_versions_other_than_1_0_and_1_1_are_incompatible() -> None:
    e = err(1, config, None, cniVersion="0.4.0")
    assert e.msg == "incompatible CNI version" and "0.4.0" in e.details
    e = err(1, config, {"CNI_COMMAND": "STATUS"})
    assert "1.1.0" in e.details
    assert config({"CNI_COMMAND": "STATUS"}, cniVersion="1.1.0").cni_version == "1.1.0"


def test_a_configuration_mistake_is_code_7() -> None:
    conf = {k: v for k, v in CONF.items() if k != "network"}
    err(7, parse_config, conf, parse_env(ENV), {})
    err(7, config, None, controller="https://x")
    err(7, config, None, timeout=0)
    err(7, config, None, timeout="10")
    err(7, config, None, defaultRoute="yes")
    err(7, config, None, runtimeConfig={"ips": ["10.1.0.5/24", "10.1.0.6/24"]})
    err(7, config, None, runtimeConfig={"mac": "zz"})
    err(7, config, None, runtimeConfig={"portMappings": [{"hostPort": 0, "containerPort": 80}]})


def test_defaults() -> None:
    c = config()
    assert (c.controller_host, c.controller_port) == ("127.0.0.1", 8470)
    assert c.timeout == 10.0 and c.default_route is None and c.ip is None and c.mac is None


def test_static_address_and_mac_in_order_of_precedence() -> None:
    args = {"CNI_ARGS": "IgnoreUnknown=1;IP=10.1.0.7;MAC=02:00:00:00:00:07"}
    c = config(args)
    assert (c.ip, c.mac) == ("10.1.0.7", "02:00:00:00:00:07")
    c = config(args, args={"cni": {"ips": ["10.1.0.6/24"], "mac": "02:00:00:00:00:06"}})
    assert (c.ip, c.mac) == ("10.1.0.6", "02:00:00:00:00:06")
    c = config(
        args,
        args={"cni": {"ips": ["10.1.0.6/24"]}},
        runtimeConfig={"ips": ["10.1.0.5/24", "fd00::5/64"], "mac": "02-00-00-00-00-05"},
    )
    assert (c.ip, c.mac) == ("10.1.0.5", "02:00:00:00:00:05")


def test_port_mappings_become_the_endpoints_ports() -> None:
    c = config(
        runtimeConfig={
            "portMappings": [
                {"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": ""},
                {"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "::"},
                {"hostPort": 53, "containerPort": 53, "protocol": "UDP", "hostIP": "192.0.2.1"},
            ]
        }
    )
    assert c.ports == [
        {"host_port": 8080, "port": 80, "protocol": "tcp"},
        {"host_port": 53, "port": 53, "protocol": "udp", "host_ip": "192.0.2.1"},
    ]


def test_the_host_comes_from_the_agents_file_when_not_configured(tmp_path: Path) -> None:
    conf = {k: v for k, v in CONF.items() if k != "host"}
    agent = tmp_path / "plexus.toml"
    agent.write_text('[agent]\nhost_id = "node7"\nbroker = "mqtt://x:1883"\n')
    assert parse_config(conf, parse_env(ENV), {"PLEXUS_CONFIG": str(agent)}).host == "node7"
    assert parse_config({**conf, "agentConfig": str(agent)}, parse_env(ENV), {}).host == "node7"
    e = err(7, parse_config, conf, parse_env(ENV), {"PLEXUS_CONFIG": str(tmp_path / "none")})
    assert "host" in e.msg
    agent.write_text("[controller]\n")
    err(7, parse_config, conf, parse_env(ENV), {"PLEXUS_CONFIG": str(agent)})


def test_the_result_is_built_from_the_endpoint_view() -> None:
    out = result.build(VIEW, "1.0.0", "/run/netns/x", True)
    assert out == {
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": "pxh1234", "mac": "02:aa:bb:cc:dd:ee"},
            {"name": "eth0", "mac": "02:00:0a:01:00:05", "sandbox": "/run/netns/x"},
        ],
        "ips": [{"address": "10.1.0.5/24", "gateway": "10.1.0.1", "interface": 1}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}],
        "dns": {"nameservers": ["10.1.0.53"], "domain": "lab", "search": ["lab"]},
    }
    out = result.build({**VIEW, "gateway": None, "resolver": None}, "1.1.0", "/n", True)
    assert out["interfaces"][1]["mtu"] == 1450  # a 1.1.0 field
    assert "routes" not in out and "dns" not in out and "gateway" not in out["ips"][0]


def test_check_compares_the_endpoint_with_prev_result() -> None:
    prev = result.build(VIEW, "1.0.0", "/n", True)
    compare(VIEW, prev, "/n")
    compare(VIEW, None, "/n")
    assert "MAC" in err(110, compare, {**VIEW, "mac": "02:00:00:00:00:09"}, prev, "/n").msg
    assert "address" in err(110, compare, {**VIEW, "ip": "10.1.0.9"}, prev, "/n").msg
    err(110, compare, VIEW, prev, "/other")


def run(env: dict[str, str], stdin: bytes) -> tuple[int, dict[str, Any] | None]:
    out = io.StringIO()
    rc = main(env, io.BytesIO(stdin), out)
    return rc, json.loads(out.getvalue()) if out.getvalue() else None


def test_errors_are_cni_json_on_stdout_never_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rc, doc = run({**ENV, "CNI_COMMAND": "ADD"}, b"{not json")
    assert rc == 1 and doc == {"cniVersion": "1.1.0", "code": 6, "msg": doc["msg"]}
    rc, doc = run({**ENV, "CNI_COMMAND": "ADD"}, json.dumps({**CONF, "timeout": -1}).encode())
    assert rc == 1 and doc is not None and doc["code"] == 7 and doc["cniVersion"] == "1.0.0"
    rc, doc = run({"CNI_COMMAND": "VERSION"}, b"")
    assert rc == 0 and doc == {"cniVersion": "1.1.0", "supportedVersions": ["1.0.0", "1.1.0"]}
    assert capsys.readouterr().err == ""


def test_a_bug_is_error_199_and_its_traceback_goes_to_stderr_when_debugging(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def boom(*a: Any) -> None:
        raise KeyError("x")

    monkeypatch.setattr("cni.main.parse_config", boom)
    rc, doc = run({**ENV, "CNI_COMMAND": "DEL"}, json.dumps(CONF).encode())
    assert rc == 1 and doc is not None and doc["code"] == 199 and "KeyError" in doc["msg"]
    assert capsys.readouterr().err == ""
    rc, _ = run({**ENV, "CNI_COMMAND": "DEL", "PLEXUS_CNI_DEBUG": "1"}, json.dumps(CONF).encode())
    assert "Traceback" in capsys.readouterr().err


class FakeApi:
    """The controller's REST API as the plugin uses it, in memory (only what ADD, DEL
    and GC touch); ``converge=False`` makes every wait time out on host h1."""

    def __init__(self, converge: bool = True) -> None:
        self.converge = converge
        self.comps: dict[str, dict[str, Any]] = {}
        self.eps: dict[str, dict[str, Any]] = {}
        self.log: list[str] = []

    def _conv(self) -> dict[str, Any]:
        pending = [] if self.converge else [{"host": "h1", "state": "online", "waiting_for": []}]
        return {"converged": self.converge, "pending": pending, "offline": []}

    def request(self, method: str, target: str, body: Any = None, timeout: float = 0) -> Any:
        path, _, query = target.partition("?")
        parts = path.strip("/").split("/")[1:]
        self.log.append(f"{method} {path}")
        kind = parts[0]
        if method == "GET" and kind == "networks":
            return (200, {"id": "blue"}) if parts[1] == "blue" else (404, {"reason": "no net"})
        table = self.comps if kind == "compartments" else self.eps
        if method == "GET" and len(parts) == 2:
            return (200, table[parts[1]]) if parts[1] in table else (404, {"reason": "gone"})
        if method == "GET":
            return 200, list(table.values())
        if method == "POST":
            if body["id"] in table:
                raise ApiError(100, "exists", 409, "exists")
            if kind == "endpoints":
                self.comps[body["compartment"]]["endpoints"].append(body["id"])
                view = {**VIEW, **body, "interface": body["ifname"], "convergence": self._conv()}
                table[body["id"]] = view
                return 201, view
            table[body["id"]] = {**body, "endpoints": []}
            return 201, table[body["id"]]
        if parts[1] not in table:
            return 404, {"reason": "gone"}
        if kind == "compartments" and table[parts[1]]["endpoints"] and "force=true" not in query:
            raise ApiError(100, "has endpoints", 409, "has endpoints")
        gone = table.pop(parts[1])
        if kind == "endpoints":
            self.comps[gone["compartment"]]["endpoints"].remove(parts[1])
        else:
            for e in gone["endpoints"]:
                self.eps.pop(e)
        return 200, {"deleted": True}

    def get(self, target: str) -> Any:
        return self.request("GET", target)


def add(api: FakeApi, ifname: str = "eth0", netns: str = "/proc/self/ns/net") -> Any:
    env = parse_env({**ENV, "CNI_IFNAME": ifname, "CNI_NETNS": netns})
    return commands.add(api, parse_config(CONF, env, {}), env)  # type: ignore[arg-type]


def test_add_makes_the_compartment_once_for_several_interfaces_and_del_undoes_it() -> None:
    api = FakeApi()
    out = add(api)
    assert out["interfaces"][1]["name"] == "eth0" and out["ips"][0]["address"] == "10.1.0.5/24"
    add(api, "eth1")  # the compartment exists with the same inode: fine
    cid = compartment_id("h1", "c0ffee")
    assert api.comps[cid]["endpoints"] == [endpoint_id("h1", "c0ffee", i) for i in ("eth0", "eth1")]
    assert api.comps[cid]["netns"]["container"] == "c0ffee"
    env = parse_env({**ENV, "CNI_COMMAND": "DEL", "CNI_NETNS": ""})
    commands.delete(api, parse_config(CONF, env, {}), env)  # type: ignore[arg-type]
    assert cid in api.comps  # eth1 is left
    env = parse_env({**ENV, "CNI_COMMAND": "DEL", "CNI_IFNAME": "eth1"})
    for _ in range(2):  # idempotent
        commands.delete(api, parse_config(CONF, env, {}), env)  # type: ignore[arg-type]
    assert api.comps == {} and api.eps == {}


def test_a_compartment_of_another_namespace_is_stale_and_replaced() -> None:
    api = FakeApi()
    add(api)
    cid = compartment_id("h1", "c0ffee")
    api.comps[cid]["netns"]["inode"] = 1
    api.eps.clear()
    api.comps[cid]["endpoints"].clear()
    add(api)
    assert api.comps[cid]["netns"]["inode"] != 1
    assert f"DELETE /v1/compartments/{cid}" in api.log


def test_an_unknown_network_is_a_configuration_error_and_makes_nothing() -> None:
    api = FakeApi()
    env = parse_env(ENV)
    e = err(7, commands.add, api, parse_config({**CONF, "network": "red"}, env, {}), env)
    assert "red" in e.msg and api.comps == {}


def test_an_add_that_does_not_converge_is_undone_and_try_again_later() -> None:
    api = FakeApi(converge=False)
    e = err(11, add, api)
    assert "h1" in e.details and api.comps == {} and api.eps == {}


def test_gc_deletes_what_the_runtime_no_longer_lists() -> None:
    api = FakeApi()
    for cid in ("keep", "drop"):
        env = parse_env({**ENV, "CNI_CONTAINERID": cid})
        commands.add(api, parse_config(CONF, env, {}), env)  # type: ignore[arg-type]
    api.comps["agent-made"] = {"id": "agent-made", "host": "h1", "netns": None, "endpoints": []}
    env = parse_env({"CNI_COMMAND": "GC"})
    valid = [{"containerID": "keep", "ifname": "eth0"}]
    conf = parse_config(
        {**CONF, "cniVersion": "1.1.0", "cni.dev/valid-attachments": valid}, env, {}
    )
    gone = commands.gc(api, conf)  # type: ignore[arg-type]
    assert gone == [endpoint_id("h1", "drop", "eth0"), compartment_id("h1", "drop")]
    assert set(api.comps) == {compartment_id("h1", "keep"), "agent-made"}


def test_query_strings() -> None:
    assert api_path("v1", "endpoints", wait=True, wait_for="h1", force=False, x=None) == (
        "/v1/endpoints?wait=true&wait_for=h1"
    )
    assert api_path("v1", "a/b") == "/v1/a%2Fb"


def test_env_defaults() -> None:
    assert Env("DEL").netns == ""


def test_the_wire_reads_both_body_framings_and_retries_a_closed_kept_connection() -> None:
    """A server that answers once with Content-Length, then closes the kept connection
    on the next request (the plugin sends it again on a new one), which it answers
    chunked."""
    import socket
    import threading

    from cni.api import Controller

    srv = socket.create_server(("127.0.0.1", 0))
    answers = [
        b'HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n{"a": 1}   ',
        None,  # close without answering
        b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        b'5\r\n{"rea\r\n10\r\nson": "no such"}\r\n0\r\n\r\n',
    ]

    def serve() -> None:
        conn, _ = srv.accept()
        for answer in answers:
            conn.recv(65536)
            if answer is None:  # the request is dropped; its retry comes on a new one
                conn.close()
                conn, _ = srv.accept()
                conn.recv(65536)
                conn.sendall(answers[2] or b"")
                break
            conn.sendall(answer)
        conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    api = Controller("127.0.0.1", srv.getsockname()[1])
    try:
        assert api.get("/x") == (200, {"a": 1})
        assert api.get("/y") == (404, {"status": 404, "reason": "no such"})
    finally:
        api.close()
        srv.close()
    t.join(5)
