"""``plexus cni install | uninstall``: put ``plexus-cni`` where a CNI runtime finds it.

``install`` writes a network configuration list (``NAME.conflist``, cniVersion 1.0.0, the
newest podman 4.3's libcni reads) whose one plugin is ``type: plexus``, and a launcher
named ``plexus`` in the runtime's plugin directory. The launcher runs this Python with
``-IS`` (one word: Linux hands a shebang's options over as one argument, so ``-I -S``
would not start): isolated (no ``PYTHON*`` variables, no user site) and without the ``site``
module, which the plugin does not need on ADD and DEL (it starts on the standard
library; CHECK loads ``site`` itself for pyroute2), and which costs most of a start.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

import cni
from cni.config import DEFAULT_CONTROLLER, controller_address
from cni.errors import CniError

from .console import out
from .errors import CliError

cni_app = typer.Typer(
    help="The CNI plugin (plexus-cni) for container runtimes.", no_args_is_help=True
)

#: the plugin's ``type``, hence the launcher's file name
PLUGIN = "plexus"
#: a line of every launcher: uninstall removes only a file that has it
MARK = "# plexus-cni launcher (made by `plexus cni install`)"
DirOpt = Annotated[Path, typer.Option("--dir", help="the runtime's network configurations")]
BinDirOpt = Annotated[Path, typer.Option("--bin-dir", help="the runtime's CNI plugin directory")]
NameOpt = Annotated[
    str | None, typer.Option("--name", help="the CNI network's name (default: the network id)")
]


def launcher(python: str = sys.executable, root: Path | None = None) -> str:
    """The launcher's text: this interpreter, the repository (or site-packages) holding
    the ``cni`` package first on the path."""
    root = root or Path(cni.__file__).resolve().parents[1]
    return (
        f"#!{python} -IS\n{MARK}\nimport sys\n"
        f"sys.path.insert(0, {str(root)!r})\n"
        "from cni.main import main\n\nsys.exit(main())\n"
    )


def conflist(
    name: str,
    network: str,
    controller: str,
    token_file: Path | None = None,
    host: str | None = None,
) -> dict[str, Any]:
    plugin: dict[str, Any] = {"type": PLUGIN, "network": network, "controller": controller}
    if token_file is not None:
        plugin["tokenFile"] = str(token_file.resolve())
    if host is not None:
        plugin["host"] = host
    plugin["capabilities"] = {"ips": True, "mac": True, "portMappings": True}
    return {"cniVersion": "1.0.0", "name": name, "plugins": [plugin]}


def _write(path: Path, text: str, mode: int) -> None:
    """Atomically: a runtime may read the directory at any moment."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    os.replace(tmp, path)


@cni_app.command("install")
def install(
    network: Annotated[str, typer.Option("--network", help="the Plexus network to attach to")],
    conf_dir: DirOpt = Path("/etc/cni/net.d"),
    bin_dir: BinDirOpt = Path("/opt/cni/bin"),
    controller: Annotated[
        str, typer.Option("--controller", help="the controller's URL, as the plugin will use it")
    ] = DEFAULT_CONTROLLER,
    token_file: Annotated[
        Path | None, typer.Option("--token-file", help="a file holding the API token to send")
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(help="this host's id (default: [agent] host_id of the agent's file)"),
    ] = None,
    name: NameOpt = None,
) -> None:
    """Write NAME.conflist and the `plexus` plugin launcher."""
    try:
        controller_address(controller)
    except CniError as e:
        raise CliError(e.msg, code=2) from None
    name = name or network
    conf = conf_dir / f"{name}.conflist"
    try:
        _write(
            conf,
            json.dumps(conflist(name, network, controller, token_file, host), indent=2) + "\n",
            0o644,
        )
        _write(bin_dir / PLUGIN, launcher(), 0o755)
    except OSError as e:
        raise CliError(f"cannot install: {e}") from None
    out.print(f"wrote {conf} and {bin_dir / PLUGIN}")


def _uses_plugin(path: Path) -> bool:
    try:
        plugins = json.loads(path.read_text()).get("plugins") or []
    except (OSError, ValueError, AttributeError):
        return False
    return any(isinstance(p, dict) and p.get("type") == PLUGIN for p in plugins)


@cni_app.command("uninstall")
def uninstall(
    name: Annotated[str, typer.Option("--name", help="the CNI network's name")],
    conf_dir: DirOpt = Path("/etc/cni/net.d"),
    bin_dir: BinDirOpt = Path("/opt/cni/bin"),
) -> None:
    """Remove NAME.conflist, and the launcher once no configuration uses it (idempotent)."""
    conf = conf_dir / f"{name}.conflist"
    conf.unlink(missing_ok=True)
    users = [p for p in conf_dir.glob("*.conflist") if _uses_plugin(p)]
    exe = bin_dir / PLUGIN
    if not users and exe.exists() and MARK in exe.read_text(errors="replace"):
        exe.unlink()
        out.print(f"removed {conf} and {exe}")
    else:
        out.print(f"removed {conf}")
