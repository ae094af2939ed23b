"""Measure a hopper model the way its model card reports it.

    python -m backend.hopper_eval data/models/hopper-mini --bench data/benchmarks/hopper-mini-test.jsonl \
        --perms 25 --out /tmp/hopper-eval.json

* step-accuracy curves (accuracy of argmax belief after steps 1..30) for base / easy, overall and per hop count
  (original option order, init seeds fixed);
* over every (item, variant, permutation) with the project's tracer and metrics (``backend.trace``,
  ``backend.metrics``): backtracking rate, accuracy with vs without backtracking, share of backtracks ending on
  the correct answer, exploration length base vs easy, NCA convergence and entropy.
"""
from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict

import numpy as np
import torch

from .items import load_benchmark
from .metrics import analyze_trajectory
from .models import load_bundle
from .trace import trace_items


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None


def evaluate(model, bench, perms=25, steps=30, base_seed=0, max_items=None, log=print) -> dict:
    bundle = load_bundle(model)
    items = load_benchmark(bench).items[:max_items]
    t0 = time.time()
    res = {"model": str(model), "bench": str(bench), "n_items": len(items), "perms": perms, "steps": steps}
    # ---------------------------------------------------------------- step-accuracy curves (permutation 0)
    curves = {}
    for variant in ("base", "easy"):
        inst = [b.instance(variant, 0) for b in items]
        traces = trace_items(bundle, inst, steps, seeds=[base_seed + i for i in range(len(inst))])
        hit = np.array([[int(np.argmax(p) == it.correct) for p in t.probs] for t, it in zip(traces, inst)])
        curves[variant] = hit.mean(0).round(3).tolist()
        if variant == "base":
            hops = np.array([b.extra.get("hops", 0) for b in items])
            res["base_curve_per_hop"] = {int(h): hit[hops == h].mean(0).round(3).tolist() for h in np.unique(hops)}
    res["curves"] = curves
    log(f"curves done ({time.time() - t0:.0f}s): base @1,2,4,8,16,30 = "
        + " ".join(str(curves['base'][i]) for i in (0, 1, 3, 7, 15, 29)))
    # ---------------------------------------------------------------- permutations x variants with metrics
    per = defaultdict(list)  # variant -> list of (item_idx, perm, metrics)
    for variant in ("base", "easy", "nca"):
        inst, keys = [], []
        for p in range(perms):
            for i, b in enumerate(items):
                inst.append(b.instance(variant, p))
                keys.append((i, p))
        seeds = [base_seed + 100000 * (p + 1) + i for (i, p) in keys]
        traces = trace_items(bundle, inst, steps, seeds=seeds)
        for (i, p), t, it in zip(keys, traces, inst):
            m = analyze_trajectory(t.probs, it.correct)
            m.orig_abandoned = [it.order[j] for j in m.abandoned]  # indices in the unpermuted option list
            per[variant].append((i, p, m))
        log(f"{variant}: {len(inst)} instances traced ({time.time() - t0:.0f}s)")
    base = [m for _, _, m in per["base"]]
    bt = [m for m in base if m.backtracked]
    nbt = [m for m in base if not m.backtracked]
    acc_bt, acc_nbt = _mean([m.is_correct for m in bt]), _mean([m.is_correct for m in nbt])
    out = {
        "base_accuracy": _mean([m.is_correct for m in base]),
        "easy_accuracy": _mean([m.is_correct for _, _, m in per["easy"]]),
        "base_backtrack_rate": len(bt) / len(base),
        "acc_backtracking": acc_bt,
        "acc_non_backtracking": acc_nbt,
        "acc_diff_points": None if acc_bt is None else 100 * (acc_bt - acc_nbt),
        "acc_diff_relative": None if (acc_bt is None or not acc_nbt) else acc_bt / acc_nbt - 1,
        "backtracks_ending_correct": _mean([m.is_correct for m in bt]),
        # original index 1 = distractors[0] = the entity one hop short of the answer
        "backtracks_abandoning_one_hop_short": _mean([1 in m.orig_abandoned for m in bt]),
    }
    # exploration base vs easy (converged instances; and paired where both converged)
    expl = {}
    for v in ("base", "easy", "nca"):
        ms = [m for _, _, m in per[v]]
        expl[v] = {"mean_exploration_length": _mean([m.exploration_length for m in ms]),
                   "never_converged": float(np.mean([not m.converged for m in ms])),
                   "mean_entropy_norm_last": float(np.mean([m.entropy_norm[-1] for m in ms])),
                   "mean_entropy_norm_all": float(np.mean([m.entropy_norm.mean() for m in ms]))}
    eb = {(i, p): m for i, p, m in per["base"]}
    pairs = [(eb[(i, p)].exploration_length, m.exploration_length) for i, p, m in per["easy"]
             if m.converged and eb[(i, p)].converged]
    if pairs:
        b_mean, e_mean = np.mean([a for a, _ in pairs]), np.mean([b for _, b in pairs])
        out["paired_exploration_base_easy"] = [float(b_mean), float(e_mean)]
        out["easy_shorter_by"] = float(1 - e_mean / b_mean)
        out["base_longer_by"] = float(b_mean / e_mean - 1)
    out["exploration"] = expl
    # NCA: never converging, and NCA with/without commitment
    out["nca_never_converged"] = expl["nca"]["never_converged"]
    res["metrics"] = out
    res["seconds"] = round(time.time() - t0, 1)
    return res


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--bench", required=True)
    ap.add_argument("--perms", type=int, default=25)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--max-items", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    res = evaluate(a.model, a.bench, a.perms, a.steps, max_items=a.max_items)
    text = json.dumps(res, indent=1)
    if a.out:
        open(a.out, "w").write(text)
    print(json.dumps(res["metrics"], indent=1))


if __name__ == "__main__":
    main()
