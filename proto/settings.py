"""Settings from, in order of precedence: the command line, ``PLEXUS_*`` environment
variables, a TOML config file (its ``[controller]`` or ``[agent]`` table), defaults."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings, InitSettingsSource, PydanticBaseSettingsSource

S = TypeVar("S", bound=BaseSettings)


def load_settings(cls: type[S], section: str, config: Path | None, **overrides: Any) -> S:
    file_values: dict[str, Any] = {}
    if config is not None:
        try:
            data = tomllib.loads(config.read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ValueError(f"cannot read config file {config}: {e}") from None
        file_values = dict(data.get(section, {}))

    class Loaded(cls):  # type: ignore[valid-type,misc]
        @classmethod
        def settings_customise_sources(
            cls_,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (
                init_settings,
                env_settings,
                InitSettingsSource(settings_cls, init_kwargs=file_values),
            )

    Loaded.__name__ = cls.__name__
    return Loaded(**{k: v for k, v in overrides.items() if v is not None})


def settings_error(e: ValueError) -> str:
    """A settings error on one line (pydantic's spans several)."""
    if isinstance(e, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in e.errors()
        )
    return str(e)
