"""The README's examples run as written on the shipped default model (a user copies them first)."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_python_api_example_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert blocks, "the README has no Python example"
    exec(compile(blocks[0], "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "(30, 4)" in out and "[1, 30," in out


def test_first_trace_command_runs():
    line = next(l for l in README.splitlines() if l.startswith("python -m backend trace --model"))
    args = shlex.split(line)[1:]
    r = subprocess.run([sys.executable, *args, "--seed", "0"], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert "final answer: C) c5 (correct)" in r.stdout
