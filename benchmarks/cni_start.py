"""The CNI plugin's start, process start to exit, as a runtime pays it per container:
``python -m benchmarks.cni_start [RUNS | --quick]``. VERSION (the plugin's own imports) and an ADD
to a closed port (every import of the ADD path, no network wait), through the launcher
``plexus cni install`` writes (``-IS``) and through the ``plexus-cni`` console script,
beside the interpreter's own floor."""

from __future__ import annotations

import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def bench(argv: list[str], command: str, stdin: bytes, runs: int) -> tuple[float, str]:
    env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": "c",
        "CNI_NETNS": "/proc/self/ns/net",
        "CNI_IFNAME": "eth0",
        "PATH": "/usr/bin:/bin",
    }
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(argv, input=stdin, env=env, stdout=subprocess.DEVNULL, check=False)
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    median = statistics.median(times)
    return median, (
        f"median {median:5.1f} ms  p10 {times[runs // 10]:5.1f}  p90 {times[9 * runs // 10]:5.1f}"
    )


def main() -> None:
    arg = sys.argv[1] if len(sys.argv) > 1 else "40"
    runs = 3 if arg == "--quick" else int(arg)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    add = json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": "b",
            "network": "b",
            "host": "h1",
            "controller": f"http://127.0.0.1:{closed}",
        }
    ).encode()
    version = b'{"cniVersion": "1.0.0"}'
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                str(BIN / "plexus"),
                *("cni", "install", "--network", "b", "--host", "h1"),
                *("--dir", f"{tmp}/net.d", "--bin-dir", f"{tmp}/bin"),
            ],
            check=True,
            capture_output=True,
        )
        rows = [
            ("python -IS -c pass (floor)", [sys.executable, "-IS", "-c", "pass"], [("", b"")]),
            ("python -c pass (with site)", [sys.executable, "-c", "pass"], [("", b"")]),
        ]
        for name, argv in (
            ("launcher (-IS)", [f"{tmp}/bin/plexus"]),
            ("console script plexus-cni", [str(BIN / "plexus-cni")]),
        ):
            rows.append((name, argv, [("VERSION", version), ("ADD", add)]))
        out = []
        for name, argv, commands in rows:
            for command, stdin in commands:
                label = f"{name} {command}".strip()
                median, text = bench(argv, command or "VERSION", stdin, runs)
                print(f"{label:40s} {text}")
                out.append({"what": label, "value": f"{median:.1f} ms", "runs": runs})
    print("BENCH " + json.dumps({"benchmark": "cni_start", "rows": out}))


if __name__ == "__main__":
    main()
