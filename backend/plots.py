"""Plotly figures for LoopLens: pure functions, data in, figure out (no Streamlit, no torch).

Conventions every figure follows, so tests can assert on them:

* one colour per option letter (``option_color(i)``), the same in every figure;
* the correct option is marked in its legend name (``" ✓ correct"``) and drawn thicker;
* belief figure: exactly one trace per option; commitments are ``layout.shapes`` named ``"commitment"``, the
  exploration end is a shape named ``"exploration_end"``, each backtrack is an annotation named ``"backtrack"``
  with text ``"A -> B"``;
* steps whose total option mass is below the mass threshold ("not answering") are greyed in every one-instance
  figure: grey ``layout.shapes`` named ``"low_mass"`` over those steps, grey markers there, and the legend title
  says so;
* steps on the x axis are 1-based, like every metric;
* text that comes from users (options, tokens, item ids, variant names from files) goes through :func:`text`:
  Plotly renders a subset of HTML in names, labels and hovers (links included), so it is shown as text.
"""
from __future__ import annotations

import html
import os
import shutil
from typing import Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .errors import LoopLensError
from .metrics import KL_THRESHOLD, MASS_THRESHOLD, TrajectoryMetrics
from .summaries import plural
from .trace import Band, BeliefBand, Trace, TraceSet

from .settings import KL_WINDOW, LETTERS, LOG_STEP_AXIS_ABOVE, RUN_LENGTH  # noqa: E402
# Plotly's D3 palette: 10 distinct colours, one per option letter.
OPTION_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf"]
VARIANT_COLORS = {"base": "#1f77b4", "easy": "#2ca02c", "nca": "#d62728"}
VARIANT_NAMES = {"base": "Base", "easy": "Easy", "nca": "No correct answer"}
# A small template (plotly_white's look): applying the full plotly_white template costs ~20 ms per figure.
TEMPLATE = dict(layout=dict(
    plot_bgcolor="white", paper_bgcolor="white", font=dict(color="#2a3f5f"),
    xaxis=dict(gridcolor="#EBF0F8", zerolinecolor="#EBF0F8", linecolor="#EBF0F8", automargin=True),
    yaxis=dict(gridcolor="#EBF0F8", zerolinecolor="#EBF0F8", linecolor="#EBF0F8", automargin=True),
    colorway=OPTION_COLORS))
LAYOUT = dict(template=TEMPLATE, margin=dict(l=55, r=20, t=45, b=40), height=420,
              legend=dict(orientation="h", yanchor="top", y=-0.2, x=0, font=dict(size=11)),
              hovermode="x unified")


def option_color(i: int) -> str:
    return OPTION_COLORS[i % len(OPTION_COLORS)]


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[k:k + 2], 16) for k in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def _short(text: str, n: int = 28) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def text(s, n: Optional[int] = None) -> str:
    """User text for a Plotly name, label or hover: shortened to ``n`` characters (if given) and HTML-escaped,
    so ``<a href=…>`` shows as written instead of becoming a link."""
    s = _short(s, n) if n else str(s)
    return html.escape(s, quote=False)


def option_name(i: int, option: str, correct: Optional[int]) -> str:
    name = f"{LETTERS[i]}) {text(option, 28)}"
    return name + " ✓ correct" if correct is not None and i == correct else name


def vline(x, name: str, color: str = "black", dash: str = "dash", width: float = 2) -> dict:
    return dict(type="line", xref="x", yref="paper", x0=x, x1=x, y0=0, y1=1, name=name,
                line=dict(color=color, width=width, dash=dash))


def hline(y, name: str, color: str = "gray", dash: str = "dash", width: float = 1.5) -> dict:
    return dict(type="line", xref="paper", yref="y", x0=0, x1=1, y0=y, y1=y, name=name,
                line=dict(color=color, width=width, dash=dash))


def vrect(x0, x1, color: str, name: str, opacity: float = 0.12) -> dict:
    return dict(type="rect", xref="x", yref="paper", x0=x0, x1=x1, y0=0, y1=1, fillcolor=color, opacity=opacity,
                line=dict(width=0), layer="below", name=name)


def line_label(y, text: str, name: str, color: str = "gray", yanchor: str = "bottom") -> dict:
    return dict(xref="paper", yref="y", x=1, y=y, text=text, showarrow=False, xanchor="right", yanchor=yanchor,
                font=dict(size=11, color=color), name=name)


def _add(fig: go.Figure, shapes=(), annotations=()) -> None:
    fig.update_layout(shapes=list(fig.layout.shapes) + list(shapes),
                      annotations=list(fig.layout.annotations) + list(annotations))


def _steps(n: int) -> np.ndarray:
    return np.arange(1, n + 1)


def _base_layout(fig: go.Figure, title: str, ytitle: str, xtitle: str = "recurrent step") -> go.Figure:
    fig.update_layout(title=dict(text=title, font=dict(size=15), x=0.01, xanchor="left"), **LAYOUT)
    fig.update_xaxes(title_text=xtitle)
    fig.update_yaxes(title_text=ytitle)
    return fig


# ---------------------------------------------------------------------------------------------- option mass
LOW_MASS_COLOR = "#9e9e9e"


def low_mass_spans(low_mass) -> list:
    """Contiguous runs of low-mass steps as (first, last) 1-based steps."""
    spans, start = [], None
    flags = list(low_mass) if low_mass is not None else []
    for t, f in enumerate(flags + [False], start=1):
        if f and start is None:
            start = t
        elif not f and start is not None:
            spans.append((start, t - 1))
            start = None
    return spans


def low_mass_note(m: TrajectoryMetrics) -> str:
    return (f"grey steps: option mass < {m.mass_threshold:g}, not answering ({m.n_low_mass} of {m.n_steps}; "
            "their belief is renormalised noise)")


def _grey_low_mass(fig: go.Figure, m: TrajectoryMetrics, legend: bool = True) -> None:
    """Grey out the steps whose total option mass is below the threshold, and say so in the legend (or, in a
    figure without a legend, in a note above the plot)."""
    if m.low_mass is None or not m.low_mass.any():
        return
    note = [] if legend else [dict(xref="paper", yref="paper", x=0, y=1.0, xanchor="left", yanchor="bottom",
                                   text=low_mass_note(m), showarrow=False, font=dict(size=10, color="#666"),
                                   name="low_mass_note")]
    _add(fig, [dict(type="rect", xref="x", yref="paper", x0=a - 0.5, x1=b + 0.5, y0=0, y1=1,
                    fillcolor=LOW_MASS_COLOR, opacity=0.22, line=dict(width=0), layer="below", name="low_mass")
               for a, b in low_mass_spans(m.low_mass)], note)
    if legend:
        fig.update_layout(legend_title_text=low_mass_note(m))


def _marker_colors(color: str, m: TrajectoryMetrics, K: int):
    if m.low_mass is None or not m.low_mass.any():
        return color
    return [LOW_MASS_COLOR if m.low_mass[t] else color for t in range(K)]


