import dataclasses
import json

import numpy as np
import plotly.graph_objects as go
import pytest

from backend import plots
from backend.errors import LoopLensError
from backend.trace import BeliefBand, TraceSet
from backend.metrics import analyze_trajectory
from tests.helpers_trace import backtracking_probs, make_trace, never_converging_probs


def shapes(fig, name):
    return [s for s in fig.layout.shapes if s.name == name]


def annotations(fig, name):
    return [a for a in fig.layout.annotations if a.name == name]


def test_belief_figure_one_trace_per_option_fixed_colours_and_correct_marked():
    tr = make_trace(backtracking_probs(), correct=1)
    fig = plots.belief_figure(tr)
    assert len(fig.data) == 4
    assert [d.line.color for d in fig.data] == plots.OPTION_COLORS[:4]
    assert "correct" in fig.data[1].name and all("correct" not in d.name for i, d in enumerate(fig.data) if i != 1)
    assert fig.data[1].line.width > fig.data[0].line.width
    assert list(fig.data[0].x) == list(range(1, 31))


def test_belief_figure_marks_backtrack_commitments_and_exploration_end_where_metrics_say():
    tr = make_trace(backtracking_probs(), correct=1)
    m = tr.metrics
    assert m.backtracked and m.exploration_end is not None
    fig = plots.belief_figure(tr)
    bts = annotations(fig, "backtrack")
    assert [a.text for a in bts] == ["A -> B"]
    assert bts[0].x == m.backtracks[0][1].start == 6
    ex = shapes(fig, "exploration_end")
    assert len(ex) == 1 and ex[0].x0 == m.exploration_end
    com = shapes(fig, "commitment")
    assert [(s.x0, s.x1) for s in com] == [(c.start - 0.5, c.end + 0.5) for c in m.commitments]
    assert com[0].fillcolor == plots.option_color(0) and com[1].fillcolor == plots.option_color(1)


def test_belief_figure_never_converged_is_labelled_and_has_no_exploration_line():
    tr = make_trace(never_converging_probs(), correct=0)
    assert not tr.metrics.converged
    fig = plots.belief_figure(tr)
    assert not shapes(fig, "exploration_end")
    assert annotations(fig, "never_converged")
    assert not annotations(fig, "backtrack")


def test_mass_kl_entropy_figures():
    tr = make_trace(backtracking_probs())
    mass = plots.mass_figure(tr)
    assert len(mass.data) == 5 and mass.data[-1].name == "total letter mass"
    np.testing.assert_allclose(mass.data[-1].y, tr.letter_mass)
    kl = plots.kl_figure(tr, threshold=0.02)
    assert len(kl.data[0].y) == 29
    assert shapes(kl, "threshold")[0].y0 == 0.02 and kl.layout.yaxis.type == "log"
    assert np.all(np.asarray(kl.data[0].y) > 0)  # zeros clipped for the log axis
    ent = plots.entropy_figure(tr)
    np.testing.assert_allclose(ent.data[0].y, tr.metrics.entropy)
    assert abs(shapes(ent, "max_entropy")[0].y0 - np.log(4)) < 1e-9


def test_top_tokens_animation_projection_heatmap_and_seed_spread():
    tr = make_trace(backtracking_probs())
    top = plots.top_tokens_figure(tr, 3)
    assert len(top.data[0].y) == 10
    anim = plots.animated_belief_figure(tr)
    assert len(anim.frames) == 30 and len(anim.data) == 4
    labels = [b.label for b in anim.layout.updatemenus[0].buttons]
    assert any("play" in l for l in labels) and any("pause" in l for l in labels)
    xy = [np.random.default_rng(i).normal(size=(30, 2)) for i in range(2)]
    proj = plots.projection_figure([("seed 0", xy[0]), ("seed 1", xy[1])])
    lines = [d for d in proj.data if d.mode == "lines+markers"]
    # issue 13: one colour per run (the step is the marker size, growing with the step)
    assert len(lines) == 2 and lines[0].marker.color != lines[1].marker.color
    assert np.all(np.diff(lines[0].marker.size) > 0) and len(lines[0].marker.size) == 30
    heat = plots.convergence_heatmap(np.abs(np.random.default_rng(0).normal(size=(30, 5))) + 1e-3, list("abcde"))
    assert heat.data[0].z.shape == (5, 30)
    spread = plots.seed_spread_figure([make_trace(backtracking_probs(), seed=s) for s in range(3)])
    assert len([d for d in spread.data if d.showlegend is not False]) == 4


