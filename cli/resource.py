"""The ``show`` and ``delete`` commands every resource group has, made once: they differ
only in the path, the columns, whether ``--force`` and ``--wait`` apply, and the help."""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import typer

from .console import Output, converged, show
from .options import (
    DEFAULT_CONTROLLER,
    ControllerOpt,
    ForceOpt,
    OutputOpt,
    TimeoutOpt,
    TokenFileOpt,
    TokenOpt,
    WaitOpt,
    connect,
    ident,
    waiting,
)


def add_show(
    app: typer.Typer,
    path: str,
    help: str,
    columns: Sequence[str],
    optional: Sequence[str] = (),
) -> None:
    """``show NAME``: GET ``path/NAME`` as a table of ``columns``."""

    def show_one(
        name: str,
        controller: ControllerOpt = DEFAULT_CONTROLLER,
        token: TokenOpt = None,
        token_file: TokenFileOpt = None,
        output: OutputOpt = Output.table,
    ) -> None:
        with connect(controller) as api:
            data = api.get(f"{path}/{ident(name)}")
        show(data, output, list(columns), optional=tuple(optional))

    show_one.__doc__ = help
    app.command("show")(show_one)


def add_delete(
    app: typer.Typer,
    path: str,
    help: str,
    *,
    force: bool,
    wait: bool,
    command: str = "delete",
) -> None:
    """``delete NAME``: DELETE ``path/NAME``; ``--force`` and ``--wait`` where the
    resource takes them (their options are left out of the command otherwise)."""

    def delete(
        name: str,
        force: ForceOpt = False,
        wait: WaitOpt = False,
        timeout: TimeoutOpt = 10.0,
        controller: ControllerOpt = DEFAULT_CONTROLLER,
        token: TokenOpt = None,
        token_file: TokenFileOpt = None,
        output: OutputOpt = Output.table,
    ) -> None:
        params = {"force": force} if force else None
        with connect(controller) as api:
            data = api.request(
                "DELETE", f"{path}/{ident(name)}", params=params, wait=waiting(wait, timeout)
            )
        show(data, output, ["id", "deleted"])
        converged(data, output)

    left_out = ({"force"} if not force else set()) | ({"wait", "timeout"} if not wait else set())
    sig = inspect.signature(delete, eval_str=True)
    params = [p for p in sig.parameters.values() if p.name not in left_out]
    delete.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    delete.__doc__ = help
    app.command(command)(delete)