# ---------------------------------------------------------------------------------------------- one instance
def use_log_steps(steps: int) -> bool:
    """Whether a one-run figure of ``steps`` steps gets a logarithmic step axis (above ``LOG_STEP_AXIS_ABOVE``)."""
    return int(steps) > LOG_STEP_AXIS_ABOVE


def step_axis_title(log: bool, title: str = "recurrent step") -> str:
    return f"{title} (log scale: more than {LOG_STEP_AXIS_ABOVE} steps)" if log else title


def _step_axis(fig: go.Figure, steps: int, log: bool, title: str = "recurrent step") -> go.Figure:
    """A logarithmic step axis (1 .. steps) when ``log``, saying so in its title; the figure as it is otherwise."""
    if log:
        fig.update_xaxes(type="log", range=[np.log10(0.8), np.log10(steps + 0.6)], title_text=step_axis_title(
            True, title))
    return fig


def _ax(x: float, log: bool) -> float:
    """An annotation's x in axis units (Plotly places annotations on a log axis by log10 of the value; shapes take
    the value itself)."""
    return float(np.log10(x)) if log else x


# Where a backtrack label may sit (y, in belief units) and how wide the plot is assumed to be when spacing them.
BACKTRACK_LABEL_ROWS = (1.0, 0.925, 0.85, 0.775, 0.7)
LABEL_PLOT_PX = 450
LABEL_CHAR_PX = 7.5


def label_rows(spans: Sequence[Tuple[float, float]]) -> list:
    """Greedy rows for labels occupying ``spans`` ((left, right) in any one unit): each label goes to the lowest
    row where it overlaps no label already there, so no two labels of a row overlap."""
    rows: list = []
    out = []
    for lo, hi in spans:
        lo, hi = min(lo, hi), max(lo, hi)
        for r, taken in enumerate(rows):
            if all(hi <= a or lo >= b for a, b in taken):
                taken.append((lo, hi))
                out.append(r)
                break
        else:
            rows.append([(lo, hi)])
            out.append(len(rows) - 1)
    return out


def backtrack_label_spans(m: TrajectoryMetrics, K: int, log: bool) -> list:
    """Each backtrack's label and arrow as a span of the step axis, in fractions of the axis width (label centred
    on the arrow's tail, about ``LABEL_CHAR_PX`` per character on a ``LABEL_PLOT_PX`` wide plot)."""
    def frac(x):
        if log:
            return (np.log10(x) - np.log10(0.8)) / (np.log10(K + 0.6) - np.log10(0.8))
        return (x - 0.5) / max(K, 1)
    spans = []
    for a, b in m.backtracks:
        tail, head = frac((a.start + a.end) / 2), frac(b.start)
        half = (len(f"{LETTERS[a.option]} -> {LETTERS[b.option]}") * LABEL_CHAR_PX + 8) / LABEL_PLOT_PX / 2
        spans.append((min(tail - half, head), max(tail + half, head)))
    return spans


def belief_figure(trace, metrics: Optional[TrajectoryMetrics] = None, title: Optional[str] = None,
                  upto: Optional[int] = None, trained_depth: Optional[int] = None,
                  log_steps: Optional[bool] = None) -> go.Figure:
    """Belief per option vs step: commitments shaded, exploration end marked, backtracks annotated ``a -> b``
    (labels staggered so that none overlap); with ``trained_depth``, the steps past it shaded (shape
    ``"beyond_trained_depth"``).  The step axis is logarithmic above ``LOG_STEP_AXIS_ABOVE`` steps (``log_steps``
    forces it on or off).  The legend explains the marks (legend-only shapes named after what they mean)."""
    m = metrics or trace.metrics
    probs = np.asarray(trace.probs)
    K, n = probs.shape
    log = use_log_steps(K) if log_steps is None else bool(log_steps)
    x = _steps(K)
    fig = go.Figure()
    for i in range(n):
        is_c = trace.correct is not None and i == trace.correct
        fig.add_trace(go.Scatter(
            x=x, y=probs[:, i], mode="lines+markers", name=option_name(i, trace.options[i], trace.correct),
            line=dict(color=option_color(i), width=4 if is_c else 2),
            marker=dict(size=5, symbol="star" if is_c else "circle", color=_marker_colors(option_color(i), m, K)),
            hovertemplate=f"{LETTERS[i]}: %{{y:.3f}}<extra></extra>",
        ))
    _decorate_instance(fig, m, K, log)
    _grey_low_mass(fig, m)
    fig.update_yaxes(range=[0, 1.12])
    if upto is not None:
        _add(fig, [vline(upto, "cursor", width=1, dash="dot")])
    mark_beyond_trained_depth(fig, trained_depth, K, log)
    _base_layout(fig, title or "Belief over the options", "belief (renormalised over options)")
    _legend_below(fig)
    return _step_axis(fig, K, log)


LEGEND_ROW_PX = 19


def legend_rows(names: Sequence[str], width_px: int = LABEL_PLOT_PX + 50) -> int:
    """How many rows a horizontal legend of these entries takes (about 6 px a character plus the swatch)."""
    rows, used = 1, 0
    for name in names:
        w = 45 + 6 * len(html.unescape(str(name)))
        if used and used + w > width_px:
            rows, used = rows + 1, 0
        used += w
    return rows


def _legend_below(fig: go.Figure) -> None:
    """Put the legend at the foot of the figure with room for all its rows, so it never covers the axis title."""
    names = [d.name for d in fig.data if d.showlegend is not False] + \
        [sh.name for sh in fig.layout.shapes if sh.showlegend]
    title = fig.layout.legend.title.text if fig.layout.legend and fig.layout.legend.title else None
    rows = legend_rows(([title] if title else []) + names)
    extra = LEGEND_ROW_PX * rows
    fig.update_layout(height=LAYOUT["height"] + extra - LEGEND_ROW_PX,
                      margin=dict(LAYOUT["margin"], b=60 + extra),
                      legend=dict(yref="container", y=0, yanchor="bottom"))


BEYOND_DEPTH_COLOR = "#7f7f7f"


def mark_beyond_trained_depth(fig: go.Figure, trained_depth: Optional[int], steps: int,
                              log: bool = False) -> go.Figure:
    """Shade grey the steps past the model's trained depth (a shape named ``"beyond_trained_depth"`` and a label):
    the model was never trained to run that long, so what it does there is extrapolation."""
    if trained_depth is None or trained_depth >= steps:
        return fig
    _add(fig, [vrect(trained_depth + 0.5, steps + 0.5, BEYOND_DEPTH_COLOR, "beyond_trained_depth", opacity=0.15)],
         [dict(x=_ax(trained_depth + 0.5, log), y=0.02, xref="x", yref="paper", showarrow=False, xanchor="left",
               text=f" beyond trained depth ({trained_depth})", font=dict(size=11, color="#555"),
               name="beyond_trained_depth_label")])
    return fig


