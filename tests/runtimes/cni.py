"""The CNI side of runtime tests: a config directory and a plugin directory of the
test's own (never ``/etc/cni/net.d`` or ``/opt/cni/bin``), and a spy that logs every
call a runtime makes to a plugin (environment, stdin, stdout, exit code)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

#: Debian's reference plugins (containernetworking-plugins)
REFERENCE = Path("/usr/lib/cni")

_SPY = """#!{python}
# logs one JSON line per call to {log}, then runs {target} with the same input
import json, os, subprocess, sys
data = sys.stdin.buffer.read()
r = subprocess.run([{target!r}], input=data, capture_output=True)
call = {{
    "env": {{k: v for k, v in os.environ.items() if k.startswith("CNI_")}},
    "stdin": data.decode(errors="replace"),
    "stdout": r.stdout.decode(errors="replace"),
    "rc": r.returncode,
    "mntns": os.readlink("/proc/self/ns/mnt"),
}}
with open({log!r}, "a") as f:
    f.write(json.dumps(call) + "\\n")
sys.stdout.buffer.write(r.stdout)
sys.stderr.buffer.write(r.stderr)
sys.exit(r.returncode)
"""


class Cni:
    """``conf_dir`` holds one ``NAME.conflist`` per network; ``bin_dir`` links Debian's
    reference plugins and whatever a test adds (``plugin``). ``only(NAME)`` is a
    directory holding that one network (ctr uses the first conflist it finds)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.conf_dir = workdir / "cni-conf"
        self.bin_dir = workdir / "cni-bin"
        self.data_dir = workdir / "cni-ipam"  # host-local's leases
        self.calls_log = workdir / "cni-calls.jsonl"
        for d in (self.conf_dir, self.bin_dir, self.data_dir):
            d.mkdir(parents=True, exist_ok=True)
        for p in sorted(REFERENCE.iterdir()) if REFERENCE.is_dir() else []:
            (self.bin_dir / p.name).symlink_to(p)
        self.networks: list[str] = []

    def plugin(self, name: str, executable: Path) -> Path:
        """Makes ``executable`` the plugin of type ``name`` (replacing one of that name)."""
        path = self.bin_dir / name
        path.unlink(missing_ok=True)
        path.symlink_to(executable.resolve())
        return path

    def spy(self, name: str, target: Path | None = None) -> str:
        """A plugin type ``spy-NAME`` that runs ``target`` (default: plugin ``name`` of
        this directory) and logs each call; read them with ``calls()``."""
        real = str(target or (self.bin_dir / name).resolve())
        path = self.bin_dir / f"spy-{name}"
        path.write_text(_SPY.format(python=sys.executable, log=str(self.calls_log), target=real))
        path.chmod(0o755)
        return path.name

    def calls(self, command: str | None = None) -> list[dict[str, Any]]:
        """Every call the spies logged (``command``: only ADD, DEL, ...), oldest first;
        ``config`` is the parsed stdin."""
        if not self.calls_log.exists():
            return []
        out = []
        for line in self.calls_log.read_text().splitlines():
            call = json.loads(line)
            call["config"] = json.loads(call["stdin"]) if call["stdin"].strip() else None
            if command is None or call["env"].get("CNI_COMMAND") == command:
                out.append(call)
        return out

    def network(self, name: str, plugins: list[dict[str, Any]], version: str = "1.0.0") -> Path:
        """Writes the conflist of network ``name``."""
        path = self.conf_dir / f"{name}.conflist"
        conf = {"cniVersion": version, "name": name, "plugins": plugins}
        path.write_text(json.dumps(conf, indent=2))
        self.networks.append(name)
        return path

    def bridge_network(
        self,
        name: str,
        bridge: str,
        subnet: str,
        *,
        plugin: str = "bridge",
        dns: dict[str, Any] | None = None,
        capabilities: dict[str, bool] | None = None,
    ) -> Path:
        """A network of the reference ``bridge`` plugin (or a spy of it) with host-local
        addresses of ``subnet``, its containers on one segment: no gateway (with
        ``isGateway`` the plugin turns on forwarding in the namespace it runs in, the
        machine's own), no masquerading: nothing is routed, nothing leaves the machine."""
        conf: dict[str, Any] = {
            "type": plugin,
            "bridge": bridge,
            "isGateway": False,
            "ipMasq": False,
            "ipam": {
                "type": "host-local",
                "dataDir": str(self.data_dir),
                "ranges": [[{"subnet": subnet}]],
            },
        }
        if dns is not None:
            conf["dns"] = dns
        if capabilities is not None:
            conf["capabilities"] = capabilities
        return self.network(name, [conf])

    def only(self, name: str) -> Path:
        """A config directory holding network ``name`` alone."""
        d = self.workdir / "cni-only" / name
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.conf_dir / f"{name}.conflist", d / f"{name}.conflist")
        return d
