"""``plexus-agent`` (:mod:`agents.main`): its flags are the settings' fields, ``plexus
agent`` is the same program, and the agent's process loads neither the CLI nor the
API nor rich (a real agent process, run until it stops on a VTEP interface that does
not exist: past its settings, logging, the daemon's and the driver's imports)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from agents.config import AgentSettings
from agents.main import FLAGS, load, parser
from tests.support import modules_loaded, run_clean

BIN = Path(sys.executable).parent
#: what the agent's process must not load: the command tree, the REST API's stack, rich
#: (structlog imports it when it can), the parts of pyroute2 the driver does not use
NOT_IN_AGENT = (
    "typer",
    "click",
    "rich",
    "pygments",
    "fastapi",
    "starlette",
    "uvicorn",
    "httpx",
    "cli",
    "controller",
    "sqlite3",
    "pyroute2.ndb",
    "pyroute2.ipdb",
)
#: a VTEP interface that does not exist: the agent stops at start, exit 1
NO_VTEP = ["--host-id", "t1", "--vtep-interface", "pxnoneXYZ0", "--log-format", "console"]


def test_every_setting_is_a_flag() -> None:
    """The flags are made from the settings' fields: a field added is a flag."""
    ap = parser()
    dests = {a.dest for a in ap._actions if a.dest != "help"}
    assert dests == {*AgentSettings.model_fields, "config"}
    flags = {s for a in ap._actions for s in a.option_strings}
    assert {"--host-id", "--broker", "--vtep-interface", "--metrics-port"} <= flags
    assert FLAGS["allowed_uplinks"] in flags and "--allowed-uplinks" not in flags
    assert {"--verify-view", "--no-verify-view", "--config"} <= flags


def test_flags_over_environment_over_file_over_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "plexus.toml"
    cfg.write_text(
        '[agent]\nhost_id = "from-file"\nbroker = "mqtt://file:1"\nresync_interval = 5\n'
        'allowed_uplinks = ["eth9"]\n'
    )
    monkeypatch.setenv("PLEXUS_BROKER", "mqtt://env:2")
    monkeypatch.setenv("PLEXUS_METRICS_PORT", "9999")
    s = load(["--config", str(cfg), "--resync-interval", "2", "--metrics-port", "9470"])
    assert (s.host_id, s.broker, s.resync_interval) == ("from-file", ["mqtt://env:2"], 2.0)
    assert s.metrics_port == 9470 and s.allowed_uplinks == ["eth9"]
    assert (s.log_level, s.verify_view, s.vtep_address) == ("info", False, None)
    monkeypatch.setenv("PLEXUS_CONFIG", str(cfg))  # --config's default
    assert load([]).host_id == "from-file"