def exit_prob_figure(trace, trained_depth: Optional[int] = None, title: Optional[str] = None) -> go.Figure:
    """The model's own probability of exiting at each step (Ouro's exit gate), as bars on the belief's step axis.
    ``trace.exit_probs`` must be set (a family with an exit gate)."""
    if trace.exit_probs is None:
        raise ValueError("this run has no exit probabilities (the model has no exit gate)")
    p = np.asarray(trace.exit_probs, dtype=np.float64)
    K = len(p)
    log = use_log_steps(K)
    fig = go.Figure(go.Bar(x=_steps(K), y=p, name="p(exit at step)", marker_color="#444",
                           hovertemplate="step %{x}: p(exit) %{y:.3f}<extra></extra>"))
    fig.update_yaxes(range=[0, 1.05])
    mark_beyond_trained_depth(fig, trained_depth, K, log)
    _base_layout(fig, title or "Exit probability per step (the model's exit gate)", "p(exit)")
    fig.update_layout(height=240, showlegend=False)
    return _step_axis(fig, K, log)


def legend_entry(kind: str, name: str, color: str, dash: str = "solid", group: Optional[str] = None) -> dict:
    """A shape that is only a legend entry (zero size, nothing drawn in the plot): ``kind`` "rect" (a shaded
    swatch) or "line".  Clicking it in the legend hides the shapes of its ``group``."""
    d = dict(type=kind, xref="paper", yref="paper", x0=0, x1=0, y0=0, y1=0, name=name, showlegend=True,
             legendgroup=group or name)
    if kind == "rect":
        d.update(fillcolor=_rgba(color, 0.25), line=dict(width=0))
    else:
        d.update(line=dict(color=color, width=2, dash=dash))
    return d


def _decorate_instance(fig: go.Figure, m: TrajectoryMetrics, K: int, log: bool = False) -> None:
    """Commitments, exploration end and backtracks on a belief figure, each explained by a legend entry with the
    thresholds in force (run length, KL threshold and window)."""
    shapes, ann, legend = [], [], []
    rl = int(m.params.get("run_length", RUN_LENGTH))
    thr, win = m.params.get("kl_threshold", KL_THRESHOLD), int(m.params.get("kl_window", KL_WINDOW))
    for run in m.commitments:
        shapes.append({**vrect(run.start - 0.5, run.end + 0.5, option_color(run.option), "commitment"),
                       "legendgroup": "commitment"})
    if m.commitments:
        legend.append(legend_entry("rect", f"commitment: argmax held ≥ {plural(rl, 'step')}", "#555555",
                                   group="commitment"))
    if m.exploration_end is not None:
        shapes.append({**vline(m.exploration_end, "exploration_end"), "legendgroup": "exploration_end"})
        legend.append(legend_entry("line", f"exploration end: step KL ≤ {thr:g} for {plural(win, 'step')}", "black",
                                   "dash", group="exploration_end"))
        ann.append(dict(x=_ax(m.exploration_end, log), y=1.09, xref="x", yref="y", showarrow=False, xanchor="left",
                        text=f" exploration end (step {m.exploration_end})" + (
                            f"; the argmax changes again at step {m.later_argmax_change}"
                            if m.later_argmax_change is not None else ""), font=dict(size=11),
                        name="exploration_label"))
    else:
        ann.append(dict(x=_ax(K, log), y=1.09, xref="x", yref="y", text="never converged", showarrow=False,
                        xanchor="right", font=dict(size=11, color="#b00"), name="never_converged"))
    rows = label_rows(backtrack_label_spans(m, K, log))
    for (a, b), r in zip(m.backtracks, rows):
        y = BACKTRACK_LABEL_ROWS[r % len(BACKTRACK_LABEL_ROWS)]
        ann.append(dict(x=_ax(b.start, log), y=y, xref="x", yref="y", ax=_ax((a.end + a.start) / 2, log), ay=y,
                        axref="x", ayref="y", text=f"{LETTERS[a.option]} -> {LETTERS[b.option]}", showarrow=True,
                        arrowhead=2, arrowcolor=option_color(b.option),
                        font=dict(size=12, color=option_color(b.option)), bgcolor="rgba(255,255,255,0.8)",
                        name="backtrack"))
    if m.backtracks:
        legend.append(legend_entry("line", "A -> B: backtrack, one commitment to another", "#444"))
    _add(fig, shapes + legend, ann)


def mass_figure(trace, title: Optional[str] = None, threshold: Optional[float] = None) -> go.Figure:
    """Raw mass of each option's letter tokens in the full vocabulary, and their total (the 'answering' mass), with
    the mass threshold line; steps below it greyed."""
    raw = np.asarray(trace.raw_mass)
    K, n = raw.shape
    x = _steps(K)
    fig = go.Figure()
    for i in range(n):
        fig.add_trace(go.Scatter(x=x, y=raw[:, i], mode="lines", name=option_name(i, trace.options[i], trace.correct),
                                 line=dict(color=option_color(i), width=2)))
    fig.add_trace(go.Scatter(x=x, y=raw.sum(axis=1), mode="lines", name="total letter mass",
                             line=dict(color="black", width=2, dash="dash")))
    thr = MASS_THRESHOLD if threshold is None else threshold
    m = trace.analyze(mass_threshold=thr) if threshold is not None else trace.metrics
    _add(fig, [hline(thr, "mass_threshold", color=LOW_MASS_COLOR)],
         [line_label(thr, f"mass threshold {thr:g}", "mass_threshold_label", color="#666")])
    _grey_low_mass(fig, m)
    fig.update_yaxes(range=[0, 1.02])
    _base_layout(fig, title or "Raw option mass (full vocabulary)", "probability")
    return _step_axis(fig, K, use_log_steps(K))


def kl_figure(trace, threshold: float = KL_THRESHOLD, metrics: Optional[TrajectoryMetrics] = None,
              title: Optional[str] = None) -> go.Figure:
    """Step KL(p_{t+1} || p_t) at x = t on a log axis, with the convergence threshold line."""
    m = metrics or trace.metrics
    kl = np.maximum(np.asarray(m.kl, dtype=float), 1e-12)
    fig = go.Figure(go.Scatter(x=_steps(len(kl)), y=kl, mode="lines+markers", name="KL(p[t+1] || p[t])",
                               line=dict(color="#444", width=2), marker=dict(size=5)))
    shapes = [hline(threshold, "threshold", color="#d62728")]
    if m.exploration_end is not None:
        shapes.append(vline(m.exploration_end, "exploration_end"))
    ann = [dict(xref="paper", yref="y", x=1, y=np.log10(threshold), text=f"threshold {threshold:g}", showarrow=False,
                xanchor="right", yanchor="bottom", font=dict(size=11, color="#d62728"), name="threshold_label")]
    _add(fig, shapes, ann)
    fig.update_yaxes(type="log", exponentformat="power")
    fig.update_layout(showlegend=False)
    _grey_low_mass(fig, m, legend=False)
    _base_layout(fig, title or "Step KL divergence", "KL (nats, log scale)", "step t")
    return _step_axis(fig, len(kl) + 1, use_log_steps(len(kl) + 1), "step t")


