"""Settings of the agent (flags > ``PLEXUS_*`` env > ``[agent]`` in TOML), defined
once: each field is also a flag of ``plexus-agent`` and ``plexus agent``
(:mod:`agents.main` makes them from these fields; a field added here is a flag)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from proto.mqtt import BrokerURL
from proto.types import is_id


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PLEXUS_", extra="ignore")

    host_id: str = Field(description="this host's id")
    #: a list; a string (PLEXUS_BROKER, the TOML file) may name several, comma-separated
    broker: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["mqtt://127.0.0.1:1883"],
        description="mqtt://HOST:PORT or mqtts://… (repeatable: a root broker and its relays; "
        "the agent starts on a random one and moves to the next on failure)",
    )
    broker_credentials: Path | None = Field(
        None, description="the identity directory `plexus broker init` issued to this host"
    )
    allowed_uplinks: list[str] = Field(
        default_factory=list,
        description="a host link transparent networks may enslave here (repeatable); any "
        "other is refused",
    )
    vtep_address: str | None = Field(None, description="underlay address for VXLAN")
    vtep_interface: str | None = Field(None, description="take the VTEP from this link")
    resync_interval: float = Field(default=30.0, gt=0, description="seconds between full passes")
    broker_return_interval: float = Field(
        default=30.0,
        ge=0,
        description="with several brokers: seconds between probes of the first one while on"
        " another (back once it answers; 0: stay)",
    )
    verify_view: bool = Field(
        False,
        description="after every pass on the driver's view of the kernel, compare it with a "
        "full read and log view_diverged (for tests; costs a full read per pass)",
    )
    metrics_port: int | None = Field(
        default=None, ge=1, le=65535, description="serve Prometheus metrics on this port"
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="debug, info, warning or error"
    )
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto (console on a TTY, JSON otherwise), json or console"
    )

    @field_validator("host_id")
    @classmethod
    def _host(cls, v: str) -> str:
        if not is_id(v):
            raise ValueError(f"host id {v!r} must match [a-z0-9][a-z0-9._-]{{0,62}}")
        return v

    @field_validator("broker", mode="before")
    @classmethod
    def _brokers(cls, v: Any) -> Any:
        """A string is one URL, several comma-separated, or a JSON list; so is each
        item of a list (``--broker A,B`` is ``--broker A --broker B``)."""
        if isinstance(v, str):
            v = json.loads(v) if v.lstrip().startswith("[") else [v]
        if isinstance(v, list):
            v = [p.strip() if isinstance(p, str) else p for u in v for p in _split(u)]
            v = [u for u in v if u != ""]
        return v

    @field_validator("broker")
    @classmethod
    def _broker(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("at least one broker URL")
        for url in v:
            BrokerURL.parse(url)
        return v

    @field_validator("allowed_uplinks")
    @classmethod
    def _uplinks(cls, v: list[str]) -> list[str]:
        for name in v:
            if not 0 < len(name) <= 15 or "/" in name or name.strip() != name:
                raise ValueError(f"{name!r} is not an interface name")
        return v

    def broker_urls(self) -> list[BrokerURL]:
        """The brokers with this daemon's credentials (a host has the same credentials
        on the root broker and on its relays); ValueError names what is wrong."""
        return [BrokerURL.parse(u).with_credentials(self.broker_credentials) for u in self.broker]


def _split(item: object) -> list[object]:
    return list(item.split(",")) if isinstance(item, str) else [item]
