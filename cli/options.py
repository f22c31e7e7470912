"""The options the commands share, and the controller client they make with them.

``--controller``, ``-o``, ``--token`` and ``--token-file`` are taken both on the root
(``plexus -o json status``) and on each command (``plexus status -o json``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from proto.types import ID_PATTERN, is_id

from .client import Client
from .console import Output
from .errors import CliError

#: the common options' values for the command being run (see ``_common``)
_common: dict[str, Any] = {}


def _common_option(ctx: typer.Context, param: typer.CallbackParam, value: Any) -> Any:
    """``--controller``, ``-o``, ``--token`` and ``--token-file`` are taken both before the
    command (``plexus -o json status``) and after it (``plexus status -o json``); given
    after it, they win. The root parses first and always records its value (from the
    command line, the environment or the default); a command's own overrides it only
    when it was typed."""
    name = param.name or ""
    source = ctx.get_parameter_source(name)
    if ctx.parent is None or (source is not None and source.name == "COMMANDLINE"):
        _common[name] = value
    return _common.get(name, value)


ControllerOpt = Annotated[
    str,
    typer.Option(
        "--controller", envvar="PLEXUS_CONTROLLER", help="controller URL", callback=_common_option
    ),
]
OutputOpt = Annotated[
    Output, typer.Option("--output", "-o", help="table, wide or json", callback=_common_option)
]
# The token options parse on every command that calls the API; their value is read by
# token(), not by the command (hence expose_value=False).
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="PLEXUS_TOKEN",
        help="the controller's REST API bearer token",
        callback=_common_option,
        expose_value=False,
    ),
]
TokenFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--token-file",
        envvar="PLEXUS_TOKEN_FILE",
        help="a file holding that token",
        callback=_common_option,
        expose_value=False,
    ),
]
WaitOpt = Annotated[bool, typer.Option("--wait", help="return once every affected host applied")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", help="seconds to wait with --wait")]
ForceOpt = Annotated[bool, typer.Option("--force", help="also delete what depends on it")]
DEFAULT_CONTROLLER = "http://127.0.0.1:8470"


def token() -> str | None:
    """The REST API's bearer token: ``--token`` (or PLEXUS_TOKEN), else the content of
    ``--token-file`` (or PLEXUS_TOKEN_FILE), else none."""
    value: str | None = _common.get("token")
    path = _common.get("token_file")
    if not value and path is not None:
        try:
            value = path.read_text().strip()
        except OSError as e:
            raise CliError(f"cannot read the token file {path}: {e.strerror}", code=2) from None
    return value or None


def connect(controller: str) -> Client:
    """A client of the controller at ``controller`` with the command's token."""
    return Client(controller, token=token())


def waiting(wait: bool, timeout: float) -> float | None:
    """--wait and --timeout as the client's ``wait`` budget."""
    return timeout if wait else None


def ident(value: str) -> str:
    """An id to put in a URL path: ids are what the wire allows, so that ``?``, ``/`` or
    ``..`` never address another resource (``network show '?'`` listed every network)."""
    if not is_id(value):
        raise CliError(f"{value!r} is not an id: ids match {ID_PATTERN}")
    return value