def entropy_figure(trace, metrics: Optional[TrajectoryMetrics] = None, title: Optional[str] = None) -> go.Figure:
    m = metrics or trace.metrics
    H = np.asarray(m.entropy)
    fig = go.Figure(go.Scatter(x=_steps(len(H)), y=H, mode="lines+markers", name="entropy",
                               line=dict(color="#9467bd", width=2), marker=dict(size=5)))
    hmax = float(np.log(trace.n_options))
    shapes = [hline(hmax, "max_entropy", dash="dot")]
    if m.exploration_end is not None:
        shapes.append(vline(m.exploration_end, "exploration_end"))
    _add(fig, shapes, [line_label(hmax, f"uniform = log {trace.n_options}", "max_entropy_label", yanchor="top")])
    fig.update_yaxes(range=[0, hmax * 1.08])
    fig.update_layout(showlegend=False)
    _grey_low_mass(fig, m, legend=False)
    _base_layout(fig, title or "Entropy of the belief", "entropy (nats)")
    return _step_axis(fig, len(H), use_log_steps(len(H)))


def top_tokens_figure(trace, step: int) -> go.Figure:
    """The most probable tokens of the full vocabulary at one step (1-based)."""
    t = int(step) - 1
    toks = [text(repr(s)) for s in trace.top_tokens[t]]
    probs = np.asarray(trace.top_probs[t], dtype=float)
    option_ids = {tid: i for i, ids in enumerate(trace.option_token_ids) for tid in ids}
    colors = [option_color(option_ids[int(tid)]) if int(tid) in option_ids else "#999"
              for tid in trace.top_ids[t]]
    fig = go.Figure(go.Bar(x=probs[::-1], y=toks[::-1], orientation="h", marker_color=colors[::-1],
                           hovertemplate="%{y}: %{x:.4f}<extra></extra>"))
    fig.update_layout(showlegend=False)
    fig = _base_layout(fig, f"Top tokens at step {step} (full vocabulary)", "token", "probability")
    fig.update_layout(hovermode="closest")
    return fig


def animated_belief_figure(trace, title: Optional[str] = None, frame_ms: int = 350) -> go.Figure:
    """Belief per option revealed step by step, with play/pause buttons and a step slider (client-side).

    It opens on the whole run (its marks read against the whole curve); ▶ play replays it from step 1.  The legend
    sits above the plot area (under the title) and the buttons and slider below the x axis's title, so nothing
    covers the legend or the curves."""
    probs = np.asarray(trace.probs)
    K, n = probs.shape
    base = belief_figure(trace, title=title, log_steps=False)  # the animation's x range is linear
    x = _steps(K)
    frames = []
    for t in range(1, K + 1):
        frames.append(go.Frame(name=str(t), data=[go.Scatter(x=x[:t], y=probs[:t, i]) for i in range(n)]))
    base.frames = frames
    base.update_xaxes(range=[0.5, K + 0.5])
    play = dict(label="▶ play", method="animate",
                args=[[str(t) for t in range(1, K + 1)], dict(frame=dict(duration=frame_ms, redraw=False),
                                                              mode="immediate", transition=dict(duration=0))])
    pause = dict(label="❚❚ pause", method="animate",
                 args=[[None], dict(frame=dict(duration=0, redraw=False), mode="immediate",
                                    transition=dict(duration=0))])
    base.update_layout(
        height=560,
        legend=dict(orientation="h", x=0, xanchor="left", y=1.02, yanchor="bottom", yref="paper", font=dict(size=12),
                    title=dict(side="top")),
        updatemenus=[dict(type="buttons", direction="left", x=0, xanchor="left", y=0, yanchor="top",
                          pad=dict(t=48, r=10), buttons=[play, pause], showactive=False)],
        sliders=[dict(active=K - 1, x=0, len=1, xanchor="left", y=0, yanchor="top", pad=dict(t=92, b=0),
                      currentvalue=dict(prefix="step ", xanchor="right", font=dict(size=13)),
                      steps=[dict(label=str(t), method="animate",
                                  args=[[str(t)], dict(mode="immediate", frame=dict(duration=0, redraw=False),
                                                       transition=dict(duration=0))]) for t in range(1, K + 1)])],
        title=dict(y=0.98, yref="container", yanchor="top"),
        margin=dict(l=55, r=20, t=50 + 30 * _legend_top_rows(base, 12), b=40),
    )
    return base


def _legend_top_rows(fig: go.Figure, font_size: int) -> int:
    """Rows of the legend of ``fig`` drawn with ``font_size`` px text (room to keep above the plot area)."""
    names = [d.name for d in fig.data if d.showlegend is not False] + \
        [sh.name for sh in fig.layout.shapes if sh.showlegend]
    return legend_rows(names, width_px=int(LABEL_PLOT_PX * 12 / font_size))


def presenter_belief_figure(trace, step: int, font_size: int = 18) -> go.Figure:
    """The belief up to ``step`` (1-based) in large type, for presenting: the run cut at that step, so only the
    commitments, exploration end and backtracks known by then are marked, on the whole run's step axis."""
    K = int(np.asarray(trace.probs).shape[0])
    t = min(max(int(step), 1), K)
    fig = belief_figure(trace.truncated(t), log_steps=False)
    fig.update_xaxes(range=[0.5, K + 0.5], title_font=dict(size=font_size), tickfont=dict(size=font_size - 2))
    fig.update_yaxes(title_text="belief", title_font=dict(size=font_size), tickfont=dict(size=font_size - 2))
    for tr in fig.data:
        tr.marker.size = 9
        tr.line.width = (tr.line.width or 2) + 1
    for a in fig.layout.annotations:
        a.font.size = font_size - 2
        if a.name == "never_converged":  # the run is cut here: not converged *yet*
            a.x, a.text = K, "not converged yet"
    fig.update_layout(height=420, font=dict(size=font_size), title=dict(text=""),
                      legend=dict(orientation="h", x=0, xanchor="left", y=1.02, yanchor="bottom", yref="paper",
                                  font=dict(size=font_size), title=dict(side="top")),
                      margin=dict(l=70, r=20, t=10 + int(2.2 * font_size) * _legend_top_rows(fig, font_size), b=60))
    return fig


DIAGRAM_COLORS = {"input": "#eeeeee", "prelude": "#d6e6f5", "state": "#fff3cd", "core": "#fde2c8",
                  "coda": "#d9f0d3", "belief": "#ffffff"}