def test_figures_are_json_serialisable_and_export_html():
    tr = make_trace(backtracking_probs())
    fig = plots.belief_figure(tr)
    json.loads(fig.to_json())
    html = plots.figure_html(fig)
    assert "<html>" in html[:100] and "plotly" in html.lower() and len(html) > 1_000_000  # plotly.js inlined


def test_variant_and_aggregate_figures():
    K, n = 30, 4
    band = BeliefBand(mean=np.full((K, n), 0.25), lo=np.full((K, n), 0.2), hi=np.full((K, n), 0.3),
                      options=tuple("wxyz"), correct=0, n=25)
    fig = plots.variant_belief_figure({"base": band, "easy": band, "nca": dataclasses.replace(band, correct=None)})
    assert len(fig.data) == 3 * n * 2  # band + mean line per option per variant
    eb = plots.entropy_bands_figure({"base": (np.ones(K), np.zeros(K), np.ones(K) * 2)})
    assert len(eb.data) == 2
    import pandas as pd
    ex = plots.exploration_length_figure(pd.DataFrame({"variant": ["base", "base", "easy"],
                                                       "exploration_end": [3.0, np.nan, 2.0]}))
    assert "never: 1/2" in ex.data[0].name
    rs = plots.rank_share_figure([0.7, 0.2, 0.1])
    assert abs(shapes(rs, "chance")[0].y0 - 1 / 3) < 1e-9


def test_variant_figure_colours_each_original_option_alike_in_every_variant():
    p = np.tile([0.7, 0.1, 0.1, 0.1], (30, 1))
    a = make_trace(p, correct=0, options=list("wxyz"), order=[0, 1, 2, 3])
    b = make_trace(p[:, [1, 0, 2, 3]], correct=1, options=list("xwyz"), order=[1, 0, 2, 3], variant="easy")
    bands = {v: runs.belief_band(n_boot=50) for v, runs in TraceSet([a, b]).by_variant().items()}
    fig = plots.variant_belief_figure(bands)
    lines = [d for d in fig.data if d.mode == "lines"]
    assert [d.name for d in lines] == ["w ✓", "x", "y", "z"] * 2
    assert [d.line.color for d in lines] == [plots.option_color(i) for i in range(4)] * 2
    assert "(n=1)" in fig.layout.annotations[0].text


def test_variant_figure_one_legend_entry_per_option_and_no_zero_width_bands():
    K = 10
    mean = np.tile([0.7, 0.1, 0.1, 0.1], (K, 1))
    flat = BeliefBand(mean=mean, lo=mean, hi=mean, options=tuple("abcd"), correct=0, n=24)
    wide = BeliefBand(mean=mean, lo=mean - 0.05, hi=mean + 0.05, options=("a", "x", "y", "z"), correct=0, n=24)
    nca = BeliefBand(mean=mean, lo=mean, hi=mean, options=("n", "b", "c", "d"), correct=None, n=24)
    assert plots.band_is_flat(flat) and not plots.band_is_flat(wide)
    fig = plots.variant_belief_figure({"base": flat, "easy": wide, "nca": nca})
    bands = [d for d in fig.data if d.fill == "toself"]
    assert len(bands) == 4 and all(d.xaxis == "x2" for d in bands)  # only Easy's band has a width
    legend = [d.name for d in fig.data if d.mode == "lines" and d.showlegend is not False]
    assert legend == ["a ✓", "b", "c", "d", "x", "y", "z", "n"]  # every option once
    colour = {}
    for d in fig.data:
        if d.mode == "lines":  # one colour per option text in every panel, never the "not answering" grey
            assert colour.setdefault(d.name.rstrip(" ✓"), d.line.color) == d.line.color
    assert len(set(colour.values())) == 8 and "#7f7f7f" not in colour.values()


