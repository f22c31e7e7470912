"""Settings of ``plexus-controller`` and ``plexus controller`` (flags > ``PLEXUS_*``
env > ``[controller]`` in TOML); each field is a flag (:mod:`controller.main`)."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from proto.mqtt import BrokerURL


class ControllerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PLEXUS_", extra="ignore")

    broker: str = Field("mqtt://127.0.0.1:1883", description="mqtt://HOST:PORT or mqtts://…")
    broker_credentials: Path | None = Field(
        None, description="the identity directory `plexus broker init` issued to the controller"
    )
    store: str = Field(
        "plexus.db",
        description="a SQLite file, or a PostgreSQL database shared by several controllers "
        "(postgresql://USER:PASSWORD@HOST:PORT/DB, or postgres://…)",
    )
    store_sync: Literal["normal", "full"] = Field(
        "normal", description="a SQLite store's synchronous mode: full also survives power loss"
    )
    listen: str = Field("127.0.0.1:8470", description="HOST:PORT of the REST API")
    snapshot_interval: float = Field(
        0.1, gt=0, le=60, description="seconds between two snapshots of one network"
    )
    api_auth: Literal["auto", "token", "none"] = Field(
        "auto",
        description="the admin bearer token on the REST API: auto requires it unless "
        "listening on loopback; a token sent is checked whatever this says, and a host "
        "token is always scoped to its host",
    )
    api_token_file: Path | None = Field(
        None,
        description="where the REST API's token is kept (made at first start, mode 0600, "
        "also with none: it signs the host tokens); default: beside the store",
    )
    replica: str = Field(
        "",
        description="this replica's name among the controllers of one PostgreSQL store "
        "(who leads shows it); default: HOSTNAME:PORT of the API",
    )
    change_log_retention: float = Field(
        300.0,
        ge=0,
        description="seconds of the PostgreSQL change log kept: the leader deletes what is "
        "older, never past what it has published; a replica further behind reloads",
    )
    lease_ttl: float = Field(
        1.2,
        ge=0.3,
        le=60.0,
        description="seconds a PostgreSQL store's leader lease lasts from each renewal: a "
        "leader lost is replaced about this long after; longer rides out slower database "
        "round trips",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="debug, info, warning or error"
    )
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto (console on a TTY, JSON otherwise), json or console"
    )

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
    def replica_name(self) -> str:
        return self.replica or f"{socket.gethostname()}:{self.listen_port}"

    @property
    def listen_host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def listen_port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @property
    def loopback_only(self) -> bool:
        host = self.listen_host
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False  # a name may resolve anywhere

    @property
    def token_required(self) -> bool:
        return self.api_auth == "token" or (self.api_auth == "auto" and not self.loopback_only)

    @property
    def store_name(self) -> str:
        """The store, fit for a log line: a database URL without its password."""
        if not self.store.startswith(("postgresql://", "postgres://")):
            return self.store
        scheme, _, rest = self.store.partition("://")
        user, at, host = rest.rpartition("@")
        return f"{scheme}://{user.partition(':')[0]}{at}{host}"

    @property
    def token_path(self) -> Path:
        """Default: beside a SQLite store; for a database, in the working directory
        (controllers sharing a database must share the token: set ``api_token_file``)."""
        if self.api_token_file is not None:
            return self.api_token_file
        if self.store.startswith(("postgresql://", "postgres://")):
            return Path.cwd() / "api-token"
        return Path(self.store).resolve().parent / "api-token"

    def broker_url(self) -> BrokerURL:
        """The broker with this daemon's credentials; ValueError names what is wrong."""
        return BrokerURL.parse(self.broker).with_credentials(self.broker_credentials)