def architecture_figure(font_size: int = 14) -> go.Figure:
    """The looped model as a diagram at the page's width: prompt -> prelude -> core block (repeated, fed a random
    initial state) -> coda -> belief after every step.  Text is in pixels, so it stays legible at any width."""
    # (key, column, row, label): four columns, the main flow on the top row.
    boxes = [("input", 0, 1, "<b>Question</b><br>+ options<br>(tokens)"),
             ("prelude", 1, 1, "<b>Prelude P</b><br>reads the<br>prompt once"),
             ("core", 2, 1, "<b>Core block R</b><br>same layers<br>every step"),
             ("coda", 3, 1, "<b>Coda C</b><br>norm + head"),
             ("state", 2, 0, "<b>State s(0)</b><br>random start"),
             ("belief", 3, 0, "<b>Belief</b><br>over A-D<br>after step t")]
    w, h = 0.39, 0.33  # half width / height of a box (columns are 1 wide, rows 1.2 apart)
    pos = {k: (c + 0.5, r * 1.2) for k, c, r, _ in boxes}
    fig = go.Figure()
    shapes, ann = [], []
    for k, c, r, label in boxes:
        x, y = pos[k]
        shapes.append(dict(type="rect", x0=x - w, x1=x + w, y0=y - h, y1=y + h, xref="x", yref="y",
                           fillcolor=DIAGRAM_COLORS[k], line=dict(color="#555", width=1.5), layer="below",
                           name=f"box_{k}"))
        ann.append(dict(x=x, y=y, text=label, showarrow=False, font=dict(size=font_size, color="#222"),
                        name=f"label_{k}"))

    def arrow(a, b, label="", side="top"):
        (x0, y0), (x1, y1) = pos[a], pos[b]
        if y0 == y1:  # horizontal: box edge to box edge
            s, e = (x0 + w, y0), (x1 - w, y1)
        else:  # vertical
            d = 1 if y1 > y0 else -1
            s, e = (x0, y0 + d * h), (x1, y1 - d * h)
        ann.append(dict(x=e[0], y=e[1], ax=s[0], ay=s[1], xref="x", yref="y", axref="x", ayref="y", text="",
                        showarrow=True, arrowhead=2, arrowsize=1.3, arrowwidth=2, arrowcolor="#444",
                        name=f"arrow_{a}_{b}"))
        if label:
            mx, my = (s[0] + e[0]) / 2, (s[1] + e[1]) / 2
            kw = (dict(y=my + 0.05, yanchor="bottom") if side == "top" else
                  dict(x=mx + 0.04, xanchor="left", y=my) if side == "right" else dict(y=my))
            ann.append(dict(**{"x": mx, "y": my, **kw}, text=label, showarrow=False,
                            font=dict(size=font_size - 1, color="#333"), name=f"arrow_label_{a}_{b}"))

    arrow("input", "prelude")
    arrow("prelude", "core", "e")
    arrow("state", "core", "s(0)", side="right")
    arrow("core", "coda", "s(t)")
    arrow("coda", "belief", "every step", side="right")
    # the loop over the core block: out of its top right, back into its top left
    cx, top = pos["core"][0], pos["core"][1] + h
    shapes.append(dict(type="path", path=f"M {cx + 0.18},{top} C {cx + 0.22},{top + 0.42} {cx - 0.22},{top + 0.42} "
                                         f"{cx - 0.18},{top + 0.06}", xref="x", yref="y",
                       line=dict(color="#444", width=2), name="loop"))
    ann.append(dict(x=cx - 0.18, y=top, ax=cx - 0.185, ay=top + 0.08, xref="x", yref="y", axref="x", ayref="y",
                    text="", showarrow=True, arrowhead=2, arrowsize=1.3, arrowwidth=2, arrowcolor="#444",
                    name="loop_arrow"))
    ann.append(dict(x=cx, y=top + 0.34, yanchor="bottom", showarrow=False, font=dict(size=font_size, color="#222"),
                    text="repeat K times: s(t) = R(s(t−1), e)", name="loop_label"))
    fig.update_layout(shapes=shapes, annotations=ann, template=TEMPLATE, height=360, showlegend=False,
                      margin=dict(l=5, r=5, t=10, b=5), hovermode=False, dragmode=False)
    fig.update_xaxes(range=[0, 4], visible=False, fixedrange=True)
    fig.update_yaxes(range=[-h - 0.08, 1.2 + h + 0.62], visible=False, fixedrange=True)
    return fig


# ---------------------------------------------------------------------------------------------- several runs
def seed_spread_figure(traces: Sequence[Trace], title: Optional[str] = None) -> go.Figure:
    """Belief per option over several seeds: median line and min-max band per option (one basis)."""
    runs = traces if isinstance(traces, TraceSet) else TraceSet(traces)
    ps = runs.probs  # [S, K, n]
    S, K, n = ps.shape
    x = _steps(K)
    ref = traces[0]
    fig = go.Figure()
    lo, hi, med = ps.min(axis=0), ps.max(axis=0), np.median(ps, axis=0)
    for i in range(n):
        c = option_color(i)
        fig.add_trace(go.Scatter(x=np.concatenate([x, x[::-1]]), y=np.concatenate([hi[:, i], lo[:, i][::-1]]),
                                 fill="toself", fillcolor=_rgba(c, 0.15), line=dict(width=0), hoverinfo="skip",
                                 showlegend=False, name=f"{LETTERS[i]} band"))
        fig.add_trace(go.Scatter(x=x, y=med[:, i], mode="lines", name=option_name(i, ref.options[i], ref.correct),
                                 line=dict(color=c, width=3 if i == ref.correct else 2)))
    fig.update_yaxes(range=[0, 1.02])
    _base_layout(fig, title or f"Belief over {plural(S, 'seed')} (median, min-max band)", "belief")
    return _step_axis(fig, K, use_log_steps(K))


# A band narrower than this everywhere is "zero width": every run gave the same curve (up to float noise; on a
# belief or entropy axis 0.001 is far below a pixel).
FLAT_BAND_TOL = 1e-3


def band_is_flat(band, tol: float = FLAT_BAND_TOL) -> bool:
    """True when a ``(mean, lo, hi)`` band has zero width at every step (all runs identical): nothing to draw."""
    _, lo, hi = (np.asarray(a, dtype=float) for a in band)
    return bool(np.all(np.abs(hi - lo) <= tol))


def band_traces(fig: go.Figure, x, mean, lo, hi, color: str, name: str, width: float = 2, dash=None,
                row=None, col=None, legendgroup=None, showlegend=True) -> None:
    """A mean line and its shaded 95% band; a zero-width band (every run the same) is not drawn."""
    kw = {} if row is None else dict(row=row, col=col)
    if not band_is_flat((mean, lo, hi)):
        fig.add_trace(go.Scatter(x=np.concatenate([x, x[::-1]]), y=np.concatenate([hi, lo[::-1]]), fill="toself",
                                 fillcolor=_rgba(color, 0.18), line=dict(width=0), hoverinfo="skip",
                                 showlegend=False, name=f"{name} 95% band", legendgroup=legendgroup or name), **kw)
    fig.add_trace(go.Scatter(x=x, y=mean, mode="lines", name=name, line=dict(color=color, width=width, dash=dash),
                             legendgroup=legendgroup or name, showlegend=showlegend), **kw)


def variant_option_colors(bands: Mapping[str, BeliefBand]) -> dict:
    """One colour per distinct option text over all variants (Base's options first, then the options only Easy or
    No correct answer has), so an option has the same colour in every panel and the legend lists it once."""
    palette = [c for c in OPTION_COLORS if c != "#7f7f7f"]  # no grey: grey means "not answering" elsewhere
    out: dict = {}
    for b in bands.values():
        for opt in b.options:
            if opt not in out:
                out[opt] = palette[len(out) % len(palette)]
    return out


