"""Report tables of issue 12: exit rules on a results set, and the point of no return under interventions.

- :func:`exit_rule_table_for_results`: the exit-rule table (rule, setting, mean steps, accuracy, never-stopped
  share, per variant; the oracle as the bound) from a sweep's rows (``belief`` per step; the last-position
  states when the sweep kept them).
- :func:`noise_ponr_records` / :func:`ponr_table`: the point-of-no-return curve: for each step k, the share of
  instances whose final answer changes when noise of scale sigma is added to the state at step k (per variant;
  also split by whether the baseline backtracked).
- :func:`backtrack_splice_records` / :func:`backtrack_splice_table`: for each backtracking instance (the last
  abandoned commitment a before the commitment to the final answer b), the state at the last step of the abandoned commitment (j) is spliced into the run once
  the new commitment is established (k = first step of b + run length - 1), at the last position only by
  default (splicing every position of a run's own state replays the baseline from step j, which answers
  nothing): does the abandoned answer a come back (argmax a at step k), is it the final answer, does the final
  answer change?
"""
from __future__ import annotations

from collections import defaultdict
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np

from .errors import UsageError
from .dynamics import backtrack_steps, dynamics, event_profiles
from .interventions import Intervention, trace_intervened
from .items import VARIANTS, Item
from .metrics import bootstrap_ci
from .settings import DEFAULT_PERMUTATIONS, DEFAULT_SEED, DEFAULT_STEPS, NOISE_SIGMA, RUN_LENGTH
from .sweep import instance_seed
from .stopping import Rule, exit_rule_table, record_of
from .trace import Trace, trace_items

__all__ = ["records_from_results", "exit_rule_table_for_results", "noise_ponr_records", "ponr_table",
           "ponr_summary", "backtrack_splice_records", "backtrack_splice_table", "exit_rule_table_for_traces",
           "final_backtrack", "intervention_study"]


# ---------------------------------------------------------------------------------------------- exit rules
def records_from_results(df, hidden: Optional[np.ndarray] = None) -> List[dict]:
    """Exit-rule inputs from a sweep's rows (``belief``, ``correct``, ``variant``; ``exit_probs`` if stored);
    ``hidden``: float16 [rows, steps, E] last-position states in row order (the sweep's ``_hidden`` parts)."""
    need = [c for c in ("belief", "variant", "correct") if c not in df.columns]
    if need:
        raise UsageError(f"the results lack column(s) {', '.join(need)}: not a LoopLens sweep")
    if hidden is not None and len(hidden) != len(df):
        raise UsageError(f"{len(hidden)} hidden-state rows for {len(df)} result rows")
    out = []
    has_exit = "exit_prob" in df.columns
    for i, row in enumerate(df.itertuples(index=False)):
        out.append({
            "probs": np.stack([np.asarray(r, dtype=np.float64) for r in row.belief]),
            "correct": _opt_int(row.correct), "variant": row.variant,
            "states": None if hidden is None else hidden[i],
            "exit_probs": None if not has_exit or getattr(row, "exit_prob") is None
            else np.asarray(getattr(row, "exit_prob"), dtype=np.float64),
        })
    return out


def _opt_int(x) -> Optional[int]:
    """An optional index from a results cell (None, NaN and pandas' NA are missing)."""
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return None if np.isnan(f) else int(f)


def exit_rule_table_for_results(df, hidden: Optional[np.ndarray] = None,
                                rules: Optional[Sequence[Rule]] = None) -> List[dict]:
    """The exit-rule table of a results set (see :func:`backend.stopping.exit_rule_table`)."""
    return exit_rule_table(records_from_results(df, hidden), rules)


def exit_rule_table_for_traces(traces: Iterable[Trace], rules: Optional[Sequence[Rule]] = None) -> List[dict]:
    return exit_rule_table((record_of(t) for t in traces), rules)


# ---------------------------------------------------------------------------------------------- point of no return
def _key(tr: Trace) -> dict:
    return {"item_id": tr.item_id, "variant": tr.variant, "permutation": tr.permutation, "seed": tr.seed}


