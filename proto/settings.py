"""Settings from, in order of precedence: the command line, ``PLEXUS_*`` environment
variables, a TOML config file (its ``[controller]`` or ``[agent]`` table), defaults.

A daemon's command line is made from its settings' fields (:func:`command_line`:
``host_id`` → ``--host-id``, help from the field's description) plus ``--config``, so a
field added is a flag, and its entry point and ``plexus`` share one definition.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

from pydantic import ValidationError
from pydantic_settings import BaseSettings, InitSettingsSource, PydanticBaseSettingsSource

from .errors import PlexusError

S = TypeVar("S", bound=BaseSettings)

#: the cyclic garbage collector's thresholds in a daemon's process (Python's default:
#: 700, 10, 10). A daemon holds tens of thousands of long-lived rows and entries, none
#: of them in a cycle; with the default, collections scanning them took a large share
#: of an agent's cold start (compare ``benchmarks.agent_pass`` with ``--gc-default``).
#: The young generation is collected every 50,000 allocations; garbage that is no
#: cycle is freed at once whatever the setting.
GC_THRESHOLDS = (50_000, 20, 20)


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


def command_line(
    cls: type[BaseSettings],
    section: str,
    prog: str,
    description: str,
    flags: Mapping[str, str] = {},
) -> argparse.ArgumentParser:
    """A flag per field of ``cls`` (``flags`` names those that differ from their
    field's name: a list field's flag names one item), and ``--config`` (a TOML file,
    its ``[section]`` table)."""
    ap = argparse.ArgumentParser(prog=prog, description=description)
    for name, field in cls.model_fields.items():
        flag = flags.get(name, "--" + name.replace("_", "-"))
        text = field.description or ""
        tp = field.annotation
        if tp is bool:
            ap.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, help=text)
            continue
        metavar = flag[2:].upper().replace("-", "_")
        if get_origin(tp) is list:
            ap.add_argument(flag, dest=name, action="append", metavar=metavar, help=text)
            continue
        if field.default is not None and not field.is_required():
            text = f"{text} (default: {field.default})".lstrip()
        choices = get_args(tp) if get_origin(tp) is Literal else None
        ap.add_argument(flag, dest=name, choices=choices, metavar=metavar, help=text)
    ap.add_argument(
        "--config",
        type=Path,
        default=os.environ.get("PLEXUS_CONFIG") or None,
        help=f"TOML file ([{section}] table); also PLEXUS_CONFIG",
    )
    return ap


def from_command_line(
    cls: type[S],
    section: str,
    argv: Sequence[str] | None,
    prog: str,
    description: str,
    flags: Mapping[str, str] = {},
) -> S:
    """The settings of a command line (flags > ``PLEXUS_*`` environment > ``--config``
    file > defaults). Raises ValueError (pydantic's ValidationError is one) naming what
    is wrong; a usage error exits 2 (argparse)."""
    given = vars(command_line(cls, section, prog, description, flags).parse_args(argv))
    config = given.pop("config")
    return load_settings(cls, section, config, **given)


def daemon_main(settings: Callable[[], S], check: Callable[[S], object], daemon: str) -> None:
    """A daemon's entry point: its ``settings()``, ``check``-ed (a ValueError: ``error:
    bad configuration: …``, exit 2), then the ``run`` of module ``daemon``, imported
    only then (a Plexus error: ``error: REASON``, exit 1); each error on one line, as
    ``plexus`` commands print theirs. The collector runs at :data:`GC_THRESHOLDS`."""
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        loaded = settings()
        check(loaded)
    except ValueError as e:
        print(f"error: bad configuration: {settings_error(e)}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        importlib.import_module(daemon).run(loaded)
    except PlexusError as e:  # e.g. the VTEP interface has no address, the store is bad
        print(f"error: {e.reason}", file=sys.stderr)
        raise SystemExit(1) from None