def variant_belief_figure(bands: Mapping[str, BeliefBand], title: Optional[str] = None) -> go.Figure:
    """Variants side by side on the same axes: mean belief per option over answer orders, with its 95% band.

    ``bands[variant]`` is a :class:`~backend.trace.BeliefBand` (``TraceSet.belief_band()``): mean/lo/hi ``[K, n]``,
    options and correct index in the item's original order, and ``n`` runs.  An option has one colour in every
    panel (:func:`variant_option_colors`) and one legend entry (clicking it toggles it in every panel); a band of
    zero width (all answer orders gave the same curve) is not drawn.
    """
    variants = list(bands)
    colors = variant_option_colors(bands)
    fig = make_subplots(rows=1, cols=len(variants), shared_yaxes=True, horizontal_spacing=0.03,
                        subplot_titles=[f"{VARIANT_NAMES.get(v) or text(v)} (n={bands[v].n})" for v in variants])
    shown = set()
    for c, v in enumerate(variants, start=1):
        b = bands[v]
        mean, lo, hi = (np.asarray(a) for a in b)
        x = _steps(mean.shape[0])
        for i, opt in enumerate(b.options):
            is_c = b.correct is not None and i == b.correct
            label = f"{text(opt, 22)}{' ✓' if is_c else ''}"
            band_traces(fig, x, mean[:, i], lo[:, i], hi[:, i], colors[opt], label, width=4 if is_c else 2,
                        row=1, col=c, legendgroup=f"option-{list(colors).index(opt)}", showlegend=opt not in shown)
            shown.add(opt)
    for ann in fig.layout.annotations:  # the subplot titles: smaller than the figure's title
        ann.font = dict(size=13)
    fig.update_yaxes(range=[0, 1.02])
    fig.update_yaxes(title_text="mean belief", row=1, col=1)
    fig.update_xaxes(title_text="recurrent step")
    fig.update_layout(**{**LAYOUT, "height": 460, "hovermode": "closest", "margin": dict(l=55, r=20, t=75, b=40),
                         "legend": dict(LAYOUT["legend"], y=-0.18, title=dict(
                             text="options (✓ correct): "))},
                      title=dict(text=title or "Belief per option, averaged over answer orders (95% band)",
                                 font=dict(size=15), x=0.01, xanchor="left", y=0.98, yanchor="top"))
    return fig


def entropy_bands_figure(bands: Mapping[str, Union[Band, Tuple[np.ndarray, np.ndarray, np.ndarray]]],
                         title: Optional[str] = None, normalised: bool = False) -> go.Figure:
    """Mean entropy vs step per variant with a 95% band (``bands[variant]``: a :class:`~backend.trace.Band` from
    ``TraceSet.entropy_band()``, or any ``(mean, lo, hi)``)."""
    fig = go.Figure()
    for v, (mean, lo, hi) in bands.items():
        x = _steps(len(mean))
        band_traces(fig, x, np.asarray(mean), np.asarray(lo), np.asarray(hi), VARIANT_COLORS.get(v, "#444"),
                    VARIANT_NAMES.get(v) or text(v))
    fig.update_layout(hovermode="closest")
    return _base_layout(fig, title or "Entropy by variant (mean, 95% band)",
                        "normalised entropy" if normalised else "entropy (nats)")


# ---------------------------------------------------------------------------------------------- geometry
# One colour per run (seed or variant) of the geometry plot: ColorBrewer's Dark2, which shares no colour with the
# option colours (a run is not an option).
RUN_COLORS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"]
PATH_MARKER_SIZES = (4, 13)  # marker size at the first and the last step


def run_color(j: int) -> str:
    return RUN_COLORS[j % len(RUN_COLORS)]


def projection_figure(paths: Sequence[Tuple[str, np.ndarray]], title: Optional[str] = None,
                      method: str = "PCA") -> go.Figure:
    """2-D paths of the latent state, one colour and one legend entry per run; the step is the marker size
    (small at step 1, large at the last step); start ○ and end ★ in the run's colour."""
    fig = go.Figure()
    lo, hi = PATH_MARKER_SIZES
    for j, (label, xy) in enumerate(paths):
        label = text(label)
        xy = np.asarray(xy)
        K = len(xy)
        c = run_color(j)
        fig.add_trace(go.Scatter(
            x=xy[:, 0], y=xy[:, 1], mode="lines+markers", name=label, legendgroup=f"run{j}",
            line=dict(color=_rgba(c, 0.55), width=2),
            marker=dict(size=np.linspace(lo, hi, K) if K > 1 else [hi], color=c, opacity=0.85,
                        line=dict(width=0.5, color="white")),
            text=[f"{label}, step {t}" for t in _steps(K)], hovertemplate="%{text}<extra></extra>",
        ))
        fig.add_trace(go.Scatter(x=xy[:1, 0], y=xy[:1, 1], mode="markers", showlegend=False, name=f"{label} start",
                                 legendgroup=f"run{j}",
                                 marker=dict(size=16, symbol="circle-open", color=c, line=dict(width=2.5)),
                                 hovertemplate=f"{label}: start (step 1)<extra></extra>"))
        fig.add_trace(go.Scatter(x=xy[-1:, 0], y=xy[-1:, 1], mode="markers", showlegend=False, name=f"{label} end",
                                 legendgroup=f"run{j}",
                                 marker=dict(size=18, symbol="star", color=c, line=dict(width=1, color="black")),
                                 hovertemplate=f"{label}: end (step {K})<extra></extra>"))
    fig.update_layout(hovermode="closest", legend_title_text="run (click to hide)")
    return _base_layout(fig, title or f"Latent state at the last position ({method}): ○ start, ★ end",
                        f"{method} 2", f"{method} 1")


# Sequential, light (converged: close to the final state) to dark (far from it), monotone in lightness
# (ColorBrewer Blues).
CONVERGENCE_SCALE = ["#f7fbff", "#deebf7", "#c6dbef", "#9ecae1", "#6baed6", "#4292c6", "#2171b5", "#08519c",
                     "#08306b"]


def convergence_heatmap(cmap: np.ndarray, tokens: Sequence[str], title: Optional[str] = None) -> go.Figure:
    """Each prompt position's relative distance to its final state per step, on a log colour scale that is
    sequential (light = at the final state, dark = far from it)."""
    z = np.log10(np.maximum(np.asarray(cmap, dtype=float), 1e-6))
    K, S = z.shape
    labels = [f"{j}: {text(repr(tok))}" for j, tok in enumerate(tokens)]
    lo, hi = float(np.floor(z.min())), float(np.ceil(max(z.max(), z.min() + 1)))
    ticks = np.arange(lo, hi + 1)
    fig = go.Figure(go.Heatmap(
        z=z.T, x=_steps(K), y=labels, colorscale=CONVERGENCE_SCALE, zmin=lo, zmax=hi,
        colorbar=dict(title=dict(text="distance to<br>the final state<br>(relative, log)", side="top"),
                      len=0.75, y=0, yanchor="bottom", tickvals=ticks, ticktext=[f"1e{int(v)}" for v in ticks]),
        hovertemplate="step %{x}<br>%{y}<br>log10 distance %{z:.2f}<extra></extra>",
    ))
    fig.update_yaxes(autorange="reversed", showticklabels=S <= 80, tickfont=dict(size=9))
    fig.update_layout(hovermode="closest")
    fig = _base_layout(fig, title or "Per-token convergence: ‖s_t − s_K‖ / ‖s_K‖ per prompt position (log colour)",
                       "prompt position")
    fig.update_layout(height=max(360, min(900, 14 * S + 120)))
    return fig


