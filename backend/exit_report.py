"""Running the measurements of issue 12 on a model: the point of no return under noise, the backtrack splice,
and everything at once (:func:`intervention_study`).  The tables built from their records are torch-free
(:mod:`backend.intervention_tables`), and so is the exit-rule table of a results set
(:func:`backend.stopping.exit_rule_table_for_results`).

- :func:`noise_ponr_records` / :func:`ponr_table`: the point-of-no-return curve: for each step k, the share of
  instances whose final answer changes when noise of scale sigma is added to the state at step k (per variant;
  also split by whether the baseline backtracked).
- :func:`backtrack_splice_records` / :func:`backtrack_splice_table`: for each backtracking instance (the last
  abandoned commitment a before the commitment to the final answer b), the state at the last step of the
  abandoned commitment (j) is spliced into the run once the new commitment is established (k = first step of
  b + run length - 1), at the last position only by default (splicing every position of a run's own state replays the baseline from step j, which answers
  nothing): does the abandoned answer a come back (argmax a at step k), is it the final answer, does the final
  answer change?
"""
from __future__ import annotations

from collections import defaultdict
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import numpy as np

from .dynamics import backtrack_steps, dynamics, event_profiles
from .errors import UsageError
from .intervention_tables import backtrack_splice_table, final_backtrack, ponr_summary, ponr_table
from .interventions import Intervention, trace_intervened
from .items import VARIANTS, Item
from .settings import DEFAULT_PERMUTATIONS, DEFAULT_SEED, DEFAULT_STEPS, NOISE_SIGMA, RUN_LENGTH
from .stopping import Rule, exit_rule_table, record_of
from .sweep import instance_seed
from .trace import Trace, trace_items

__all__ = ["exit_rule_table_for_traces", "noise_ponr_records", "backtrack_splice_records", "intervention_study"]


# ---------------------------------------------------------------------------------------------- exit rules
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


# ---------------------------------------------------------------------------------------------- backtrack splice
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