def test_backtracking_bars_are_horizontal_and_labelled():
    fig = plots.bar_with_ci_figure(["a long label", "another long label"], [0.5, 0.2], [0.4, 0.1], [0.6, 0.3],
                                   "t", "share", value_format=".0%")
    assert fig.data[0].orientation == "h" and list(fig.data[0].y) == ["a long label", "another long label"]
    assert fig.data[0].texttemplate == "%{x:.0%}" and fig.layout.yaxis.autorange == "reversed"


def test_png_export_message_without_chromium(monkeypatch):
    monkeypatch.setattr(plots, "chromium_path", lambda: None)
    with pytest.raises(LoopLensError, match="Chromium"):
        plots.figure_png(object())


def test_png_export_without_kaleido_or_with_a_broken_browser_is_one_line(monkeypatch, tmp_path):
    import builtins
    import sys

    fig = plots.belief_figure(make_trace(backtracking_probs()))
    real_import = builtins.__import__

    def no_kaleido(name, *a, **k):
        if name == "kaleido":
            raise ImportError("no kaleido")
        return real_import(name, *a, **k)

    monkeypatch.setattr(plots, "chromium_path", lambda: "/usr/bin/chromium")
    monkeypatch.delitem(sys.modules, "kaleido", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_kaleido)
    with pytest.raises(LoopLensError, match="kaleido package"):
        plots.figure_png(fig)
    monkeypatch.setattr(builtins, "__import__", real_import)
    pytest.importorskip("kaleido")
    broken = tmp_path / "chromium"
    broken.write_text("#!/bin/sh\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setattr(plots, "chromium_path", lambda: str(broken))
    with pytest.raises(LoopLensError, match="PNG export failed") as exc:
        plots.figure_png(fig)
    assert "\n" not in str(exc.value) and "HTML" in str(exc.value)


def test_chromium_path_honours_browser_path(monkeypatch, tmp_path):
    exe = tmp_path / "my-chrome"
    exe.write_text("")
    monkeypatch.setenv("BROWSER_PATH", str(exe))
    assert plots.chromium_path() == str(exe)
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "missing"))
    assert plots.chromium_path() != str(tmp_path / "missing")


@pytest.mark.skipif(plots.chromium_path() is None, reason="no Chromium/Chrome found (Debian: apt-get install -y "
                    "chromium); CI installs one, so this runs there")
def test_figure_png_returns_real_png_bytes():
    import struct

    fig = plots.belief_figure(make_trace(backtracking_probs()))
    png = plots.figure_png(fig, scale=1)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (1000, int(fig.layout.height or 500))  # the figure's own height, default width
    assert 10_000 < len(png) < 5_000_000  # a drawn chart, not an empty canvas


def test_low_mass_steps_are_greyed_and_the_legend_says_so():
    tr = make_trace(backtracking_probs(), correct=1)
    tr.raw_mass = tr.raw_mass.copy()
    tr.raw_mass[:4] = 1e-6  # steps 1-4 and 10 not answering
    tr.raw_mass[9] = 1e-6
    fig = plots.belief_figure(tr)
    assert len(fig.data) == 4  # still one trace per option
    spans = [(s.x0, s.x1) for s in shapes(fig, "low_mass")]
    assert spans == [(0.5, 4.5), (9.5, 10.5)]
    assert "option mass < 0.01" in fig.layout.legend.title.text and "5 of 30" in fig.layout.legend.title.text
    colors = list(fig.data[0].marker.color)
    assert colors[0] == plots.LOW_MASS_COLOR and colors[4] == plots.OPTION_COLORS[0]
    mass = plots.mass_figure(tr)
    assert shapes(mass, "mass_threshold")[0].y0 == 0.01 and len(shapes(mass, "low_mass")) == 2
    assert plots.mass_figure(tr, threshold=1e-7).layout.shapes[0].y0 == 1e-7
    kl = plots.kl_figure(tr)
    assert shapes(kl, "low_mass") and annotations(kl, "low_mass_note")
    assert shapes(plots.entropy_figure(tr), "low_mass")
    # a trace that answers throughout: nothing greyed, no note
    ok = plots.belief_figure(make_trace(backtracking_probs(), correct=1))
    assert not shapes(ok, "low_mass") and not ok.layout.legend.title.text