# ---------------------------------------------------------------------------------------------- aggregates
def exploration_length_figure(frame, title: Optional[str] = None) -> go.Figure:
    """Box plot of exploration length per variant (converged instances) and never-converged counts in the names.

    ``frame``: one row per instance with columns ``variant`` and ``exploration_end`` (NaN = never converged).
    """
    fig = go.Figure()
    for v in [v for v in ("base", "easy", "nca") if v in set(frame["variant"])] + \
             sorted(set(frame["variant"]) - {"base", "easy", "nca"}):
        sub = frame[frame["variant"] == v]["exploration_end"]
        never = int(sub.isna().sum())
        fig.add_trace(go.Box(y=sub.dropna(), name=f"{VARIANT_NAMES.get(v) or text(v)} (never: {never}/{len(sub)})",
                             marker_color=VARIANT_COLORS.get(v, "#444"), boxmean=True))
    fig.update_layout(showlegend=False, hovermode="closest")
    return _base_layout(fig, title or "Exploration length per variant", "exploration length (steps)", "variant")


def rank_share_figure(shares: Sequence[float], lo=None, hi=None, title: Optional[str] = None) -> go.Figure:
    """Share of abandoned answers at each similarity rank (1 = most stem-similar distractor) vs chance."""
    shares = np.asarray(shares, dtype=float)
    n = len(shares)
    err = None
    if lo is not None and hi is not None:
        err = dict(type="data", symmetric=False, array=np.asarray(hi) - shares, arrayminus=shares - np.asarray(lo))
    fig = go.Figure(go.Bar(x=[f"rank {k}" for k in range(1, n + 1)], y=shares, error_y=err, marker_color="#1f77b4",
                           name="abandoned answers"))
    _add(fig, [hline(1.0 / n, "chance", color="#d62728")],
         [line_label(1.0 / n, f"chance 1/{n}", "chance_label", color="#d62728")])
    fig.update_yaxes(range=[0, 1])
    fig.update_layout(showlegend=False, hovermode="closest")
    return _base_layout(fig, title or "Abandoned answer: similarity rank among distractors", "share",
                        "similarity rank (1 = most similar to the stem)")


def bar_with_ci_figure(labels: Sequence[str], values, lo, hi, title: str, ytitle: str,
                       colors: Optional[Sequence[str]] = None, value_format: Optional[str] = None) -> go.Figure:
    """Horizontal bars with their intervals, the first label on top: long labels read on one line each instead
    of overlapping rotated under the bars.  ``ytitle`` names the value axis (horizontal here); with
    ``value_format`` (a d3 format such as ``".0%"``) each bar is labelled with its value."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    fig = go.Figure(go.Bar(y=list(labels), x=values, orientation="h",
                           marker_color=list(colors) if colors else "#1f77b4",
                           error_x=dict(type="data", symmetric=False, array=np.asarray(hi) - values,
                                        arrayminus=values - np.asarray(lo)),
                           hovertemplate="%{y}: %{x:.3f}<extra></extra>",
                           texttemplate=f"%{{x:{value_format}}}" if value_format else None,
                           textposition="auto" if value_format else None))
    fig.update_layout(showlegend=False, hovermode="closest")
    _base_layout(fig, title, "", ytitle)
    fig.update_yaxes(autorange="reversed", automargin=True)
    fig.update_layout(height=max(260, 110 + 42 * n))
    return fig


def figure_html(fig: go.Figure) -> str:
    """A standalone HTML page (plotly.js inlined: works offline)."""
    return fig.to_html(include_plotlyjs=True, full_html=True)


def chromium_path() -> Optional[str]:
    """The Chromium/Chrome that kaleido uses for PNG export, or None: ``$BROWSER_PATH`` (choreographer's own
    override) when it names a file, else /usr/bin/chromium, else the first Chromium/Chrome on PATH."""
    env = os.environ.get("BROWSER_PATH")
    if env and os.path.isfile(env):
        return env
    if os.path.isfile("/usr/bin/chromium") and os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


PNG_UNAVAILABLE = ("PNG export needs a Chromium/Chrome on the server (Debian: apt-get install -y chromium); "
                   "none was found. Download the standalone HTML instead: it opens offline in any browser and "
                   "its camera button saves a PNG.")
PNG_NO_KALEIDO = ("PNG export needs the kaleido package (pip install -r requirements.txt). Download the standalone "
                  "HTML instead: its camera button saves a PNG.")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PNG_TIMEOUT_S = 60


def figure_png(fig: go.Figure, scale: float = 2.0) -> bytes:
    """PNG bytes of ``fig`` through kaleido 1.x and the Chromium of :func:`chromium_path` (headless; choreographer
    adds --no-sandbox, which running as root needs).  MathJax is off (no network needed).  Any failure is a
    one-line :class:`LoopLensError` saying what to do instead."""
    chrome = chromium_path()
    if chrome is None:
        raise LoopLensError(PNG_UNAVAILABLE)
    try:
        import kaleido  # optional: only PNG export needs it
    except ImportError:
        raise LoopLensError(PNG_NO_KALEIDO) from None
    try:
        spec = fig.to_dict()
        layout = spec.get("layout") or {}
        opts = dict(format="png", scale=scale, width=int(layout.get("width") or 1000),
                    height=int(layout.get("height") or 500))
        png = kaleido.calc_fig_sync(spec, opts=opts, kopts=dict(path=chrome, mathjax=False, timeout=PNG_TIMEOUT_S,
                                                                 enable_sandbox=False))
    except Exception as exc:  # noqa: BLE001 - kaleido/choreographer report a broken browser in many ways
        msg = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
        first = " ".join(msg.split())[:160] or "no message"
        raise LoopLensError(f"PNG export failed with the browser {chrome} ({type(exc).__name__}: {first}). "
                            "Download the standalone HTML instead: its camera button saves a PNG.") from None
    if not isinstance(png, (bytes, bytearray)) or not bytes(png).startswith(PNG_MAGIC):
        raise LoopLensError("PNG export produced no image. Download the standalone HTML instead: its camera button "
                            "saves a PNG.")
    return bytes(png)


# ---------------------------------------------------------------------------------------------- report figures
def report_entropy_figure(rep: dict, normalised: bool = True) -> go.Figure:
    """Mean entropy vs step per variant with 95% bands, from ``backend.report.compute_report``'s dict."""
    df = pd.DataFrame(rep.get("entropy_curves", []))
    bands = {}
    if len(df):
        sfx = "_norm" if normalised else ""
        for v in [v for v in ("base", "easy", "nca") if v in set(df["variant"])]:
            g = df[df["variant"] == v].sort_values("step")
            bands[v] = tuple(g[c + sfx].astype(float).to_numpy() for c in ("mean", "lo", "hi"))
    fig = entropy_bands_figure(bands, title="Entropy by variant (mean, 95% item-bootstrap band)",
                               normalised=normalised)
    low = {}
    if len(df) and "low_mass_share" in df.columns:
        for v in bands:
            g = df[df["variant"] == v].sort_values("step")
            last = g["low_mass_share"].iloc[-1] if len(g) else None
            if last is not None and not pd.isna(last):
                low[v] = float(last)
    if low:
        thr = (rep.get("meta") or {}).get("mass_threshold", MASS_THRESHOLD)
        fig.update_layout(legend=dict(title=dict(side="top", text=(
            f"below the mass threshold {thr:g} at the last step:<br>" +
            ", ".join(f"{VARIANT_NAMES.get(v) or text(v)} {x:.0%}" for v, x in low.items())))))
    return fig


