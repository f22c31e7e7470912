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

from proto.settings import command_line, daemon_main, from_command_line

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
    """Run the agent (:func:`proto.settings.daemon_main`: a bad configuration, its
    broker credentials unreadable included, exits 2, any other Plexus error 1)."""
    lean()
    daemon_main(lambda: load(argv, prog), AgentSettings.broker_urls, "agents.daemon")