def test_several_brokers_from_flags_environment_and_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A root broker and its relays: --broker repeated, PLEXUS_BROKER comma-separated
    (or a JSON list), a TOML list or string; one URL alone stays a list of one."""
    a, b = "mqtt://relay-a:1883", "mqtts://relay-b:8883"
    assert load(["--host-id", "h1", "--broker", a, "--broker", b]).broker == [a, b]
    assert load(["--host-id", "h1"]).broker == ["mqtt://127.0.0.1:1883"]
    cfg = tmp_path / "plexus.toml"
    cfg.write_text(f'[agent]\nhost_id = "h1"\nbroker = ["{a}", "{b}"]\n')
    assert load(["--config", str(cfg)]).broker == [a, b]
    cfg.write_text(f'[agent]\nhost_id = "h1"\nbroker = "{a}"\n')
    assert load(["--config", str(cfg)]).broker == [a]
    monkeypatch.setenv("PLEXUS_BROKER", f"{a}, {b}")
    assert load(["--host-id", "h1"]).broker == [a, b]
    monkeypatch.setenv("PLEXUS_BROKER", f'["{b}"]')
    assert load(["--host-id", "h1"]).broker == [b]
    urls = load(["--host-id", "h1", "--broker", a, "--broker", b]).broker_urls()
    assert [str(u) for u in urls] == ["mqtt://relay-a:1883", "mqtts://relay-b:8883"]


def test_repeated_and_boolean_flags() -> None:
    s = load(["--host-id", "h1", "--allowed-uplink", "eth1", "--allowed-uplink", "eth2"])
    assert s.allowed_uplinks == ["eth1", "eth2"] and not s.verify_view
    assert load(["--host-id", "h1", "--verify-view"]).verify_view
    assert not load(["--host-id", "h1", "--no-verify-view"]).verify_view


@pytest.mark.parametrize(
    "argv",
    [
        ["--host-id", "h1", "--resync-interval", "0"],
        ["--host-id", "Not An Id"],
        ["--host-id", "h1", "--broker", "http://h"],
        ["--host-id", "h1", "--broker", "mqtt://h", "--broker", "http://h"],
        ["--host-id", "h1", "--broker", ","],
        ["--host-id", "h1", "--metrics-port", "many"],
        ["--host-id", "h1", "--allowed-uplink", "a/b"],
        ["--broker", "mqtt://h"],  # no host id anywhere
    ],
)
def test_bad_settings_are_refused(argv: list[str]) -> None:
    with pytest.raises(ValidationError):
        load(argv)


@pytest.mark.parametrize(
    "argv", [["--host-id", "h1", "--log-level", "loud"], ["--no-such-flag"], ["stray"]]
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        load(argv)
    assert e.value.code == 2 and "error:" in capsys.readouterr().err


@pytest.mark.parametrize("program", [["plexus-agent"], ["plexus", "agent"]])
def test_a_bad_configuration_is_one_line_and_exit_2(program: list[str]) -> None:
    proc = run_clean([str(BIN / program[0]), *program[1:], "--host-id", "Not An Id"])
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: bad configuration: host_id:"), proc.stderr


def test_plexus_agent_is_the_same_program() -> None:
    """``plexus agent`` hands its arguments to the same parser: the same help, the
    same refusals."""
    lean = run_clean([str(BIN / "plexus-agent"), "--help"])
    via_cli = run_clean([str(BIN / "plexus"), "agent", "--help"])
    assert lean.returncode == via_cli.returncode == 0
    assert "--allowed-uplink" in lean.stdout and "--config" in lean.stdout
    assert via_cli.stdout == lean.stdout.replace("plexus-agent", "plexus agent")
    bad = run_clean([str(BIN / "plexus"), "agent", "--no-such-flag"])
    assert bad.returncode == 2 and "unrecognized arguments: --no-such-flag" in bad.stderr
    module = run_clean([sys.executable, "-m", "agents", "--help"])
    assert module.returncode == 0 and module.stdout == lean.stdout


def loaded(tmp_path: Path, *argv: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    return modules_loaded(tmp_path, "agents", "plexus-agent", *argv)


def forbidden(modules: set[str]) -> set[str]:
    return {m for m in modules if any(m == n or m.startswith(f"{n}.") for n in NOT_IN_AGENT)}


def test_the_agent_process_loads_what_it_runs_only(tmp_path: Path) -> None:
    proc, modules = loaded(tmp_path, *NO_VTEP)
    # it got as far as the driver: the VTEP interface was looked up, and is not there
    assert proc.returncode == 1, proc.stderr
    assert "error: VTEP interface 'pxnoneXYZ0' does not exist" in proc.stderr
    assert {"agents.daemon", "agents.kernel.linux", "structlog", "pydantic"} <= modules
    assert "pyroute2.iproute.linux" in modules
    assert forbidden(modules) == set()


def test_the_check_sees_what_the_command_tree_loads(tmp_path: Path) -> None:
    """Not vacuous: the same agent started through ``plexus agent`` has loaded the
    command tree and rich (the price of that door; ``plexus-agent`` is the lean one)."""
    proc, modules = loaded(tmp_path, "--cli", "agent", *NO_VTEP)
    assert proc.returncode == 1, proc.stderr
    assert "agents.kernel.linux" in modules
    assert {"typer", "rich", "cli", "cli.app"} <= forbidden(modules)


LAZY = """
import sys
from agents.kernel import lazy
assert lazy.install() and not lazy.install()  # once
import pyroute2
from pyroute2 import AsyncIPRoute, IPRoute, netns
from pyroute2.netlink.exceptions import NetlinkError
assert pyroute2.NetlinkError is NetlinkError and netns.listnetns
assert "pyroute2.ndb" not in sys.modules and "sqlite3" not in sys.modules
print(pyroute2.NDB.__name__, pyroute2.__version__)  # any other name: the real __init__
assert "pyroute2.ndb" in sys.modules
"""


def test_pyroute2_without_its_init_still_has_every_name() -> None:
    """The driver's names come from their modules; a submodule imports alone; anything
    else asked of the package runs its real ``__init__`` then."""
    proc = run_clean([sys.executable, "-c", LAZY])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("NDB ")


def test_a_daemon_collects_garbage_at_its_thresholds(capsys: pytest.CaptureFixture[str]) -> None:
    """Both daemons start through ``daemon_main``, which sets the collector's thresholds
    (:data:`proto.settings.GC_THRESHOLDS`) before anything else, a refused
    configuration included."""
    import gc

    from proto.settings import GC_THRESHOLDS, daemon_main

    def refused() -> AgentSettings:
        raise ValueError("no")

    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)  # Python's default, whatever ran before in this process
    try:
        with pytest.raises(SystemExit) as e:
            daemon_main(refused, AgentSettings.broker_urls, "agents.daemon")
        assert e.value.code == 2 and gc.get_threshold() == GC_THRESHOLDS
    finally:
        gc.set_threshold(*before)
    assert capsys.readouterr().err == "error: bad configuration: no\n"
