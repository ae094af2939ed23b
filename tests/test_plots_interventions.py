"""Figures of interventions, dynamics and exit rules (pure builders, synthetic data)."""
from __future__ import annotations

import numpy as np

from backend.dynamics import around_events, dynamics
from backend.interventions import Intervention, compare
from backend.plots_interventions import (change_summary, counterfactual_figure, dynamics_figure,
                                         event_profile_figure, exit_rule_figure, ponr_figure, with_stop_marks)
from backend.plots import belief_figure
from backend.stopping import exit_rule_table, stops
from helpers_trace import make_trace, one_hot_path


def _shapes(fig, name):
    return [s for s in fig.layout.shapes if s.name == name]


def test_counterfactual_figure_draws_both_runs_in_the_same_colours():
    base = make_trace(one_hot_path([0] * 4 + [1] * 6), correct=1)
    inter = make_trace(one_hot_path([0] * 4 + [2] * 3 + [1] * 3), correct=1)
    iv = Intervention("noise", 5, sigma=1.0)
    c = compare(inter.probs, base.probs, 5, 1)
    fig = counterfactual_figure(inter, base, iv, c)
    names = [t.name for t in fig.data]
    assert len(fig.data) == 8 and sum(n.endswith("(intervened)") for n in names) == 4
    for i in range(4):
        b, d = fig.data[2 * i], fig.data[2 * i + 1]
        assert b.line.color == d.line.color and d.line.dash == "dash" and b.line.dash is None
    np.testing.assert_allclose(fig.data[1].y, inter.probs[:, 0])
    assert _shapes(fig, "intervention")[0].x0 == 5 and _shapes(fig, "rejoin")[0].x0 == 8
    assert "rejoins the baseline's answer at step 8" in fig.layout.title.text
    flip = compare(one_hot_path([0] * 10), base.probs, 5, 1)
    assert change_summary(flip).startswith("final answer B -> A") and "lost backtrack A -> B" in change_summary(flip)


def test_dynamics_figure_marks_backtracks_in_every_row():
    s = np.array([[10.0 + t, 0.0] for t in range(1, 9)])
    fig = dynamics_figure(dynamics(s), backtrack_steps=[3, 6])
    assert len(fig.data) == 3 and len(_shapes(fig, "backtrack")) == 6
    np.testing.assert_allclose(fig.data[2].y, dynamics(s).dist_final)
    assert list(fig.data[0].x) == list(range(1, 9))


def test_stop_marks_and_exit_rule_figure():
    tr = make_trace(one_hot_path([1, 0, 0, 0, 0, 0, 0, 0]), correct=0)
    st = stops(tr.probs, tr.hidden_last)
    fig = with_stop_marks(belief_figure(tr), st)
    marks = [s for s in fig.layout.shapes if (s.name or "").startswith("stop:")]
    assert len(marks) == len(st) and any(s.name == "stop:oracle" and s.x0 == 2 for s in marks)
    assert not any((s.name or "").startswith("stop:") for s in belief_figure(tr).layout.shapes)  # a toggle
    rows = exit_rule_table([{"probs": tr.probs, "correct": 0, "variant": "base"},
                            {"probs": tr.probs, "correct": None, "variant": "nca"}])
    ef = exit_rule_figure(rows)
    assert len(ef.data) == 1 and ef.data[0].name == "Base"  # NCA has no accuracy
    assert "star" in ef.data[0].marker.symbol


def test_ponr_and_event_profile_figures():
    rows = [{"variant": v, "sigma": s, "group": "all", "at": k, "share": 0.1 * k, "low": 0.0, "high": 0.5, "n": 9}
            for v in ("base", "nca") for s in (0.5, 2.0) for k in (1, 2, 3)]
    fig = ponr_figure(rows)
    lines = [t for t in fig.data if t.mode == "lines"]
    assert len(lines) == 4 and {t.line.dash for t in lines} == {"solid", "dash"}
    prof = around_events([np.arange(1.0, 11.0)], [[5]], 2, 2, n_boot=50).to_dict()
    pf = event_profile_figure({"base": prof})
    assert _shapes(pf, "backtrack")[0].x0 == 0 and list(pf.data[-1].x) == [-2, -1, 0, 1, 2]
