"""What the app says about runs in words and tables: one run's metric summary (with the similarity ranks of its
abandoned answers), the agreement of several seeds, and the comparison of an item's variants over answer orders.

Inputs are :class:`~backend.trace.Trace` / :class:`~backend.trace.TraceSet` objects; outputs are plain strings and
pandas tables the pages show as they are.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from .errors import LoopLensError
from .stats import bootstrap_ci
from .settings import LETTERS
from .similarity import default_similarity_path, distractor_rank, load_similarity
from .trace import Trace, TraceSet

N_BOOT = 1000  # bootstrap resamples of the app's intervals (fast enough to compute on a page)


def metric_summary(trace: Trace, option_ranks: Optional[Mapping[int, int]] = None) -> Dict[str, str]:
    """The Explore page's metric panel as label -> text."""
    m = trace.metrics
    fa = m.final_answer
    out = {
        "Final answer": f"{LETTERS[fa]}) {trace.options[fa]}",
        "Correct?": "no correct option" if trace.correct is None else ("yes" if m.is_correct else
                                                                        f"no (correct: {LETTERS[trace.correct]})"),
        "Exploration length": f"{m.exploration_end} steps" if m.converged else "never converged",
        "Commitments": ", ".join(f"{LETTERS[c.option]} (steps {c.start}-{c.end})" for c in m.commitments) or "none",
        "Backtracks": ", ".join(f"{LETTERS[a.option]} -> {LETTERS[b.option]} (step {b.start})"
                                for a, b in m.backtracks) or "none",
    }
    parts = []
    for a in m.abandoned:
        r = (option_ranks or {}).get(a)
        parts.append(f"{LETTERS[a]}) {trace.options[a]}" + (f" (similarity rank {r})" if r else ""))
    out["Abandoned answers"] = "; ".join(parts) or "none"
    return out


def option_similarity_ranks(similarity: Optional[dict], trace: Trace) -> Dict[int, int]:
    """Shown option index -> similarity rank among the variant's distractors (from a precomputed file)."""
    if not similarity or not trace.item_id:
        return {}
    out = {}
    for i, opt in enumerate(trace.options):
        if trace.correct is not None and i == trace.correct:
            continue
        try:
            r = distractor_rank(similarity, trace.item_id, opt, trace.variant or "base")
        except LoopLensError:
            r = None
        if r is not None:
            out[i] = int(r)
    return out


def similarity_for(bench_path: Optional[Path]) -> Optional[dict]:
    """The precomputed similarity file next to a benchmark, if present and readable (None otherwise)."""
    if bench_path is None:
        return None
    p = default_similarity_path(bench_path)
    if not p.is_file():
        return None
    try:
        return load_similarity(p)
    except LoopLensError:
        return None


def seed_robustness(traces: Sequence[Trace]) -> Tuple[pd.DataFrame, str]:
    """Per-seed table and a sentence on agreement (e.g. a backtrack under only some seeds)."""
    rows = []
    for t in traces:
        m = t.metrics
        rows.append({"seed": t.seed, "final answer": LETTERS[m.final_answer],
                     "correct": None if m.is_correct is None else bool(m.is_correct),
                     "exploration length": m.exploration_end if m.converged else None,
                     "backtracks": ", ".join(f"{LETTERS[a.option]} -> {LETTERS[b.option]}" for a, b in m.backtracks),
                     "final entropy": round(float(m.entropy[-1]), 4)})
    n = len(traces)
    finals = sorted({LETTERS[t.metrics.final_answer] for t in traces})
    bt = [t.seed for t in traces if t.metrics.backtracked]
    parts = [f"All {n} seeds end on {finals[0]}." if len(finals) == 1 else
             f"The seeds disagree on the final answer ({', '.join(finals)})."]
    if not bt:
        parts.append("No seed backtracks.")
    elif len(bt) == n:
        parts.append(f"All {n} seeds backtrack.")
    else:
        parts.append(f"A backtrack occurs under only {len(bt)} of {n} seeds (seeds {', '.join(map(str, bt))}): "
                     "it may be seed noise rather than a property of the question.")
    return pd.DataFrame(rows), " ".join(parts)


def _ci_text(values, n_boot: int) -> str:
    v, lo, hi = bootstrap_ci(values, n_boot=n_boot)
    return f"{float(v):.0%} [{float(lo):.0%}, {float(hi):.0%}]"


def variant_table(runs: TraceSet, n_boot: int = N_BOOT) -> pd.DataFrame:
    """One row per variant: accuracy, backtracking, exploration, entropy over the answer orders."""
    rows = []
    for v, group in runs.by_variant().items():
        ms = [t.metrics for t in group]
        n = len(ms)
        ex = [m.exploration_end for m in ms if m.converged]
        acc = [float(m.is_correct) for m in ms if m.is_correct is not None]
        row = {"variant": v, "permutations": n,
               "accuracy": _ci_text(acc, n_boot) if acc else "n/a (no correct option)",
               "backtracking": _ci_text([float(m.backtracked) for m in ms], n_boot),
               "mean exploration length": f"{np.mean(ex):.1f}" if ex else "—",
               "never converged": f"{n - len(ex)}/{n}",
               "final entropy (mean)": f"{np.mean([m.entropy[-1] for m in ms]):.3f}"}
        # where the final answers land, in the item's original option order
        finals = [int(list(t.order)[t.metrics.final_answer]) if t.order else t.metrics.final_answer for t in group]
        counts = np.bincount(finals, minlength=group[0].n_options)
        row["final answers (original order)"] = ", ".join(f"{LETTERS[j]}:{c}" for j, c in enumerate(counts) if c)
        rows.append(row)
    return pd.DataFrame(rows)
