"""Figures that compare models on one question: pure functions, data in, figure out (no Streamlit, no torch).

Models of different families are trained for different numbers of recurrent steps (Ouro 4, Huginn 32, the
shipped cups models 16), so the step axis is by default a **fraction of each model's trained depth**
(``step / trained_depth``: 1 = the depth it was trained for) rather than raw steps; ``normalise=False`` plots raw
steps.  Conventions (tests assert on them):

* one colour per model (``model_color(i)``), the same in both panels; one legend entry per model, whose name
  says its trained depth (``"cups-mini (trained depth 16)"``);
* the top panel is each model's belief in the correct option (in the item's shown order, the same for every
  model); with no correct option, the belief in the model's own final answer, and the title says which;
* the bottom panel is the entropy of each model's belief over the options (nats);
* steps whose total option mass is below the mass threshold ("not answering") have grey markers;
* with ``normalise``, a dashed vertical line named ``"trained_depth"`` at x = 1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .plots import LAYOUT, LOW_MASS_COLOR, text
from .settings import LETTERS
from .trace import Trace

# Colour-blind-safe qualitative palette (Okabe-Ito, black last), distinct from the option colours' meaning.
MODEL_COLORS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442", "#000000"]
MODEL_DASHES = ["solid", "dash", "dot", "dashdot"]


def model_color(i: int) -> str:
    return MODEL_COLORS[i % len(MODEL_COLORS)]


@dataclass
class ModelRun:
    """One model's trace of the question, with the depth it was trained for."""

    name: str
    trace: Trace
    trained_depth: int

    @property
    def label(self) -> str:
        return f"{text(self.name, 40)} (trained depth {self.trained_depth})"

    def x(self, normalise: bool = True) -> np.ndarray:
        steps = np.arange(1, self.trace.steps + 1)
        return steps / float(self.trained_depth) if normalise else steps


def target_option(run: ModelRun) -> int:
    """The option whose belief the top panel shows: the correct one, else the model's final answer."""
    t = run.trace
    return t.correct if t.correct is not None else t.metrics.final_answer


def models_figure(runs: Sequence[ModelRun], normalise: bool = True, title: Optional[str] = None) -> go.Figure:
    """Belief in the correct option (top) and belief entropy (bottom) of each model, against the fraction of
    its trained depth (``normalise``) or raw steps."""
    if not runs:
        raise ValueError("models_figure needs at least one model run")
    has_correct = runs[0].trace.correct is not None
    top = "belief in the correct option" if has_correct else "belief in the model's own final answer"
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08, row_heights=[0.6, 0.4])
    xname = "fraction of trained depth" if normalise else "step"
    for i, run in enumerate(runs):
        t, m = run.trace, run.trace.metrics
        x = run.x(normalise)
        steps = np.arange(1, t.steps + 1)
        opt = target_option(run)
        low = m.low_mass if m.low_mass is not None else np.zeros(t.steps, dtype=bool)
        markers = [LOW_MASS_COLOR if low[k] else model_color(i) for k in range(t.steps)]
        line = dict(color=model_color(i), width=2.5, dash=MODEL_DASHES[i // len(MODEL_COLORS) % len(MODEL_DASHES)])
        custom = np.stack([steps, np.full(t.steps, run.trained_depth), t.letter_mass], axis=1)
        hover = (f"{run.label}<br>step %{{customdata[0]:.0f}} of trained depth %{{customdata[1]:.0f}} "
                 f"(%{{x:.2f}})<br>" if normalise else f"{run.label}<br>step %{{x}}<br>")
        fig.add_trace(go.Scatter(
            x=x, y=t.probs[:, opt], mode="lines+markers", name=run.label, legendgroup=f"m{i}",
            line=line, marker=dict(size=5, color=markers), customdata=custom,
            hovertemplate=hover + f"belief in {LETTERS[opt]}: %{{y:.3f}}<br>option mass %{{customdata[2]:.3f}}"
                                  "<extra></extra>"), row=1, col=1)
        fig.add_trace(go.Scatter(
            x=x, y=m.entropy, mode="lines+markers", name=run.label, legendgroup=f"m{i}", showlegend=False,
            line=line, marker=dict(size=4, color=markers), customdata=custom,
            hovertemplate=hover + "entropy %{y:.3f} nats<extra></extra>"), row=2, col=1)
    if normalise:
        for row in (1, 2):
            fig.add_vline(x=1.0, line=dict(color="#555", width=1.5, dash="dash"), row=row, col=1,
                          name="trained_depth")
        fig.add_annotation(x=1.0, y=1.0, xref="x", yref="paper", text="trained depth", showarrow=False,
                           xanchor="center", yanchor="bottom", font=dict(size=11, color="#555"),
                           name="trained_depth_label")
    any_low = any(r.trace.metrics.low_mass is not None and r.trace.metrics.low_mass.any() for r in runs)
    layout = {**LAYOUT, "height": 560, "hovermode": "closest",
              "legend": {**LAYOUT["legend"], "y": -0.12}}
    fig.update_layout(title=dict(text=title or f"{top[0].upper()}{top[1:]} and belief entropy, by model",
                                 font=dict(size=15), x=0.01, xanchor="left"), **layout)
    if any_low:
        fig.update_layout(legend_title_text="grey markers: option mass below the threshold (not answering)")
    fig.update_yaxes(title_text=top, range=[0, 1.05], row=1, col=1)
    fig.update_yaxes(title_text="entropy (nats)", rangemode="tozero", row=2, col=1)
    fig.update_xaxes(title_text=xname, row=2, col=1)
    return fig


def models_table(runs: Sequence[ModelRun]) -> List[dict]:
    """One row per model: depth, steps run, final answer, correctness, exploration end (step and fraction)."""
    rows = []
    for run in runs:
        t, m = run.trace, run.trace.metrics
        end = m.exploration_end
        rows.append({
            "model": run.name, "trained depth": run.trained_depth, "steps run": t.steps,
            "final answer": LETTERS[m.final_answer],
            "correct": None if m.is_correct is None else ("yes" if m.is_correct else "no"),
            "exploration end (step)": end,
            "exploration end (x depth)": None if end is None else round(end / run.trained_depth, 2),
            "backtracks": len(m.backtracks),
        })
    return rows
