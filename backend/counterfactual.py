"""What an intervention changed: an intervened run's beliefs against its baseline's.  Pure numpy.

:func:`compare` gives the comparison summary (final answer, new and lost commitments and backtracks, where the
argmax diverges and where it rejoins the baseline's), :func:`change_summary` its one-line description.
"""
from __future__ import annotations

from typing import List, Mapping, Optional, Tuple

import numpy as np

from .errors import UsageError
from .metrics import TrajectoryMetrics, analyze_trajectory
from .settings import LETTERS


def _runs(m: TrajectoryMetrics) -> List[Tuple[int, int, int]]:
    return [(c.option, c.start, c.end) for c in m.commitments]


def compare(probs, baseline_probs, at: int, correct: Optional[int] = None, **metric_params) -> dict:
    """What an intervention at step ``at`` changed, against the baseline's beliefs (both [K, n]).

    - ``final_changed``: the final answers differ;
    - ``new_commitments`` / ``lost_commitments``: commitments (option, first step, last step; 1-based) present
      only in the intervened / only in the baseline run; likewise ``new_backtracks`` / ``lost_backtracks`` as
      (abandoned, destination) option pairs;
    - ``diverged_at``: the first step >= at whose argmax differs from the baseline's (None: never);
    - ``rejoin_step``: after a divergence, the first step from which the argmax equals the baseline's at every
      later step (None when it never rejoins, i.e. the final answer changed, or it never diverged);
    - ``max_tv`` / ``final_tv``: the largest and the final total-variation distance between the beliefs from
      step ``at`` on.
    """
    p = np.asarray(probs, dtype=np.float64)
    b = np.asarray(baseline_probs, dtype=np.float64)
    if p.shape != b.shape:
        raise UsageError(f"the intervened and baseline beliefs differ in shape: {p.shape} vs {b.shape}")
    mi = analyze_trajectory(p, correct, **metric_params)
    mb = analyze_trajectory(b, correct, **metric_params)
    K = p.shape[0]
    same = mi.argmax == mb.argmax
    after = np.arange(1, K + 1) >= at
    diff_steps = np.flatnonzero(~same & after)
    diverged_at = int(diff_steps[0]) + 1 if diff_steps.size else None
    rejoin = None
    if diverged_at is not None and same[-1]:
        last_diff = int(diff_steps[-1]) + 1
        rejoin = last_diff + 1
    tv = 0.5 * np.abs(p - b).sum(axis=1)
    ri, rb = set(_runs(mi)), set(_runs(mb))
    bi = {(a.option, c.option) for a, c in mi.backtracks}
    bb = {(a.option, c.option) for a, c in mb.backtracks}
    return {
        "at": int(at),
        "final_answer": mi.final_answer,
        "baseline_final_answer": mb.final_answer,
        "final_changed": mi.final_answer != mb.final_answer,
        "is_correct": mi.is_correct,
        "baseline_is_correct": mb.is_correct,
        "backtracked": mi.backtracked,
        "baseline_backtracked": mb.backtracked,
        "new_commitments": [list(r) for r in sorted(ri - rb, key=lambda r: r[1])],
        "lost_commitments": [list(r) for r in sorted(rb - ri, key=lambda r: r[1])],
        "new_backtracks": [list(x) for x in sorted(bi - bb)],
        "lost_backtracks": [list(x) for x in sorted(bb - bi)],
        "diverged_at": diverged_at,
        "rejoin_step": rejoin,
        "max_tv": float(tv[at - 1:].max()),
        "final_tv": float(tv[-1]),
    }


def change_summary(c: Mapping) -> str:
    """One line: what the intervention changed."""
    fa, fb = LETTERS[c["final_answer"]], LETTERS[c["baseline_final_answer"]]
    parts = [f"final answer {fb} -> {fa}" if c["final_changed"] else f"final answer unchanged ({fa})"]
    if c.get("diverged_at") is None:
        parts.append("the argmax never differs from the baseline's")
    elif c.get("rejoin_step") is not None:
        parts.append(f"diverges at step {c['diverged_at']}, rejoins the baseline's answer at step {c['rejoin_step']}")
    else:
        parts.append(f"diverges at step {c['diverged_at']} and never rejoins")
    nb, lb = c.get("new_backtracks") or [], c.get("lost_backtracks") or []
    if nb:
        parts.append("new backtrack " + ", ".join(f"{LETTERS[a]} -> {LETTERS[b]}" for a, b in nb))
    if lb:
        parts.append("lost backtrack " + ", ".join(f"{LETTERS[a]} -> {LETTERS[b]}" for a, b in lb))
    return "; ".join(parts)
