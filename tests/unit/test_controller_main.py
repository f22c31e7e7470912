"""``plexus-controller`` (:mod:`controller.main`): its flags are the settings' fields,
``plexus controller`` is the same program, and the controller's process loads neither
the command tree nor rich (a real controller process, run until it stops on an API
token it cannot make: past its settings, logging and the daemon's imports)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from controller.config import ControllerSettings
from controller.main import load, parser
from tests.support import modules_loaded, run_clean

BIN = Path(sys.executable).parent
#: what the controller's process must not load: the command tree and rich (structlog
#: imports it when it can) with its pygments; the agent's packages (click is uvicorn's)
NOT_IN_CONTROLLER = ("typer", "rich", "pygments", "cli", "agents", "pyroute2")


def test_every_setting_is_a_flag() -> None:
    ap = parser()
    dests = {a.dest for a in ap._actions if a.dest != "help"}
    assert dests == {*ControllerSettings.model_fields, "config"}
    flags = {s for a in ap._actions for s in a.option_strings}
    assert {"--broker", "--store", "--listen", "--api-token-file", "--lease-ttl"} <= flags


def test_flags_over_environment_over_file_over_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "plexus.toml"
    cfg.write_text('[controller]\nstore = "/var/x.db"\nlisten = "0.0.0.0:1"\nlease_ttl = 5\n')
    monkeypatch.setenv("PLEXUS_LISTEN", "127.0.0.1:2")
    s = load(["--config", str(cfg), "--lease-ttl", "2", "--store-sync", "full"])
    assert (s.store, s.listen, s.lease_ttl, s.store_sync) == (
        "/var/x.db",
        "127.0.0.1:2",
        2.0,
        "full",
    )
    assert s.broker == "mqtt://127.0.0.1:1883" and s.broker_credentials is None


@pytest.mark.parametrize(
    "argv",
    [["--listen", "nowhere"], ["--broker", "http://h"], ["--snapshot-interval", "0"]],
)
def test_bad_settings_are_refused(argv: list[str]) -> None:
    with pytest.raises(ValidationError):
        load(argv)


@pytest.mark.parametrize("argv", [["--api-auth", "maybe"], ["--no-such-flag"], ["stray"]])
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        load(argv)
    assert e.value.code == 2 and "error:" in capsys.readouterr().err


@pytest.mark.parametrize("program", [["plexus-controller"], ["plexus", "controller"]])
def test_a_bad_configuration_is_one_line_and_exit_2(program: list[str]) -> None:
    proc = run_clean([str(BIN / program[0]), *program[1:], "--listen", "nowhere"])
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: bad configuration: listen:"), proc.stderr


def test_plexus_controller_is_the_same_program() -> None:
    lean = run_clean([str(BIN / "plexus-controller"), "--help"])
    via_cli = run_clean([str(BIN / "plexus"), "controller", "--help"])
    assert lean.returncode == via_cli.returncode == 0
    assert "--api-token-file" in lean.stdout and "[controller] table" in lean.stdout
    assert via_cli.stdout == lean.stdout.replace("plexus-controller", "plexus controller")
    module = run_clean([sys.executable, "-m", "controller", "--help"])
    assert module.returncode == 0 and module.stdout == lean.stdout


@pytest.mark.parametrize("cli", [False, True])
def test_the_controller_process_loads_what_it_runs_only(tmp_path: Path, cli: bool) -> None:
    """Stopped where it makes its API token (in a directory that cannot be): its
    settings, logging and the daemon's imports are behind it. Through ``plexus
    controller`` the same check sees the command tree (it is not vacuous)."""
    token = ["--api-token-file", "/proc/no/such/dir/api-token", "--log-format", "json"]
    argv = ["--cli", "controller", *token] if cli else token
    proc, modules = modules_loaded(tmp_path, "controller", "plexus-controller", *argv)
    assert proc.returncode == 2, proc.stderr
    assert json.loads(proc.stderr.splitlines()[-1])["event"] == "api_token_unusable"
    assert {"controller.daemon", "controller.api", "fastapi", "uvicorn"} <= modules
    forbidden = {m.partition(".")[0] for m in modules} & set(NOT_IN_CONTROLLER)
    assert forbidden == ({"typer", "rich", "pygments", "cli"} if cli else set())