def noise_ponr_records(bundle, items: Sequence[Item], seeds: Sequence[int], steps: int, sigma: float = NOISE_SIGMA,
                       at_steps: Optional[Sequence[int]] = None, noise_seed: int = 0,
                       baseline: Optional[Sequence[Trace]] = None, on_step=None, **trace_kwargs) -> List[dict]:
    """One record per (instance, k): did noise of scale ``sigma`` at step k change the final answer?

    ``baseline``: the instances' traces without intervention (computed when not given; same seeds, steps)."""
    items = list(items)
    seeds = [int(s) for s in seeds]
    if baseline is None:
        baseline = trace_items(bundle, items, steps, seeds=seeds, **trace_kwargs)
    at_steps = list(at_steps) if at_steps is not None else list(range(1, steps))
    out = []
    for k in at_steps:
        iv = Intervention("noise", int(k), sigma=float(sigma), noise_seed=noise_seed)
        inter = trace_intervened(bundle, items, iv, steps, seeds=seeds, **trace_kwargs)
        for b, t in zip(baseline, inter):
            mb, mi = b.metrics, t.metrics
            out.append({**_key(b), "at": int(k), "sigma": float(sigma), "final_answer": mi.final_answer,
                        "baseline_final_answer": mb.final_answer, "final_changed": mi.final_answer != mb.final_answer,
                        "changed_at_k": int(mi.argmax[k - 1]) != int(mb.argmax[k - 1]),
                        "is_correct": mi.is_correct, "baseline_is_correct": mb.is_correct,
                        "baseline_backtracked": mb.backtracked})
        if on_step is not None:
            on_step(k)
    return out


def _share(values: List[bool], n_boot: int, seed: int) -> dict:
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {"n": 0, "share": None, "low": None, "high": None}
    est, lo, hi = bootstrap_ci(v, n_boot=n_boot, seed=seed)
    return {"n": int(v.size), "share": float(est), "low": float(lo), "high": float(hi)}


def ponr_table(records: Iterable[Mapping], n_boot: int = 1000, seed: int = 0) -> List[dict]:
    """Per (variant, sigma, group, k): the share of instances whose final answer changed, with a bootstrap
    interval over instances; ``group`` is ``all``, ``backtracked`` or ``not backtracked`` (the baseline's)."""
    cells: Dict[tuple, List[bool]] = defaultdict(list)
    for r in records:
        groups = ["all", "backtracked" if r["baseline_backtracked"] else "not backtracked"]
        for g in groups:
            cells[(r["variant"], r["sigma"], g, r["at"])].append(bool(r["final_changed"]))
    rank = {"all": 0, "backtracked": 1, "not backtracked": 2}
    rows = []
    for key in sorted(cells, key=lambda k: (str(k[0]), k[1], rank[k[2]], k[3])):
        v, s, g, k = key
        rows.append({"variant": v, "sigma": s, "group": g, "at": k, **_share(cells[key], n_boot, seed)})
    return rows


def ponr_summary(rows: Sequence[Mapping], level: float = 0.05) -> List[dict]:
    """Per (variant, sigma, group) of a :func:`ponr_table`: the largest changed share and its step, and

    - ``first_stable_step``: the first step k from which the share stays <= ``level`` at every later step (a
      point of no return: noise from there on no longer changes the answer; None when the last step is above);
    - ``last_safe_step``: the last step k such that the share is <= ``level`` at every step up to k (noise up to
      there is recovered from; None when step 1 is already above); ``K - last_safe_step`` is the number of
      remaining steps the model needs to recover.
    """
    by: Dict[tuple, List[tuple]] = defaultdict(list)
    for r in rows:
        if r["share"] is not None:
            by[(r["variant"], r["sigma"], r["group"])].append((r["at"], r["share"]))
    out = []
    for (v, s, g), pts in by.items():
        pts.sort()
        ks = [k for k, _ in pts]
        high = [k for k, x in pts if x > level]
        first_stable = ks[0] if not high else next((k for k in ks if k > max(high)), None)
        last_safe = ks[-1] if not high else next((k for k in reversed(ks) if k < min(high)), None)
        kmax, smax = max(pts, key=lambda p: (p[1], -p[0]))
        out.append({"variant": v, "sigma": s, "group": g, "level": level, "max_share": smax, "max_at": kmax,
                    "first_stable_step": first_stable, "last_safe_step": last_safe})
    return out


