"""Settings of ``plexus agent`` (flags > ``PLEXUS_*`` env > ``[agent]`` in TOML)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from proto.mqtt import BrokerURL
from proto.types import is_id


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PLEXUS_", extra="ignore")

    host_id: str
    broker: str = "mqtt://127.0.0.1:1883"
    #: the identity directory ``plexus broker init`` issued to this host
    broker_credentials: Path | None = None
    #: host links a transparent network may enslave here; any other is refused
    allowed_uplinks: list[str] = Field(default_factory=list)
    vtep_address: str | None = None
    vtep_interface: str | None = None
    resync_interval: float = Field(default=30.0, gt=0)
    #: after every pass on the driver's view of the kernel, compare it with a full read
    #: and log ``view_diverged`` (for tests; costs a full read per pass)
    verify_view: bool = False
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"

    @field_validator("host_id")
    @classmethod
    def _host(cls, v: str) -> str:
        if not is_id(v):
            raise ValueError(f"host id {v!r} must match [a-z0-9][a-z0-9._-]{{0,62}}")
        return v

    @field_validator("broker")
    @classmethod
    def _broker(cls, v: str) -> str:
        BrokerURL.parse(v)
        return v

    @field_validator("allowed_uplinks")
    @classmethod
    def _uplinks(cls, v: list[str]) -> list[str]:
        for name in v:
            if not 0 < len(name) <= 15 or "/" in name or name.strip() != name:
                raise ValueError(f"{name!r} is not an interface name")
        return v

    def broker_url(self) -> BrokerURL:
        """The broker with this daemon's credentials; ValueError names what is wrong."""
        return BrokerURL.parse(self.broker).with_credentials(self.broker_credentials)
