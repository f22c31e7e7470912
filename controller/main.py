"""``plexus-controller`` (also ``python -m controller``, and ``plexus controller``
through the CLI): the controller's entry point.

Its flags are made from the fields of :class:`~controller.config.ControllerSettings`
(``api_token_file`` → ``--api-token-file``, help from the field's description) plus
``--config`` (:func:`proto.settings.command_line`, as the agent's); ``plexus
controller`` hands its arguments to :func:`main`, so both commands take the same flags,
read the same configuration file and run the same daemon.

The process loads what the controller runs: not the ``plexus`` command tree (typer,
rich and the commands' modules), nor rich, which structlog imports when it can (the
console log does without).
``tests/unit/test_controller_main.py`` holds it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from proto.settings import command_line, daemon_main, from_command_line

from .config import ControllerSettings

DESCRIPTION = "Run the controller daemon (REST API + MQTT publisher)."


def parser(prog: str = "plexus-controller") -> argparse.ArgumentParser:
    """The command line: a flag per settings field, and ``--config``."""
    return command_line(ControllerSettings, "controller", prog, DESCRIPTION)


def load(argv: Sequence[str] | None = None, prog: str = "plexus-controller") -> ControllerSettings:
    """The settings of a command line (:func:`proto.settings.from_command_line`)."""
    return from_command_line(ControllerSettings, "controller", argv, prog, DESCRIPTION)


def main(argv: Sequence[str] | None = None, prog: str = "plexus-controller") -> None:
    """Run the controller (:func:`proto.settings.daemon_main`: a bad configuration,
    its broker credentials unreadable included, exits 2, any other Plexus error 1)."""
    sys.modules.setdefault("rich", None)  # type: ignore[arg-type]  # an import of it fails
    daemon_main(lambda: load(argv, prog), ControllerSettings.broker_url, "controller.daemon")
