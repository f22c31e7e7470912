"""Settings of ``plexus controller`` (flags > ``PLEXUS_*`` env > ``[controller]`` in TOML)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from proto.broker import BrokerURL


class ControllerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PLEXUS_", extra="ignore")

    broker: str = "mqtt://127.0.0.1:1883"
    store: str = "plexus.db"
    store_sync: Literal["normal", "full"] = "normal"
    listen: str = "127.0.0.1:8470"
    snapshot_interval: float = Field(default=0.1, gt=0, le=60)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"

    @field_validator("broker")
    @classmethod
    def _broker(cls, v: str) -> str:
        BrokerURL.parse(v)
        return v

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"listen address {v!r} is not HOST:PORT")
        return v

    @property
    def listen_host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def listen_port(self) -> int:
        return int(self.listen.rpartition(":")[2])
