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
from .settings import KL_THRESHOLD, KL_WINDOW, LETTERS, RUN_LENGTH, SENSITIVITY_RUN_LENGTHS
from .similarity import default_similarity_path, distractor_rank, load_similarity
from .trace import Trace, TraceSet

N_BOOT = 1000  # bootstrap resamples of the app's intervals (fast enough to compute on a page)


def plural(n, word: str, many: Optional[str] = None) -> str:
    """``"1 step"``, ``"2 steps"``, ``"0 steps"`` (``many``: an irregular plural, e.g. ``plural(2, "is", "are")``)."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def mass_value(x: float) -> str:
    """An option mass for a metric: two decimals, or scientific notation when it is below 0.01."""
    return f"{x:.2f}" if x >= 0.01 else f"{x:.1e}"


def _params(m) -> Tuple[float, int, int]:
    """(KL threshold, KL window, run length) in force for these metrics."""
    p = m.params or {}
    return (float(p.get("kl_threshold", KL_THRESHOLD)), int(p.get("kl_window", KL_WINDOW)),
            int(p.get("run_length", RUN_LENGTH)))


def metric_help(trace: Trace) -> Dict[str, str]:
    """What each number of Explore's metric panel means, one definition per label, with the thresholds in force
    for this trace's metrics (KL threshold and window, commitment run length, mass threshold)."""
    m = trace.metrics
    thr, win, rl = _params(m)
    return {
        "Final answer": f"The option with the highest belief at the last step (step {m.n_steps}). Belief: the "
                        "probabilities of the option letters, renormalised to sum to 1 over the options.",
        "Correct?": "Whether the final answer is the item's correct option; '—' when the item has none (the "
                    "no-correct-answer variant, or a question of your own with no correct option set).",
        "Exploration length": f"Exploration end: the first step from which the step KL between consecutive "
                              f"beliefs stays <= {thr:g} for {plural(win, 'step')} in a row (KL threshold "
                              f"{thr:g}, window {win}). Exploration length is that step; 'never converged' when it "
                              "never does.",
        "Commitments": f"A commitment is an answer held as the argmax for at least {plural(rl, 'consecutive step')} "
                       "(the sidebar's commitment run length). Shorter runs are not commitments.",
        "Backtracks": f"A backtrack is a commitment (argmax held >= {plural(rl, 'step')}) followed by a commitment "
                      "to a different answer. Changes of the argmax that last fewer steps do not count.",
        "Option mass": f"The total probability of the option letters in the full vocabulary, at the last step. "
                       f"A step below {m.mass_threshold:g} is 'not answering': the model would say something "
                       "other than an option letter, and its belief (renormalised) is noise; such steps are greyed.",
    }


def chart_help(trace: Trace) -> Dict[str, str]:
    """One sentence under each of Explore's charts saying what it shows, with the thresholds in force."""
    m = trace.metrics
    thr, win, rl = _params(m)
    return {
        "belief": f"Belief: each option letter's probability renormalised over the options, decoded after every "
                  f"recurrent step with the model's own readout. Shaded: commitments (argmax held >= "
                  f"{plural(rl, 'step')}); dashed line: exploration end (step KL <= {thr:g} for "
                  f"{plural(win, 'step')}).",
        "mass": f"Raw mass: each option letter's probability in the full-vocabulary softmax, before the "
                f"renormalisation that gives the belief; dashed black: their total. Below the mass threshold "
                f"{m.mass_threshold:g} a step is not answering.",
        "kl": f"Step KL(p[t+1] || p[t]) between consecutive beliefs, in nats, on a log scale: how much the belief "
              f"still moves. Exploration ends at the first step from which it stays <= {thr:g} (red line) for "
              f"{plural(win, 'step')}.",
        "entropy": "Entropy of the belief in nats: log(number of options) (dotted line) is a uniform belief, 0 a "
                   "certain one.",
    }


def _span(run) -> str:
    return f"step {run.start}" if run.start == run.end else f"steps {run.start}-{run.end}"


def _path_text(options: Sequence[int], limit: int = 6) -> str:
    letters = [LETTERS[o] for o in options]
    if len(letters) > limit:
        letters = letters[:limit // 2] + ["…"] + letters[-(limit // 2):]
    return " -> ".join(letters)


def backtrack_hint(m) -> Optional[str]:
    """Why a run whose argmax changes shows 0 backtracks (its runs are shorter than the run length), or None when
    there is a backtrack or the argmax never changes."""
    if m.backtracks:
        return None
    runs = list(m.runs)
    changes = len(runs) - 1
    if changes < 1:
        return None
    _, _, rl = _params(m)
    head = f"0 backtracks: the answer changed {plural(changes, 'time')} ({_path_text([r.option for r in runs])}), but "
    short = [r for r in runs if r.length < rl]
    longest = max((r.length for r in short), default=0)
    if not m.commitments:
        return head + (f"no answer was held for {plural(rl, 'step')} (the longest run is "
                       f"{plural(max(r.length for r in runs), 'step')}), so there is no commitment to backtrack from.")
    first, last = m.commitments[0], m.commitments[-1]
    held = LETTERS[first.option]
    span = ", ".join(_span(c) for c in m.commitments)
    if all(r.end < first.start for r in short):
        return head + (f"no answer was held for {plural(rl, 'step')} before changing (at most "
                       f"{plural(longest, 'step')}); only {held} was held that long ({span}).")
    if all(r.start > last.end for r in short):
        return head + (f"after the commitment to {held} ({span}) no other answer was held for "
                       f"{plural(rl, 'step')} (at most {plural(longest, 'step')}).")
    return head + (f"only {held} was held for {plural(rl, 'step')} or more ({span}); the other answers lasted at "
                   f"most {plural(longest, 'step')}.")


def metric_summary(trace: Trace, option_ranks: Optional[Mapping[int, int]] = None) -> Dict[str, str]:
    """The Explore page's metric panel as label -> text."""
    m = trace.metrics
    fa = m.final_answer
    out = {
        "Final answer": f"{LETTERS[fa]}) {trace.options[fa]}",
        "Correct?": "no correct option" if trace.correct is None else ("yes" if m.is_correct else
                                                                        f"no (correct: {LETTERS[trace.correct]})"),
        "Option mass": _mass_text(m),
        "Exploration length": (plural(m.exploration_end, "step") + (" (moves again later)" if _moves_later(m) else "")
                               if m.converged else "never converged"),
        "Exploration end": _exploration_text(m),
        "Commitments": ", ".join(f"{LETTERS[c.option]} ({_span(c)})" for c in m.commitments) or "none",
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
    text = (f"{n} of {plural(m.n_steps, 'step')} below the mass threshold {m.mass_threshold:g}" +
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
        return f"never converged: the step KL never stays <= {thr:g} for {plural(win, 'step')}"
    text = f"step {m.exploration_end}, the first step the KL stays <= {thr:g} for {plural(win, 'step')}"
    later = []
    if m.later_argmax_change is not None:
        later.append(f"the argmax changes again at step {m.later_argmax_change}")
    elif m.later_kl_step is not None:
        later.append(f"the step KL exceeds {thr:g} again at step {m.later_kl_step}")
    if m.backtracks_after_exploration_end:
        n_after = len(m.backtracks_after_exploration_end)
        later.append(f"{plural(n_after, 'backtrack')} land{'s' if n_after == 1 else ''} after it")
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
