"""``plexus-cni``: the executable a runtime runs (``CNI_COMMAND`` and the rest in the
environment, the network configuration on stdin). A result goes to stdout with exit
status 0; any failure goes to stdout as the CNI error JSON with exit status 1, never as a
traceback (which goes to stderr, and only with ``PLEXUS_CNI_DEBUG`` set).
"""

from __future__ import annotations

import json
import os
import sys

from .config import SUPPORTED_VERSIONS, decode, parse_config, parse_env
from .errors import CniError

# typing is for the type checker only: importing it costs a start a few ms
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, BinaryIO, TextIO

#: a failure nobody foresaw (a bug): plugin-specific, with the exception's name and text
INTERNAL = 199
DEFAULT_VERSION = SUPPORTED_VERSIONS[-1]


def run(environ: Mapping[str, str], stdin: bytes) -> dict[str, Any] | None:
    """The command's output (None for the commands that print nothing)."""
    env = parse_env(environ)
    if env.command == "VERSION":
        version = decode(stdin).get("cniVersion") if stdin.strip() else None
        return {
            "cniVersion": version if version in SUPPORTED_VERSIONS else DEFAULT_VERSION,
            "supportedVersions": list(SUPPORTED_VERSIONS),
        }
    conf = parse_config(decode(stdin), env, environ)
    if env.command == "CHECK":
        from .check import check

        check(conf, env)
        return None
    from . import commands
    from .api import Controller, read_token

    api = Controller(conf.controller_host, conf.controller_port, read_token(conf.token_file))
    try:
        if env.command == "ADD":
            return commands.add(api, conf, env)
        if env.command == "DEL":
            commands.delete(api, conf, env)
        elif env.command == "STATUS":
            commands.status(api, conf)
        else:
            commands.gc(api, conf)
        return None
    finally:
        api.close()


def _version(stdin: bytes) -> str:
    """The version an error answers in: the configuration's, if it can be read."""
    try:
        version = json.loads(stdin).get("cniVersion")
    except Exception:
        return DEFAULT_VERSION
    return version if isinstance(version, str) and version else DEFAULT_VERSION


def main(
    environ: Mapping[str, str] | None = None,
    stdin: BinaryIO | None = None,
    stdout: TextIO | None = None,
) -> int:

    environ = os.environ if environ is None else environ
    stdout = sys.stdout if stdout is None else stdout
    data = b""
    try:
        data = (sys.stdin.buffer if stdin is None else stdin).read()
        out = run(environ, data)
    except BaseException as e:  # every failure, a bug's too, is the runtime's JSON
        if environ.get("PLEXUS_CNI_DEBUG"):
            import traceback

            traceback.print_exc(file=sys.stderr)
        if not isinstance(e, CniError):
            if isinstance(e, KeyboardInterrupt | SystemExit):
                e = CniError(INTERNAL, f"interrupted: {type(e).__name__}")
            else:
                e = CniError(INTERNAL, f"internal error: {type(e).__name__}: {e}")
        stdout.write(json.dumps(e.to_json(_version(data))) + "\n")
        stdout.flush()
        return 1
    if out is not None:
        stdout.write(json.dumps(out) + "\n")
        stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