# ---------------------------------------------------------------------------------------------- backtrack splice
def final_backtrack(m):
    """(abandoned commitment, commitment to the final answer) of a backtracking run, or None: the last
    commitment to the final answer and the latest commitment to another answer before it (method.md)."""
    if not m.backtracked:
        return None
    idx = [i for i, c in enumerate(m.commitments) if c.option == m.final_answer]
    if not idx:
        return None
    before = [c for c in m.commitments[:idx[-1]] if c.option != m.final_answer]
    return (before[-1], m.commitments[idx[-1]]) if before else None


def backtrack_splice_records(bundle, items: Sequence[Item], seeds: Sequence[int], steps: int,
                             baseline: Optional[Sequence[Trace]] = None, positions: str = "last",
                             run_length: int = RUN_LENGTH, **trace_kwargs) -> List[dict]:
    """For each backtracking baseline instance, splice its pre-backtrack state after the backtrack (see the
    module docstring) and record what happens.  The pair is :func:`final_backtrack`'s.  Instances whose new commitment is established only at the last
    step (k = K) are skipped (an intervention acts before later steps)."""
    items = list(items)
    seeds = [int(s) for s in seeds]
    if baseline is None:
        baseline = trace_items(bundle, items, steps, seeds=seeds, **trace_kwargs)
    groups: Dict[tuple, List[int]] = defaultdict(list)
    plan = {}
    for i, b in enumerate(baseline):
        pair = final_backtrack(b.metrics)
        if pair is None:
            continue
        a, c = pair
        j, k = a.end, c.start + run_length - 1
        if k >= steps:
            continue
        plan[i] = (a.option, c.option, j, k)
        groups[(j, k)].append(i)
    out = []
    for (j, k), rows in sorted(groups.items()):
        iv = Intervention("splice", k, splice_step=j, splice_positions=positions)
        inter = trace_intervened(bundle, [items[i] for i in rows], iv, steps, seeds=[seeds[i] for i in rows],
                                 **trace_kwargs)
        for i, t in zip(rows, inter):
            b = baseline[i]
            a_opt, b_opt, _, _ = plan[i]
            am = t.metrics.argmax
            out.append({**_key(b), "abandoned": a_opt, "destination": b_opt, "splice_step": j, "at": k,
                        "positions": positions, "returns_at_k": int(am[k - 1]) == a_opt,
                        "ever_returns": bool((am[k - 1:] == a_opt).any()),
                        "final_is_abandoned": t.metrics.final_answer == a_opt,
                        "final_changed": t.metrics.final_answer != b.metrics.final_answer,
                        "baseline_is_correct": b.metrics.is_correct, "is_correct": t.metrics.is_correct})
    return out


