"""The report's Markdown sections of issue 12 (backend/report/render_interventions.py): exit rules with mean
steps, accuracy and intervals, dynamics around backtracks, an intervention study, an intervention sweep; each
says what it rests on."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from backend.intervention_tables import report_sections
from backend.report.render_interventions import interventions_markdown
from helpers_trace import one_hot_path

REPO = Path(__file__).resolve().parents[2]
STUDY = REPO / "data" / "results" / "cups-mini" / "_interventions.json"


def rows() -> pd.DataFrame:
    paths = {"settle": [1, 0, 0, 0, 0, 0], "late": [1, 1, 1, 0, 0, 0], "back": [2, 2, 2, 1, 1, 1]}
    out = []
    for i, (item, kind, correct) in enumerate([("a", "settle", 0), ("a", "late", 0), ("b", "back", 1),
                                               ("b", "settle", 0), ("c", "late", None)]):
        p = one_hot_path(paths[kind])
        out.append({"item_id": item, "variant": "nca" if correct is None else "base", "permutation": i, "seed": 0,
                    "steps": 6, "belief": [list(x) for x in p], "correct": correct, "exit_prob": None})
    return pd.DataFrame(out)


def test_sections_state_their_basis_and_numbers():
    df = rows()
    hidden = np.cumsum(np.random.default_rng(0).normal(size=(len(df), 6, 8)), axis=1)
    study = json.loads(STUDY.read_text())
    sec = report_sections(df, hidden, study, n_boot=50)
    md = interventions_markdown({"meta": {"seeds": 1, "steps": 6}, **sec})
    assert "## Exit rules" in md and "## Latent dynamics around backtracks" in md
    assert "## Interventions: point of no return and the backtrack splice" in md
    assert "base 4 instances (2 items), nca 1 instances (1 items)" in md  # what the table rests on
    assert "1 initial-state seed(s) per instance, runs of 6 steps" in md
    assert "bootstrap over items (50 replicates)" in md
    last = next(r for r in sec["exit_rules"] if r["variant"] == "base" and r["rule"] == "last")
    line = next(ln for ln in md.splitlines() if ln.startswith("| last |"))
    assert f"| 6.00 [6.00, 6.00] | {100 * last['accuracy']:.1f}% [" in line and "| 4 (2) |" in line
    # the study's point-of-no-return table: its n and its sigmas
    p = study["parameters"]
    assert f"one initial-state seed per instance" in md and f"{p['steps']} steps" in md
    n_base = next(r["n"] for r in study["ponr"] if r["variant"] == "base" and r["group"] == "all")
    assert any(ln.startswith(f"| base | 8 | {n_base} |") for ln in md.splitlines())
    assert "| base | last |" in md and "| base | all |" in md  # the splice table
    # every table row has as many cells as its header
    for block in md.split("\n\n"):
        lines = [ln for ln in block.splitlines() if ln.startswith("|")]
        if lines:
            assert len({ln.count("|") for ln in lines}) == 1, block


def test_without_states_or_gate_the_sections_say_so():
    df = rows()
    assert interventions_markdown({"meta": {}}) == ""
    sec = report_sections(df, n_boot=20)
    assert sec["exit_rules"] and "dynamics_around_backtracks" not in sec  # no states: no dynamics, no latent
    assert not any(r["rule"] == "latent" for r in sec["exit_rules"])
    md = interventions_markdown({"meta": {"seeds": 1}, **sec})
    assert "no latent states (so no `latent` rule)" in md and "no exit gate" in md
    assert "## Latent dynamics" not in md and "## Interventions" not in md and "## Intervention sweep" not in md


def test_to_markdown_ends_with_the_sections():
    """The report's Markdown (render.to_markdown) appends them after its own sections."""
    from backend.report import to_markdown

    rep = json.loads((REPO / "data" / "results" / "cups-mini" / "report.json").read_text())
    for k in ("exit_rules", "exit_rules_basis", "dynamics_around_backtracks", "interventions", "intervention_sweep"):
        rep.pop(k, None)
    plain = to_markdown(rep)
    assert "## Exit rules" not in plain
    sec = report_sections(rows(), n_boot=20)
    full = to_markdown({**rep, **sec})
    # to_markdown renders a copy whose strings are Markdown-escaped (render.md_escaped): so are these sections
    from backend.report.render import md_escaped

    assert full == plain + interventions_markdown(md_escaped({**rep, **sec})) and "## Exit rules" in full