def test_exploration_end_label_says_when_the_belief_moves_again():
    tr = make_trace(np.array([[0.8, 0.2]] * 8 + [[0.2, 0.8]] * 6), correct=1)
    lab = annotations(plots.belief_figure(tr), "exploration_label")[0].text
    assert "exploration end (step 1)" in lab and "changes again at step 9" in lab


def test_beyond_trained_depth_and_exit_prob_figure():
    from backend import plots as P
    from tests.helpers_trace import make_trace, one_hot_path

    tr = make_trace(one_hot_path([0, 0, 1, 1, 1, 1, 1]))
    beyond = [s for s in P.belief_figure(tr, trained_depth=4).layout.shapes if s.name == "beyond_trained_depth"]
    assert [(s.x0, s.x1) for s in beyond] == [(4.5, 7.5)]
    assert not [s for s in P.belief_figure(tr, trained_depth=7).layout.shapes if s.name == "beyond_trained_depth"]
    assert not [s for s in P.belief_figure(tr).layout.shapes if s.name == "beyond_trained_depth"]
    with pytest.raises(ValueError):
        P.exit_prob_figure(tr)
    tr.exit_probs = np.array([0.5, 0.2, 0.1, 0.1, 0.05, 0.03, 0.02])
    fig = P.exit_prob_figure(tr, trained_depth=4)
    assert list(fig.data[0].y) == list(tr.exit_probs) and list(fig.data[0].x) == list(range(1, 8))
    assert [s.name for s in fig.layout.shapes] == ["beyond_trained_depth"]


def test_with_metrics_uses_the_run_length_and_leaves_the_run_alone():
    from tests.helpers_trace import make_trace, one_hot_path

    tr = make_trace(one_hot_path([0, 0, 1, 1, 1, 2, 2]))
    assert len(tr.with_metrics(run_length=2).metrics.commitments) == 3
    assert len(tr.with_metrics(run_length=3).metrics.commitments) == 1
    assert len(tr.metrics.commitments) == 1 and tr.with_metrics(run_length=2).probs is tr.probs


# ---------------------------------------------------------------------------------------------- issue 13
def _luminance(hex_color):
    h = hex_color.lstrip("#")
    r, g, b = (int(h[k:k + 2], 16) / 255 for k in (0, 2, 4))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_step_axis_turns_logarithmic_above_the_threshold_and_says_so():
    from backend.settings import LOG_STEP_AXIS_ABOVE
    from tests.helpers_trace import one_hot_path

    at = LOG_STEP_AXIS_ABOVE
    short = make_trace(one_hot_path([0] * 4 + [1] * (at - 4)), correct=1)
    long = make_trace(one_hot_path([0] * 4 + [1] * (at + 1 - 4)), correct=1)
    for build in (plots.belief_figure, plots.mass_figure, plots.kl_figure, plots.entropy_figure):
        assert build(short).layout.xaxis.type != "log"
        fig = build(long)
        assert fig.layout.xaxis.type == "log" and "log scale" in fig.layout.xaxis.title.text
    assert plots.seed_spread_figure([long, long]).layout.xaxis.type == "log"
    # on a log axis an annotation's x is log10 of the step (shapes keep the step itself)
    fig = plots.belief_figure(long)
    (bt,) = annotations(fig, "backtrack")
    assert bt.x == pytest.approx(np.log10(5)) and bt.ax == pytest.approx(np.log10(2.5))
    assert [s.x0 for s in shapes(fig, "exploration_end")] == [long.metrics.exploration_end]
    assert plots.belief_figure(long, log_steps=False).layout.xaxis.type != "log"


def test_backtrack_labels_never_overlap():
    from tests.helpers_trace import one_hot_path

    # a backtrack every 3 steps: a linear label row would overlap
    tr = make_trace(one_hot_path(([0] * 3 + [1] * 3 + [2] * 3) * 4), correct=1)
    m = tr.metrics
    assert len(m.backtracks) >= 8
    fig = plots.belief_figure(tr)
    bts = annotations(fig, "backtrack")
    assert [a.text for a in bts] == [f"{'ABCD'[a.option]} -> {'ABCD'[b.option]}" for a, b in m.backtracks]
    spans = plots.backtrack_label_spans(m, tr.steps, log=False)
    assert len({a.y for a in bts}) > 1  # staggered
    for i in range(len(bts)):
        for j in range(i):
            if bts[i].y == bts[j].y:
                (a0, a1), (b0, b1) = spans[i], spans[j]
                assert a1 <= b0 or a0 >= b1, (bts[i].text, bts[j].text)
    assert plots.label_rows([(0, 1), (0.5, 2), (1, 2), (2.5, 3)]) == [0, 1, 0, 0]