def backtrack_splice_table(records: Iterable[Mapping], n_boot: int = 1000, seed: int = 0) -> List[dict]:
    """Per (variant, positions): shares of spliced backtracking instances where the abandoned answer is the
    argmax right after the splice, ever again, or the final answer, and where the final answer changed."""
    cells: Dict[tuple, List[Mapping]] = defaultdict(list)
    for r in records:
        cells[(r["variant"], r["positions"])].append(r)
    rows = []
    for (v, pos), rs in sorted(cells.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        row = {"variant": v, "positions": pos, "n": len(rs)}
        for q in ("returns_at_k", "ever_returns", "final_is_abandoned", "final_changed"):
            st = _share([bool(r[q]) for r in rs], n_boot, seed)
            row[q] = st["share"]
            row[f"{q}_low"], row[f"{q}_high"] = st["low"], st["high"]
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------- all of it
def intervention_study(bundle, bench_items: Sequence, steps: int = DEFAULT_STEPS, variants: Sequence[str] = VARIANTS,
                       permutations: int = DEFAULT_PERMUTATIONS, ponr_permutations: int = 1,
                       sigmas: Sequence[float] = (0.5, 2.0, 8.0), splice_positions: Sequence[str] = ("last", "all"),
                       base_seed: int = DEFAULT_SEED, n_boot: int = 1000, level: float = 0.05,
                       progress: Optional[Callable[[str], None]] = None) -> dict:
    """The exit-rule table, dynamics around backtracks and the backtrack splice over every (item, variant,
    permutation < ``permutations``) instance, and the point-of-no-return curve over the permutations below
    ``ponr_permutations`` (steps 1..K-1 for each sigma).  Initial-state seeds as a sweep's (``instance_seed``),
    so the baselines are the sweep's instances.  JSON-ready."""
    say = progress or (lambda s: None)
    items, seeds = [], []
    for bi in bench_items:
        avail = set(bi.available_variants())
        for v in variants:
            if v not in avail:
                continue
            for p in range(permutations):
                items.append(bi.instance(v, p))
                seeds.append(instance_seed(base_seed, bi.id, v, p, 0))
    if not items:
        raise UsageError("no instances: the benchmark has none of the requested variants")
    base = trace_items(bundle, items, steps, seeds=seeds)
    say(f"baseline: {len(base)} instances")
    out: dict = {"parameters": {"model": bundle.name, "checkpoint_hash": bundle.checkpoint_hash, "steps": steps,
                                "variants": list(variants), "permutations": permutations,
                                "ponr_permutations": ponr_permutations, "sigmas": list(sigmas),
                                "splice_positions": list(splice_positions), "base_seed": base_seed,
                                "level": level, "n_boot": n_boot}}
    summary = {}
    for v in variants:
        tv = [t for t in base if t.variant == v]
        if tv:
            acc = [t.metrics.is_correct for t in tv if t.metrics.is_correct is not None]
            summary[v] = {"n": len(tv), "accuracy": float(np.mean(acc)) if acc else None,
                          "backtracked": float(np.mean([t.metrics.backtracked for t in tv]))}
    out["baseline"] = summary
    out["exit_rules"] = exit_rule_table_for_traces(base)
    prof = {}
    for v in variants:
        tv = [t for t in base if t.variant == v and t.metrics.backtracked]
        if tv:
            dyn = [dynamics(t.hidden_last.astype(np.float32)) for t in tv]
            prof[v] = {q: p.to_dict() for q, p in event_profiles(dyn, [backtrack_steps(t.metrics) for t in tv],
                                                                 4, 4, n_boot=n_boot).items()}
    out["dynamics_around_backtracks"] = prof
    say("exit rules and dynamics done")
    sp: List[dict] = []
    for pos in splice_positions:
        sp += backtrack_splice_records(bundle, items, seeds, steps, baseline=base, positions=pos)
    out["backtrack_splice"] = backtrack_splice_table(sp, n_boot=n_boot)
    say("backtrack splice done")
    sel = [i for i, it in enumerate(items) if it.permutation < ponr_permutations]
    recs: List[dict] = []
    for s in sigmas:
        recs += noise_ponr_records(bundle, [items[i] for i in sel], [seeds[i] for i in sel], steps, sigma=s,
                                   baseline=[base[i] for i in sel])
        say(f"noise sigma {s:g} done")
    out["ponr"] = ponr_table(recs, n_boot=n_boot)
    out["ponr_summary"] = ponr_summary(out["ponr"], level)
    by = defaultdict(list)
    for r in recs:
        by[(r["variant"], r["sigma"], r["at"])].append(r["changed_at_k"])
    out["ponr_changed_at_k"] = [{"variant": v, "sigma": s, "at": k, "share": float(np.mean(x))}
                                for (v, s, k), x in sorted(by.items(), key=lambda kv: (str(kv[0][0]), kv[0][1], kv[0][2]))]
    return out
