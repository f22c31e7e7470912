"""``plexus-agent`` (also ``python -m agents``, and ``plexus agent`` through the CLI):
the host agent's entry point.

Its flags are made from the fields of :class:`~agents.config.AgentSettings`
(``host_id`` → ``--host-id``, help from the field's description) plus ``--config``;
``plexus agent`` hands its arguments to :func:`main`, so both commands take the same
flags, read the same configuration file and run the same daemon.

The process loads what the agent runs and nothing else (:func:`lean`): neither the
``plexus`` command tree (typer, rich, httpx), nor FastAPI, nor the parts of pyroute2 the
driver does not use. ``tests/unit/test_agent_main.py`` holds it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from proto.errors import PlexusError
from proto.settings import command_line, from_command_line, settings_error

from .config import AgentSettings

#: flags that differ from their field's name: a list field's flag names one item
FLAGS = {"allowed_uplinks": "--allowed-uplink"}
DESCRIPTION = "Run the host agent daemon (programs this host's kernel)."


def parser(prog: str = "plexus-agent") -> argparse.ArgumentParser:
    """The command line: a flag per settings field (given ones override the
    environment and the file), and ``--config``."""
    return command_line(AgentSettings, "agent", prog, DESCRIPTION, FLAGS)


def load(argv: Sequence[str] | None = None, prog: str = "plexus-agent") -> AgentSettings:
    """The settings of a command line (:func:`proto.settings.from_command_line`)."""
    return from_command_line(AgentSettings, "agent", argv, prog, DESCRIPTION, FLAGS)


def lean() -> None:
    """Keep out of this process what the agent does not run, before anything imports
    it: rich, which structlog imports when it can (for pretty tracebacks on a console;
    the agent's console log does without), and pyroute2's package ``__init__``
    (:mod:`agents.kernel.lazy`). Through ``plexus agent`` rich is in already."""
    from .kernel import lazy

    sys.modules.setdefault("rich", None)  # type: ignore[arg-type]  # an import of it fails
    lazy.install()


def main(argv: Sequence[str] | None = None, prog: str = "plexus-agent") -> None:
    """Run the agent; a bad configuration exits 2, any other Plexus error 1, each with
    its one line (as ``plexus`` commands do)."""
    lean()
    try:
        settings = load(argv, prog)
        settings.broker_urls()  # its credentials are readable
    except ValueError as e:
        print(f"error: bad configuration: {settings_error(e)}", file=sys.stderr)
        raise SystemExit(2) from None
    from .daemon import run

    try:
        run(settings)
    except PlexusError as e:  # e.g. the VTEP interface has no address: one line
        print(f"error: {e.reason}", file=sys.stderr)
        raise SystemExit(1) from None