def test_belief_legend_explains_the_marks_with_the_thresholds_in_force():
    tr = make_trace(backtracking_probs(), correct=1)
    names = [s.name for s in plots.belief_figure(tr).layout.shapes if s.showlegend]
    assert any("commitment" in n and "≥ 3 steps" in n for n in names)
    assert any("exploration end" in n and "0.01" in n for n in names)
    assert any("backtrack" in n for n in names)
    names5 = [s.name for s in plots.belief_figure(tr.with_metrics(run_length=5)).layout.shapes if s.showlegend]
    assert any("≥ 5 steps" in n for n in names5)
    fig = plots.belief_figure(tr)
    assert len(fig.data) == 4  # the legend entries are shapes: still one trace per option
    # the legend sits below the axis title with room for its rows
    assert fig.layout.legend.yref == "container" and fig.layout.margin.b >= 60 + plots.LEGEND_ROW_PX


def test_projection_colours_each_run_with_its_own_legend_entry():
    xy = np.random.default_rng(1).normal(size=(3, 12, 2))
    fig = plots.projection_figure([(f"seed {k}", xy[k]) for k in range(3)])
    lines = [d for d in fig.data if d.showlegend is not False]
    assert [d.name for d in lines] == ["seed 0", "seed 1", "seed 2"]
    colours = [d.marker.color for d in lines]
    assert len(set(colours)) == 3 and not set(colours) & set(plots.OPTION_COLORS)
    for k, d in enumerate(lines):  # start and end markers in the run's colour
        ends = [e for e in fig.data if e.name in (f"seed {k} start", f"seed {k} end")]
        assert len(ends) == 2 and all(e.marker.color == d.marker.color for e in ends)
        assert np.all(np.diff(d.marker.size) > 0)  # the step is the marker size


def test_convergence_heatmap_scale_is_sequential_light_to_dark_and_titled():
    heat = plots.convergence_heatmap(np.abs(np.random.default_rng(0).normal(size=(10, 4))) + 1e-3, list("abcd"))
    scale = [c for _, c in heat.data[0].colorscale]
    lum = [_luminance(c) for c in scale]
    assert all(b < a for a, b in zip(lum, lum[1:])), lum  # monotone: light (close to final) to dark
    assert "distance" in heat.data[0].colorbar.title.text


def test_stop_marks_are_ticks_one_line_per_distinct_step_and_tags_that_do_not_overlap():
    from types import SimpleNamespace as NS

    from backend import plots_interventions as pi

    tr = make_trace(backtracking_probs(), correct=1)
    stops = [NS(rule=r, setting=s, step=k, fired=True, answer=1) for r, s, k in (
        ("kl", "< 0.0005", 6), ("entropy", "< 0.001", 6), ("argmax", "3", 7), ("latent", "< 0.01", 8),
        ("oracle", "", 6), ("last", "", 30))]
    fig = pi.with_stop_marks(plots.belief_figure(tr), stops)
    marks = [s for s in fig.layout.shapes if (s.name or "").startswith("stop:")]
    assert len(marks) == len(stops) and {s.x0 for s in marks} == {6, 7, 8, 30}
    assert all(s.y1 - s.y0 < 0.1 for s in marks)  # short ticks at the foot, not lines across the plot
    assert sorted(s.x0 for s in fig.layout.shapes if s.name == "stop_step") == [6, 7, 8, 30]
    tags = [a for a in fig.layout.annotations if a.name == "stop_label"]
    assert [a.text for a in tags] == ["<b>1</b>", "<b>2</b>", "<b>3</b>", "<b>4</b>"]
    assert "kl < 0.0005" in tags[0].hovertext and "oracle" in tags[0].hovertext
    near = [(a.x, a.y) for a in tags[:3]]  # steps 6, 7, 8: neighbours, so staggered
    assert len({y for _, y in near}) > 1
