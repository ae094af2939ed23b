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
from .metrics import backtrack_verdict
from .stats import bootstrap_ci
from .settings import LETTERS, SENSITIVITY_RUN_LENGTHS
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
        "Option mass": _mass_text(m),
        "Exploration length": (f"{m.exploration_end} steps" + (" (moves again later)" if _moves_later(m) else "")
                               if m.converged else "never converged"),
        "Exploration end": _exploration_text(m),
        "Commitments": ", ".join(f"{LETTERS[c.option]} (steps {c.start}-{c.end})" for c in m.commitments) or "none",
        "Backtracks": ", ".join(f"{LETTERS[a.option]} -> {LETTERS[b.option]} (step {b.start})"
                                for a, b in m.backtracks) or "none",
        "Backtrack by run length": run_length_text(m.argmax, int(m.params.get("run_length", 3))),
    }
    parts = []
    for a in m.abandoned:
        r = (option_ranks or {}).get(a)
        parts.append(f"{LETTERS[a]}) {trace.options[a]}" + (f" (similarity rank {r})" if r else ""))
    out["Abandoned answers"] = "; ".join(parts) or "none"
    return out


def _mass_text(m) -> str:
    if m.low_mass is None:
        return "unknown (no option mass recorded)"
    n = m.n_low_mass
    text = (f"{n} of {m.n_steps} steps below the mass threshold {m.mass_threshold:g}" +
            (" (greyed: not answering, their belief is renormalised noise)" if n else ""))
    if not m.answering:
        text += ("; the mass does not stay above it from exploration end on, so this run's belief statistics "
                 "rest on steps that do not answer")
    return text


def _moves_later(m) -> bool:
    return m.later_argmax_change is not None or m.later_kl_step is not None


def _exploration_text(m) -> str:
    thr, win = m.params.get("kl_threshold"), int(m.params.get("kl_window", 3))
    if not m.converged:
        return f"never converged: the step KL never stays <= {thr:g} for {win} steps"
    text = f"step {m.exploration_end}, the first step the KL stays <= {thr:g} for {win} steps"
    later = []
    if m.later_argmax_change is not None:
        later.append(f"the argmax changes again at step {m.later_argmax_change}")
    elif m.later_kl_step is not None:
        later.append(f"the step KL exceeds {thr:g} again at step {m.later_kl_step}")
    if m.backtracks_after_exploration_end:
        later.append(f"{len(m.backtracks_after_exploration_end)} backtrack(s) land after it")
    return text + ("; not final: " + ", ".join(later) if later else "; no later movement in this run")


def run_length_text(argmax, run_length: int = 3) -> str:
    """Whether the paper's backtrack rule fires at each run length 2-5 (e.g. "holds for run length <= 3 only")."""
    hits = [r for r in SENSITIVITY_RUN_LENGTHS if backtrack_verdict(argmax, r)[0]]
    allr = list(SENSITIVITY_RUN_LENGTHS)
    if not hits:
        return f"no backtrack at any run length {allr[0]}-{allr[-1]}"
    if hits == allr:
        return f"a backtrack at every run length {allr[0]}-{allr[-1]}"
    if hits == allr[:len(hits)]:
        return (f"this backtrack holds for run length <= {hits[-1]} only" if run_length <= hits[-1] else
                f"no backtrack at run length {run_length}; one at run length <= {hits[-1]}")
    return "a backtrack at run length " + ", ".join(map(str, hits)) + " only"


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
        robust = 2 * len(bt) > n
        parts.append(f"A backtrack occurs under only {len(bt)} of {n} seeds (seeds {', '.join(map(str, bt))}): " +
                     ("it holds under a majority of seeds (robust), but not all." if robust else
                      "it does not hold under a majority of seeds (not robust): it may be seed noise rather than a "
                      "property of the question."))
    return pd.DataFrame(rows), " ".join(parts)


def _ci_text(values, n_boot: int) -> str:
    v, lo, hi = bootstrap_ci(values, n_boot=n_boot)
    return f"{float(v):.0%} [{float(lo):.0%}, {float(hi):.0%}]"


def _low_share(ms) -> str:
    known = [m for m in ms if m.low_mass is not None]
    if not known:
        return "unknown"
    steps = sum(int(m.low_mass.sum()) for m in known)
    total = sum(m.n_steps for m in known)
    return f"{steps / total:.0%} (threshold {known[0].mass_threshold:g})"


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
               "restricted mean exploration (censored at K)":
                   f"{np.mean([m.exploration_end if m.converged else m.n_steps for m in ms]):.1f}",
               "never converged": f"{n - len(ex)}/{n}",
               "steps below the mass threshold": _low_share(ms),
               "final entropy (mean)": f"{np.mean([m.entropy[-1] for m in ms]):.3f}"}
        # where the final answers land, in the item's original option order
        finals = [int(list(t.order)[t.metrics.final_answer]) if t.order else t.metrics.final_answer for t in group]
        counts = np.bincount(finals, minlength=group[0].n_options)
        row["final answers (original order)"] = ", ".join(f"{LETTERS[j]}:{c}" for j, c in enumerate(counts) if c)
        rows.append(row)
    return pd.DataFrame(rows)
