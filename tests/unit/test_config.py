from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from controller.config import ControllerSettings
from proto.mqtt import BrokerURL
from proto.settings import load_settings


def test_precedence_flags_env_file_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "plexus.toml"
    cfg.write_text(
        '[controller]\nbroker = "mqtt://file:1"\nstore = "file.db"\nlisten = "0.0.0.0:9000"\n'
    )
    monkeypatch.setenv("PLEXUS_STORE", "env.db")
    monkeypatch.setenv("PLEXUS_LISTEN", "127.0.0.1:9001")
    s = load_settings(ControllerSettings, "controller", cfg, listen="127.0.0.1:9002")
    assert (s.broker, s.store, s.listen) == ("mqtt://file:1", "env.db", "127.0.0.1:9002")
    assert (s.listen_host, s.listen_port) == ("127.0.0.1", 9002)
    assert load_settings(ControllerSettings, "controller", None).snapshot_interval == 0.1


@pytest.mark.parametrize(
    "field,value", [("listen", "nope"), ("broker", "http://x"), ("snapshot_interval", 0)]
)
def test_bad_settings_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        load_settings(ControllerSettings, "controller", None, **{field: value})


def test_unreadable_config_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[controller\n")
    with pytest.raises(ValueError, match="cannot read config file"):
        load_settings(ControllerSettings, "controller", bad)


def test_broker_urls() -> None:
    assert BrokerURL.parse("mqtt://u:p%40ss@h:1884") == BrokerURL("h", 1884, False, "u", "p@ss")
    assert BrokerURL.parse("mqtts://h").port == 8883
    assert BrokerURL.parse("h").port == 1883
    for bad in ("http://h", "mqtt://", "mqtt://h:99999"):
        with pytest.raises(ValueError):
            BrokerURL.parse(bad)
