"""The house rules, checked on the source tree (static analysis with ``ast``; nothing is imported).

- no import cycle among the project's modules (every import counts, top-level or late);
- no ``if __name__ == "__main__"`` block except ``backend/__main__.py``: one command-line entry point;
- ``backend/`` never imports streamlit; ``pages/`` and ``app.py`` never import torch;
- every subcommand is reachable from ``python -m backend --help``.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("backend", "pages")


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _project_files():
    files = [ROOT / "app.py", ROOT / "serve.py"]
    for pkg in PACKAGES:
        files += sorted((ROOT / pkg).rglob("*.py"))
    return files


def _imports(path: Path):
    """Absolute names of every module this file imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    mod = _module_name(path)
    is_pkg = path.name == "__init__.py"
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                prefix = ".".join(anchor + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names.append(prefix)
            names += [f"{prefix}.{a.name}" for a in node.names]  # `from pkg import submodule`
    return tree, names


def _graph():
    files = _project_files()
    known = {_module_name(f) for f in files}
    g = nx.DiGraph()
    for f in files:
        src = _module_name(f)
        g.add_node(src)
        _, names = _imports(f)
        for n in names:
            # the deepest known module the name refers to
            parts = n.split(".")
            while parts and ".".join(parts) not in known:
                parts.pop()
            dst = ".".join(parts)
            if dst and dst != src and not src.startswith(dst + "."):  # a package's own __init__ is not a cycle
                g.add_edge(src, dst)
    return g


def test_no_import_cycles():
    cycles = list(nx.simple_cycles(_graph()))
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c + [c[0]]) for c in cycles[:10])


def test_one_command_line_entry_point():
    offenders = []
    for f in _project_files():
        if f == ROOT / "backend" / "__main__.py":
            continue
        tree = ast.parse(f.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
                offenders.append(str(f.relative_to(ROOT)))
    assert not offenders, f"__main__ blocks outside backend/__main__.py: {offenders}"


@pytest.mark.parametrize("where,forbidden", [("backend", "streamlit"), ("pages", "torch"), ("app.py", "torch"),
                                             ("serve.py", "torch")])
def test_layer_boundaries(where, forbidden):
    files = [ROOT / where] if where.endswith(".py") else sorted((ROOT / where).rglob("*.py"))
    bad = []
    for f in files:
        _, names = _imports(f)
        if any(n == forbidden or n.startswith(forbidden + ".") for n in names):
            bad.append(str(f.relative_to(ROOT)))
    assert not bad, f"{where} must not import {forbidden}: {bad}"


def test_help_lists_every_subcommand():
    out = subprocess.run([sys.executable, "-m", "backend", "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    from backend.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name in sub.choices:
        assert name in out.stdout
    for expected in ("trace", "validate", "similarity", "sweep", "report"):
        assert expected in sub.choices
