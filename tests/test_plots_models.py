"""backend.plots_models: several models on one question, the step axis as a fraction of trained depth."""
from __future__ import annotations

import numpy as np
import pytest

from backend.plots_models import ModelRun, model_color, models_figure, models_table
from helpers_trace import backtracking_probs, make_trace, one_hot_path


def _runs():
    deep = make_trace(backtracking_probs(), correct=1)          # 30 steps, trained depth 16
    short = make_trace(one_hot_path([1] * 8), correct=1)         # 8 steps, trained depth 4
    return [ModelRun("cups-letters", deep, 16), ModelRun("ouro-tiny", short, 4)]


def _series(fig, name_part: str, row: int):
    yaxis = "y" if row == 1 else "y2"
    found = [t for t in fig.data if name_part in t.name and (t.yaxis or "y") == yaxis]
    assert len(found) == 1, [(t.name, t.yaxis) for t in fig.data]
    return found[0]


def test_x_is_the_step_over_each_models_trained_depth():
    fig = models_figure(_runs())
    deep, short = _series(fig, "cups-letters", 1), _series(fig, "ouro-tiny", 1)
    np.testing.assert_allclose(deep.x, np.arange(1, 31) / 16)
    np.testing.assert_allclose(short.x, np.arange(1, 9) / 4)
    assert short.x[3] == 1.0  # its trained depth sits at x = 1
    assert fig.layout.xaxis2.title.text == "fraction of trained depth"
    assert any(s.name == "trained_depth" and s.x0 == 1.0 for s in fig.layout.shapes)


def test_raw_steps_toggle():
    fig = models_figure(_runs(), normalise=False)
    np.testing.assert_array_equal(_series(fig, "cups-letters", 1).x, np.arange(1, 31))
    np.testing.assert_array_equal(_series(fig, "ouro-tiny", 2).x, np.arange(1, 9))
    assert fig.layout.xaxis2.title.text == "step"
    assert not any(s.name == "trained_depth" for s in fig.layout.shapes)


def test_belief_in_the_correct_option_and_entropy_per_model_with_depth_in_the_legend():
    runs = _runs()
    fig = models_figure(runs)
    deep = _series(fig, "cups-letters", 1)
    np.testing.assert_allclose(deep.y, runs[0].trace.probs[:, 1])
    np.testing.assert_allclose(_series(fig, "cups-letters", 2).y, runs[0].trace.metrics.entropy)
    assert deep.name == "cups-letters (trained depth 16)" and deep.showlegend is not False
    assert _series(fig, "cups-letters", 2).showlegend is False  # one legend entry per model
    assert deep.line.color == model_color(0) == _series(fig, "cups-letters", 2).line.color
    assert _series(fig, "ouro-tiny", 1).line.color == model_color(1) != model_color(0)
    assert "correct option" in fig.layout.yaxis.title.text


def test_no_correct_option_plots_each_models_final_answer():
    t = make_trace(one_hot_path([0] * 3 + [2] * 5), correct=None)
    fig = models_figure([ModelRun("m", t, 4)])
    np.testing.assert_allclose(fig.data[0].y, t.probs[:, 2])
    assert "final answer" in fig.layout.yaxis.title.text


def test_model_names_are_shown_as_text():
    t = make_trace(one_hot_path([0] * 4))
    fig = models_figure([ModelRun("<a href='x'>evil</a>", t, 4)])
    assert "<a" not in fig.data[0].name and "&lt;a" in fig.data[0].name


def test_table_gives_exploration_end_as_a_fraction_of_depth():
    rows = models_table(_runs())
    assert [r["model"] for r in rows] == ["cups-letters", "ouro-tiny"]
    deep = rows[0]
    assert deep["trained depth"] == 16 and deep["steps run"] == 30 and deep["backtracks"] == 1
    assert deep["exploration end (x depth)"] == pytest.approx(deep["exploration end (step)"] / 16, abs=0.01)


def test_no_runs_is_an_error():
    with pytest.raises(ValueError):
        models_figure([])
