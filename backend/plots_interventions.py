"""Figures for interventions, latent dynamics and exit rules: pure functions, data in, figure out.

Conventions (tests assert on them), beside those of ``backend.plots``:

* counterfactual belief: the baseline's traces are solid and named ``"... (baseline)"``, the intervened run's are
  dashed in the same option colours and named ``"... (intervened)"``; the intervention step is a shape named
  ``"intervention"``, the step where the run rejoins the baseline's answer a shape named ``"rejoin"``;
* dynamics panel: the same x axis as the belief (1-based steps); each backtrack step a shape named
  ``"backtrack"`` in every row;
* stop marks on a belief figure: one shape per rule named ``"stop:<rule label>"`` (toggle = add or not).
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .dynamics import Dynamics
from .counterfactual import change_summary
from .plots import (LABEL_PLOT_PX, LAYOUT, VARIANT_COLORS, VARIANT_NAMES, band_traces, belief_figure, label_rows,
                    option_color, option_name)
from .settings import LETTERS

STOP_COLORS = {"kl": "#636efa", "entropy": "#00cc96", "argmax": "#ab63fa", "latent": "#ffa15a",
               "exit_gate": "#19d3f3", "exploration": "#000000", "last": "#7f7f7f", "oracle": "#ef553b"}
SIGMA_DASH = ["solid", "dash", "dot", "dashdot", "longdash"]


def _layout(fig: go.Figure, title: str, ytitle: Optional[str], height: int = 420, **extra) -> go.Figure:
    fig.update_layout(title=dict(text=title, font=dict(size=15), x=0.01, xanchor="left"),
                      **{**LAYOUT, "height": height, **extra})
    if ytitle is not None:
        fig.update_yaxes(title_text=ytitle)
    return fig


def _vline(x, name: str, color: str = "black", dash: str = "dash", width: float = 2, yref: str = "paper",
           xref: str = "x") -> dict:
    return dict(type="line", xref=xref, yref=yref, x0=x, x1=x, y0=0, y1=1, name=name,
                line=dict(color=color, width=width, dash=dash))


# ---------------------------------------------------------------------------------------------- counterfactual
def counterfactual_figure(intervened, baseline, intervention, comparison: Mapping,
                          title: Optional[str] = None) -> go.Figure:
    """The intervened run's belief (dashed) over the baseline's (solid, same colours), the intervention step
    marked, and what changed in the title line (final answer, rejoin step)."""
    b = np.asarray(baseline.probs)
    p = np.asarray(intervened.probs)
    K, n = b.shape
    x = np.arange(1, K + 1)
    fig = go.Figure()
    for i in range(n):
        is_c = baseline.correct is not None and i == baseline.correct
        name = option_name(i, baseline.options[i], baseline.correct)
        fig.add_trace(go.Scatter(x=x, y=b[:, i], mode="lines", name=f"{name} (baseline)", legendgroup=f"o{i}",
                                 line=dict(color=option_color(i), width=3 if is_c else 2),
                                 hovertemplate=f"{LETTERS[i]} baseline: %{{y:.3f}}<extra></extra>"))
        fig.add_trace(go.Scatter(x=x, y=p[:, i], mode="lines+markers", name=f"{name} (intervened)",
                                 legendgroup=f"o{i}", line=dict(color=option_color(i), width=3 if is_c else 2,
                                                                 dash="dash"),
                                 marker=dict(size=4), hovertemplate=f"{LETTERS[i]} intervened: %{{y:.3f}}<extra></extra>"))
    k = int(comparison["at"])
    shapes = [_vline(k, "intervention", color="#444", dash="dot")]
    ann = [dict(x=k, y=1.08, xref="x", yref="y", showarrow=False, xanchor="left", name="intervention_label",
                text=f" {intervention.label()}", font=dict(size=11))]
    if comparison.get("rejoin_step") is not None:
        shapes.append(_vline(comparison["rejoin_step"], "rejoin", color="#2ca02c", dash="dash", width=1.5))
    fig.update_layout(shapes=shapes, annotations=ann)
    fig.update_yaxes(range=[0, 1.14])
    fig.update_xaxes(title_text="recurrent step")
    return _layout(fig, title or change_summary(comparison), "belief (renormalised over options)")


# ---------------------------------------------------------------------------------------------- dynamics
def dynamics_figure(dyn: Dynamics, backtrack_steps: Sequence[int] = (), title: Optional[str] = None) -> go.Figure:
    """Three rows on the belief's x axis: relative step size (log), cosine between consecutive updates,
    relative distance to the final state; backtrack steps marked in every row."""
    d = dyn.mean_over_positions()
    K = d.n_steps
    x = np.arange(1, K + 1)
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=["step size ||s_t - s_(t-1)|| / ||s_t||", "cosine of consecutive updates",
                                        "distance to the final state (relative)"])
    ss = np.where(d.step_size > 0, d.step_size, np.nan)
    fig.add_trace(go.Scatter(x=x, y=ss, mode="lines+markers", name="step size", line=dict(color="#1f77b4")), 1, 1)
    fig.add_trace(go.Scatter(x=x, y=d.update_cos, mode="lines+markers", name="update cosine",
                             line=dict(color="#9467bd")), 2, 1)
    fig.add_trace(go.Scatter(x=x, y=d.dist_final, mode="lines+markers", name="distance to final",
                             line=dict(color="#2ca02c")), 3, 1)
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_yaxes(range=[-1.05, 1.05], row=2, col=1)
    shapes = []
    for t in backtrack_steps:
        for r in (1, 2, 3):
            ax = "" if r == 1 else str(r)
            shapes.append(_vline(t, "backtrack", color="#d62728", dash="dash", width=1.5, yref=f"y{ax} domain",
                                 xref=f"x{ax}"))
    fig.update_layout(shapes=shapes, showlegend=False)
    fig.update_xaxes(title_text="recurrent step", row=3, col=1)
    fig.update_xaxes(range=[0.5, K + 0.5])
    return _layout(fig, title or "Latent dynamics (last position)", None, height=520, hovermode="x")


def event_profile_figure(profiles: Mapping[str, Mapping], quantity_title: str = "step size",
                         title: Optional[str] = None) -> go.Figure:
    """Mean of a quantity at steps relative to backtracks (0 = the backtrack step), one band per variant.

    ``profiles[variant]`` is an :class:`backend.dynamics.EventProfile` ``to_dict()``."""
    fig = go.Figure()
    for v, p in profiles.items():
        x = np.asarray(p["offsets"])
        f = lambda a: np.array([np.nan if y is None else y for y in a], dtype=float)  # noqa: E731
        band_traces(fig, x, f(p["mean"]), f(p["low"]), f(p["high"]), VARIANT_COLORS.get(v, "#444"),
                    f"{VARIANT_NAMES.get(v, v)} (n={p['n_events']} backtracks)")
    fig.update_layout(shapes=[_vline(0, "backtrack", color="#d62728", dash="dash", width=1.5)])
    fig.update_xaxes(title_text="steps relative to the backtrack")
    return _layout(fig, title or f"{quantity_title} around backtracks (mean, 95% band)", quantity_title)


# ---------------------------------------------------------------------------------------------- exit rules
def with_stop_marks(fig: go.Figure, stops: Sequence, y: float = 0.035) -> go.Figure:
    """A copy of a belief figure with the rules' stop steps marked at the foot of the plot: per rule a short tick
    in its colour (shape ``stop:<label>``), stacked when several rules stop at the same step; one dotted line per
    distinct step (shape ``stop_step``) and a numbered tag (1, 2, ... in step order; the rules in its hover) over
    each stack, tags of near steps staggered so that none overlap."""
    out = go.Figure(fig)
    shapes, ann = list(out.layout.shapes), list(out.layout.annotations)
    by_step: dict = {}
    for s in stops:
        by_step.setdefault(s.step, []).append(s)
    log = out.layout.xaxis.type == "log"
    xs = sorted(by_step)
    K = max(xs + [len(out.data[0].x) if out.data and out.data[0].x is not None else 1])
    lo, hi = (np.log10(0.8), np.log10(K + 0.6)) if log else (0.5, K + 0.5)
    frac = [((np.log10(x) if log else x) - lo) / (hi - lo) for x in xs]
    half = 9 / LABEL_PLOT_PX
    rows = label_rows([(f - half, f + half) for f in frac])
    for k, (step, r) in enumerate(zip(xs, rows), start=1):
        rules = by_step[step]
        shapes.append(_vline(step, "stop_step", color="#999", dash="dot", width=1))
        for j, s in enumerate(rules):
            label = f"{s.rule} {s.setting}".strip()
            shapes.append(dict(type="line", xref="x", yref="paper", x0=step, x1=step, y0=j * y, y1=(j + 1) * y,
                               name=f"stop:{label}", line=dict(color=STOP_COLORS.get(s.rule, "#444"), width=6)))
        names = ", ".join(f"{s.rule} {s.setting}".strip() + ("" if s.fired else " (never fired)") for s in rules)
        ann.append(dict(x=float(np.log10(step)) if log else step, y=len(rules) * y + 0.01 + 0.07 * r, xref="x",
                        yref="paper", yanchor="bottom", showarrow=False, text=f"<b>{k}</b>",
                        font=dict(size=10, color="#333"), bgcolor="rgba(255,255,255,0.9)", bordercolor="#999",
                        borderwidth=1, borderpad=1, hovertext=f"step {step}: {names}", name="stop_label"))
    out.update_layout(shapes=shapes, annotations=ann)
    return out


def belief_with_stops_figure(trace, stops: Sequence, title: Optional[str] = None) -> go.Figure:
    return with_stop_marks(belief_figure(trace, title=title), stops)


def exit_rule_figure(rows: Sequence[Mapping], title: Optional[str] = None) -> go.Figure:
    """Accuracy against mean steps used, one point per rule and setting, one colour per variant; the oracle
    (the bound) as a star.  Variants without a correct option (NCA) are left out (no accuracy)."""
    fig = go.Figure()
    for v in dict.fromkeys(r["variant"] for r in rows):
        rs = [r for r in rows if r["variant"] == v and r["accuracy"] is not None]
        if not rs:
            continue
        color = VARIANT_COLORS.get(v, "#444")
        labels = [f"{r['rule']} {r['setting']}".strip() for r in rs]
        fig.add_trace(go.Scatter(
            x=[r["mean_steps"] for r in rs], y=[r["accuracy"] for r in rs], mode="markers+text",
            name=VARIANT_NAMES.get(v, v), text=labels, textposition="top center", textfont=dict(size=9),
            marker=dict(color=color, size=[14 if r["rule"] == "oracle" else 9 for r in rs],
                        symbol=["star" if r["rule"] == "oracle" else "circle" for r in rs]),
            customdata=[[r["never_stopped"]] for r in rs],
            hovertemplate="%{text}: %{x:.1f} steps, accuracy %{y:.3f}, never stopped %{customdata[0]:.0%}"
                          "<extra></extra>"))
    fig.update_xaxes(title_text="mean steps used")
    fig.update_yaxes(range=[0, 1.05])
    return _layout(fig, title or "Exit rules: accuracy against compute (star: the oracle bound)", "accuracy",
                   hovermode="closest")


def ponr_figure(rows: Sequence[Mapping], group: str = "all", title: Optional[str] = None) -> go.Figure:
    """Point-of-no-return curve: share of instances whose final answer changes under noise at step k, per
    variant (colour) and sigma (dash), with 95% bands."""
    fig = go.Figure()
    sel = [r for r in rows if r["group"] == group and r["share"] is not None]
    sigmas = sorted({r["sigma"] for r in sel})
    for v in dict.fromkeys(r["variant"] for r in sel):
        for si, s in enumerate(sigmas):
            rs = sorted((r for r in sel if r["variant"] == v and r["sigma"] == s), key=lambda r: r["at"])
            if not rs:
                continue
            x = np.array([r["at"] for r in rs])
            band_traces(fig, x, np.array([r["share"] for r in rs]), np.array([r["low"] for r in rs]),
                        np.array([r["high"] for r in rs]), VARIANT_COLORS.get(v, "#444"),
                        f"{VARIANT_NAMES.get(v, v)}, sigma {s:g}", dash=SIGMA_DASH[si % len(SIGMA_DASH)])
    fig.update_yaxes(range=[-0.02, 1.02])
    fig.update_xaxes(title_text="step k of the noise")
    return _layout(fig, title or f"Point of no return: final answer changed by noise at step k ({group})",
                   "share of instances whose final answer changes", hovermode="closest")
