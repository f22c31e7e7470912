"""The package layout's rules (README, "Code layout"), checked on the source: every
import statement of every module, at any depth (lazy imports in functions count)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("proto", "controller", "agents", "broker", "cli", "lab", "cni", "dockerplugin")

#: what each package may import of the others (anything else of Plexus is refused)
ALLOWED: dict[str, set[str]] = {
    "proto": set(),  # the contract stands alone
    "controller": {"proto"},
    "agents": {"proto"},
    "broker": {"proto"},
    # the lab builds its underlay with the agent's namespace primitive, starts the broker
    # it configures with the broker package, and asks its controller how it is with the
    # one REST client (and its errors) rather than a second one of its own
    "lab": {"proto", "broker", "agents.kernel.netns", "cli.client", "cli.errors"},
    "cli": set(PACKAGES),  # the command tree: it launches every daemon
    # the CNI plugin starts per container on the standard library: none of Plexus's
    # packages (each pulls pydantic or more); it speaks the REST contract over the wire
    "cni": set(),
    # the Docker plugin speaks the same REST contract with the CNI plugin's client (one
    # standard-library client, not a second one): those modules of cni and no others
    "dockerplugin": {"cni.api", "cni.wire", "cni.errors", "cni.config"},
}


def _imports(path: Path, root: Path = ROOT) -> list[tuple[int, tuple[str, ...]]]:
    """What ``path`` imports: per imported name, its line and the modules it may be
    (``from proto import names`` is the module ``proto.names`` or a name of ``proto``),
    most specific first; relative imports resolved."""
    package = path.relative_to(root).with_suffix("").parts[:-1]
    out: list[tuple[int, tuple[str, ...]]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, (a.name,)) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = ".".join(package[: len(package) - node.level + 1])
                base = ".".join(p for p in (parent, node.module) if p)
            out.extend((node.lineno, (f"{base}.{a.name}", base)) for a in node.names)
    return out


def _allowed(module: str, rules: set[str]) -> bool:
    return any(module == r or module.startswith(f"{r}.") for r in rules)


def violations(root: Path = ROOT) -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            for line, names in _imports(path, root):
                top = names[-1].split(".")[0]
                if top not in PACKAGES or top == package:
                    continue
                if not any(_allowed(n, ALLOWED[package]) for n in names):
                    where = path.relative_to(root)
                    found.append(f"{where}:{line}: {package} imports {names[0]}")
    return found


def test_each_package_imports_only_what_the_layout_allows() -> None:
    assert violations() == []


def test_the_check_sees_forbidden_imports(tmp_path: Path) -> None:
    """The walk is not vacuous: a lazy import inside a function, a relative import
    climbing out of its package, and a module imported by ``from package import``."""
    for package in PACKAGES:
        (tmp_path / package).mkdir()
    (tmp_path / "controller" / "lazy.py").write_text(
        "def f():\n    from agents import agent\n    return agent\n"
    )
    (tmp_path / "proto" / "up.py").write_text("from ..controller import state\n")
    (tmp_path / "lab" / "ok.py").write_text("from agents.kernel import netns\n")
    (tmp_path / "lab" / "bad.py").write_text("from agents.kernel import linux\n")
    found = violations(tmp_path)
    assert len(found) == 3, found
    assert "controller/lazy.py:2: controller imports agents.agent" in found
    assert "proto/up.py:1: proto imports controller.state" in found
    assert "lab/bad.py:1: lab imports agents.kernel.linux" in found


#: the size a module may reach before it is split along its seams (the redesign's rule)
MAX_LINES = 400


def test_no_module_of_the_packages_is_over_the_size_limit() -> None:
    big = [
        f"{path.relative_to(ROOT)}: {n} lines"
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    ]
    assert big == []