def report_exploration_pair_figure(rep: dict) -> go.Figure:
    """Per item: mean exploration length Base (x) vs Easy (y), converged instances; the diagonal is 'no change'."""
    rows = [r for r in (rep.get("exploration") or {}).get("per_item", []) if r.get("base") is not None
            and r.get("easy") is not None]
    fig = go.Figure()
    if rows:
        x = [r["base"] for r in rows]
        y = [r["easy"] for r in rows]
        fig.add_trace(go.Scatter(x=x, y=y, mode="markers", name="items", text=[text(r["item_id"]) for r in rows],
                                 marker=dict(size=7, color="#1f77b4", opacity=0.6),
                                 hovertemplate="%{text}: base %{x:.1f}, easy %{y:.1f}<extra></extra>"))
        hi = max(max(x), max(y), 1)
        fig.add_trace(go.Scatter(x=[0, hi], y=[0, hi], mode="lines", name="same length",
                                 line=dict(color="gray", dash="dot")))
    pair = (rep.get("exploration") or {}).get("pair") or {}
    es = (pair.get("easy_shorter") or {}).get("value")
    sub = f"<br>Easy explores {es:.0%} shorter (converged instances)" if es is not None else ""
    fig.update_layout(hovermode="closest")
    _base_layout(fig, "Exploration length per item: Base vs Easy" + sub, "Easy (steps)", "Base (steps)")
    fig.update_layout(margin=dict(t=70))
    return fig


def report_rank_figure(rep: dict) -> go.Figure:
    """Similarity rank shares (Base) with intervals: the abandoned answers beside the two baselines -- the model's
    other wrong choices and its frontrunner -- and chance (1/3)."""
    base = (rep.get("variants") or {}).get("base") or next(
        (g for g in rep.get("groups", []) if g.get("variant") == "base" and g.get("domain") == "all"), {})
    rows = {r["key"]: r for r in rep.get("headline", [])}
    series = [("abandoned answers", "#1f77b4", [rows.get(f"abandoned_rank_{j}") or {} for j in (1, 2, 3)])]
    for name, key, color in (("wrong choices", "wrong_choice_similarity_ranks", "#7f7f7f"),
                             ("frontrunner", "frontrunner_similarity_ranks", "#ff7f0e")):
        d = base.get(key)
        if isinstance(d, dict):
            series.append((f"{name} (n {d.get('n', 0)})", color, [d.get(f"rank_{j}") or {} for j in (1, 2, 3)]))
    fig = go.Figure()
    x = [f"rank {k}" for k in (1, 2, 3)]
    for name, color, sts in series:
        v = np.array([s.get("value") if s.get("value") is not None else np.nan for s in sts], dtype=float)
        lo = np.array([s.get("lo") if s.get("lo") is not None else np.nan for s in sts], dtype=float)
        hi = np.array([s.get("hi") if s.get("hi") is not None else np.nan for s in sts], dtype=float)
        fig.add_trace(go.Bar(x=x, y=v, name=name, marker_color=color,
                             error_y=dict(type="data", symmetric=False, array=hi - v, arrayminus=v - lo)))
    _add(fig, [hline(1 / 3, "chance", color="#d62728")],
         [line_label(1 / 3, "chance 1/3", "chance_label", color="#d62728")])
    if np.isnan(np.asarray([list(b.y) for b in fig.data], dtype=float)).all():  # nothing measured
        notes = {(r.get("note") or "") for k, r in rows.items() if k.startswith("abandoned_rank_")} - {""}
        _add(fig, [], [dict(xref="paper", yref="paper", x=0.5, y=0.6, showarrow=False, font=dict(size=13, color="#666"),
                            text="not measured" + (f": {text(sorted(notes)[0], 60)}" if notes else ""),
                            name="not_measured")])
    fig.update_yaxes(range=[0, 1])
    fig.update_layout(barmode="group", hovermode="closest")
    _base_layout(fig, "Similarity rank among the distractors (Base):<br>abandoned answers, other wrong choices, "
                 "frontrunner", "share", "similarity rank (1 = most similar to the stem)")
    fig.update_layout(margin=dict(t=70))
    return fig


def report_backtracking_figure(rep: dict) -> go.Figure:
    """Accuracy with vs without backtracking (Base), and where backtracks end, with intervals."""
    groups = {(g["variant"], g["domain"]): g for g in rep.get("groups", [])}
    base = groups.get(("base", "all"), {})
    labels, v, lo, hi = [], [], [], []
    for key, label in (("acc_backtracked", "accuracy, backtracked"), ("acc_not_backtracked", "accuracy, no backtrack"),
                       ("backtrack_rate", "backtracking rate")):
        s = base.get(key) or {}
        labels.append(label)
        v.append(s.get("value") if s.get("value") is not None else np.nan)
        lo.append(s.get("lo") if s.get("lo") is not None else np.nan)
        hi.append(s.get("hi") if s.get("hi") is not None else np.nan)
    for d in rep.get("destinations", []):
        if d.get("variant") == "base":
            labels.append(f"backtracks ending {text(d['destination'])}")
            v.append(d.get("value") if d.get("value") is not None else np.nan)
            lo.append(d.get("lo") if d.get("lo") is not None else np.nan)
            hi.append(d.get("hi") if d.get("hi") is not None else np.nan)
    fig = bar_with_ci_figure(labels, v, lo, hi, "Backtracking (Base): accuracy and destination", "share (95% CI)",
                             colors=["#2ca02c", "#7f7f7f", "#1f77b4"] + ["#9467bd"] * (len(labels) - 3),
                             value_format=".0%")
    fig.update_xaxes(range=[0, 1.02], tickformat=".0%")
    return fig


def report_exploration_hist_figure(rep: dict) -> go.Figure:
    fig = go.Figure()
    for v, h in (rep.get("exploration_hist") or {}).items():
        fig.add_trace(go.Bar(x=h["length"], y=h["count"], name=f"{VARIANT_NAMES.get(v) or text(v)} "
                             f"(never: {h['never_converged']}/{h['n']})", marker_color=VARIANT_COLORS.get(v, "#444"),
                             opacity=0.75))
    fig.update_layout(barmode="overlay", hovermode="closest")
    return _base_layout(fig, "Exploration length distribution (never-converged counted separately)", "instances",
                        "exploration length (steps)")
