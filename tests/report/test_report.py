"""The report's numbers equal a direct computation on a small hand-made results set."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from backend.stats import bootstrap_ci
from backend.report import (bootstrap_weights, compute_report, load_report, save_report, to_json, to_markdown)

T = 5
N_BOOT = 300


def row(item, domain, variant, perm, seed=0, *, correct=0, final=0, bt=False, conv=True, expl=2, ent=None,
        abandoned=(), options=("ans", "d1", "d2", "d3")):
    ent = list(ent if ent is not None else np.linspace(1.2, 0.2, T))
    is_corr = None if correct is None else final == correct
    return {"item_id": item, "domain": domain, "variant": variant, "permutation": perm, "seed": seed,
            "model": "hand", "checkpoint_hash": "h", "steps": T, "template": "t", "n_options": 4,
            "options": list(options), "correct": correct, "final_answer": final, "final_answer_original": final,
            "is_correct": is_corr, "backtracked": bt, "converged": conv, "exploration_end": expl if conv else None,
            "entropy": ent, "final_entropy_norm": ent[-1] / math.log(4), "abandoned_options": list(abandoned)}


def hand_made() -> pd.DataFrame:
    R = []
    # i1 (factual): base 4 perms: 2 backtrack (1 correct), 2 not (both correct)
    R += [row("i1", "factual", "base", 0, bt=True, final=0, expl=6, abandoned=["d1"]),
          row("i1", "factual", "base", 1, bt=True, final=2, correct=1, expl=8, abandoned=["d2", "ans"]),
          row("i1", "factual", "base", 2, final=1, correct=1, expl=3),
          row("i1", "factual", "base", 3, final=3, correct=3, conv=False)]
    # i2 (factual): base: 1 backtrack wrong, 3 not (1 correct)
    R += [row("i2", "factual", "base", 0, bt=True, final=1, correct=0, expl=9, abandoned=["d3"]),
          row("i2", "factual", "base", 1, final=0, correct=0, expl=4),
          row("i2", "factual", "base", 2, final=0, correct=0, expl=5),
          row("i2", "factual", "base", 3, final=2, correct=0, expl=2)]
    # i3 (logic): base: 1 backtrack correct, 1 not wrong
    R += [row("i3", "logic", "base", 0, bt=True, final=2, correct=2, expl=7, abandoned=["d1", "d3"]),
          row("i3", "logic", "base", 1, final=0, correct=1, expl=5)]
    # easy: shorter exploration
    R += [row("i1", "factual", "easy", 0, expl=2), row("i1", "factual", "easy", 1, expl=3),
          row("i2", "factual", "easy", 0, expl=1), row("i2", "factual", "easy", 1, conv=False),
          row("i3", "logic", "easy", 0, expl=2), row("i3", "logic", "easy", 1, expl=4, final=1)]
    # nca: no correct option, mostly never converges, high entropy
    hi = [1.38, 1.37, 1.36, 1.36, 1.35]
    R += [row("i1", "factual", "nca", 0, correct=None, conv=False, ent=hi),
          row("i2", "factual", "nca", 0, correct=None, conv=False, ent=hi),
          row("i3", "logic", "nca", 0, correct=None, expl=3, ent=hi, bt=True, abandoned=["d2"])]
    return pd.DataFrame(R)


SIM = {"model": "test", "items": {
    iid: {"distractor_ranks": {"d1": 1, "d2": 2, "d3": 3},
          "nca_distractor_ranks": {"d1": 2, "d2": 1, "d3": 3, "x": 4}} for iid in ("i1", "i2", "i3")}}


@pytest.fixture(scope="module")
def df():
    return hand_made()


@pytest.fixture(scope="module")
def rep(df):
    return compute_report(df, similarity=SIM, n_boot=N_BOOT, seed=7)


def group(rep, variant, domain="all"):
    return next(g for g in rep["groups"] if g["variant"] == variant and g["domain"] == domain)


def headline(rep, key):
    return next(h for h in rep["headline"] if h["key"] == key)


def resample(df: pd.DataFrame, seed: int, n_boot: int = N_BOOT):
    """Direct bootstrap: the resampled data sets themselves (items drawn with replacement)."""
    items = sorted(df["item_id"].unique())
    W = bootstrap_weights(len(items), n_boot, seed)
    for w in W:
        parts = [df[df.item_id == it] for it, k in zip(items, w) for _ in range(int(k))]
        yield pd.concat(parts) if parts else df.iloc[:0]


def direct_ci(df, fn, seed=7):
    vals = np.array([fn(d) for d in resample(df, seed)], dtype=float)
    vals = vals[np.isfinite(vals)]
    return tuple(np.quantile(vals, [0.025, 0.975]))


# ---------------------------------------------------------------------------------------------- point estimates
def test_backtracking_numbers(df, rep):
    b = df[df.variant == "base"]
    assert headline(rep, "backtrack_rate_base")["value"] == pytest.approx(b.backtracked.mean())  # 4/10
    assert headline(rep, "backtrack_rate_base")["n"] == 10
    acc_bt = b[b.backtracked].is_correct.astype(float).mean()  # 2/4
    acc_nb = b[~b.backtracked].is_correct.astype(float).mean()  # 4/6
    assert acc_bt == 0.5 and acc_nb == pytest.approx(4 / 6)
    assert headline(rep, "acc_gain_points")["value"] == pytest.approx(acc_bt - acc_nb)
    assert headline(rep, "acc_gain_relative")["value"] == pytest.approx(acc_bt / acc_nb - 1)
    assert headline(rep, "backtracks_end_correct")["value"] == pytest.approx(acc_bt)
    g = group(rep, "base")
    assert g["accuracy"]["value"] == pytest.approx(b.is_correct.astype(float).mean())
    assert g["never_converged_rate"]["count"] == 1
    assert g["mean_exploration"]["value"] == pytest.approx(b[b.converged].exploration_end.mean())
    f = group(rep, "base", "factual")
    assert f["backtrack_rate"]["value"] == pytest.approx(3 / 8) and f["backtrack_rate"]["n_items"] == 2
    assert group(rep, "nca")["accuracy"]["value"] is None


def test_abandoned_similarity_shares(rep):
    # Base abandoned distractors: d1 (r1), d2 (r2), d3 (r3), d1 (r1), d3 (r3); the abandoned "ans" has no rank.
    assert headline(rep, "abandoned_rank_1")["value"] == pytest.approx(2 / 5)
    assert headline(rep, "abandoned_rank_2")["value"] == pytest.approx(1 / 5)
    assert headline(rep, "abandoned_rank_3")["value"] == pytest.approx(2 / 5)
    assert headline(rep, "abandoned_rank_1")["n"] == 5
    nca = group(rep, "nca")
    assert nca["abandoned_rank_1"]["value"] == 1.0 and nca["abandoned_rank_1"]["chance"] == 0.25


def test_exploration_both_ways(df, rep):
    b = df[(df.variant == "base") & df.converged].exploration_end.mean()
    e = df[(df.variant == "easy") & df.converged].exploration_end.mean()
    assert headline(rep, "easy_shorter")["value"] == pytest.approx(1 - e / b)
    assert headline(rep, "base_longer")["value"] == pytest.approx(b / e - 1)
    pair = rep["exploration"]["pair"]
    assert pair["never_converged"] == {"base": 1, "easy": 1}
    per = {r["item_id"]: r for r in rep["exploration"]["per_item"]}
    assert per["i1"]["base"] == pytest.approx((6 + 8 + 3) / 3) and per["i1"]["base_never_converged"] == 1
    h = rep["exploration_hist"]["easy"]
    assert h["count"][0] == 1 and h["count"][1] == 2 and h["never_converged"] == 1


def test_nca_numbers(df, rep):
    assert headline(rep, "nca_never_converged")["value"] == pytest.approx(2 / 3)
    assert headline(rep, "nca_min_entropy_norm")["value"] == pytest.approx(1.35 / math.log(4))


def test_entropy_curves(df, rep):
    c = [r for r in rep["entropy_curves"] if r["variant"] == "base"]
    assert len(c) == T
    want = np.stack(df[df.variant == "base"].entropy.to_list()).mean(0)
    np.testing.assert_allclose([r["mean"] for r in c], want)
    assert all(r["lo"] <= r["mean"] + 1e-12 and r["mean"] <= r["hi"] + 1e-12 for r in c)


# ---------------------------------------------------------------------------------------------- intervals
def test_intervals_equal_a_direct_bootstrap(df, rep):
    b = df[df.variant == "base"]

    def gain(d):
        bt, nb = d[d.backtracked], d[~d.backtracked]
        if len(bt) == 0 or len(nb) == 0:
            return np.nan
        return bt.is_correct.astype(float).mean() - nb.is_correct.astype(float).mean()

    for key, fn in (("backtrack_rate_base", lambda d: d.backtracked.mean()), ("acc_gain_points", gain)):
        lo, hi = direct_ci(b, fn)
        h = headline(rep, key)
        assert h["lo"] == pytest.approx(lo) and h["hi"] == pytest.approx(hi), key
    both = df[df.variant.isin(["base", "easy"])]

    def shorter(d):
        c = d[d.converged]
        mb, me = c[c.variant == "base"].exploration_end.mean(), c[c.variant == "easy"].exploration_end.mean()
        return 1 - me / mb

    lo, hi = direct_ci(both, shorter)
    assert headline(rep, "easy_shorter")["lo"] == pytest.approx(lo)
    assert headline(rep, "easy_shorter")["hi"] == pytest.approx(hi)


def test_one_instance_per_item_matches_metrics_bootstrap_ci():
    rng = np.random.default_rng(3)
    vals = rng.random(12) < 0.4
    d = pd.DataFrame([row(f"i{k:02d}", "factual", "base", 0, bt=bool(v)) for k, v in enumerate(vals)])
    r = compute_report(d, n_boot=500, seed=11)
    est, lo, hi = bootstrap_ci(vals.astype(float), n_boot=500, seed=11)
    h = headline(r, "backtrack_rate_base")
    assert (h["value"], h["lo"], h["hi"]) == pytest.approx((float(est), float(lo), float(hi)))


# ---------------------------------------------------------------------------------------------- seeds, positions
def test_seed_noise():
    R = [row("a", "f", "base", 0, 0, bt=True), row("a", "f", "base", 0, 1, bt=False),  # flips
         row("a", "f", "base", 1, 0, bt=True), row("a", "f", "base", 1, 1, bt=True),  # stable backtrack
         row("b", "f", "base", 0, 0), row("b", "f", "base", 0, 1, final=2),  # stable no-bt, answer flips
         row("b", "f", "base", 1, 0), row("b", "f", "base", 1, 1)]
    r = compute_report(pd.DataFrame(R), n_boot=100)
    sn = r["seed_noise"]
    assert sn["available"] and sn["instances"] == 4
    assert sn["all"]["backtrack_flip_rate"]["value"] == pytest.approx(1 / 4)
    assert sn["all"]["answer_flip_rate"]["value"] == pytest.approx(1 / 4)
    assert sn["all"]["single_seed_backtracks"]["value"] == pytest.approx(1 / 2)
    assert sn["all"]["pairwise_disagreement"]["value"] == pytest.approx(1 / 4)
    assert not compute_report(hand_made(), n_boot=10)["seed_noise"]["available"]


def test_position_bias(df, rep):
    pb = rep["position_bias"]["base"]
    b = df[df.variant == "base"]
    shares = {s["position"]: s["value"] for s in pb["final_position_shares"]}
    for k, letter in enumerate("ABCD"):
        assert shares[letter] == pytest.approx((b.final_answer == k).mean())
    assert pb["counts"] == [int((b.final_answer == k).sum()) for k in range(4)]
    acc = {s["correct_position"]: s["value"] for s in pb["accuracy_by_correct_position"]}
    assert acc["A"] == pytest.approx(b[b.correct == 0].is_correct.astype(float).mean())


# ---------------------------------------------------------------------------------------------- output
def test_markdown_json_roundtrip(rep, tmp_path):
    md = to_markdown(rep)
    assert "| Base instances with at least one backtrack | 32% | 40.0% [" in md
    assert "in points" in md and "relative" in md and "Base longer by" in md
    text = to_json(rep)
    assert "NaN" not in text
    save_report(rep, tmp_path)
    back = load_report(tmp_path)
    assert back["headline"] == json.loads(text)["headline"]


def test_report_from_nullable_parquet_roundtrip(df, tmp_path):
    """Through Parquet the nullable columns come back as floats/objects; the numbers must not change."""
    p = tmp_path / "r.parquet"
    df.to_parquet(p)
    r2 = compute_report(pd.read_parquet(p), similarity=SIM, n_boot=N_BOOT, seed=7)
    r1 = compute_report(df, similarity=SIM, n_boot=N_BOOT, seed=7)
    assert r1["headline"] == r2["headline"]


def test_report_names_a_benchmark_inside_the_repository_relative_to_it():
    from backend.report.compute import shown_path
    from backend.settings import BENCHMARKS_DIR

    assert shown_path(str(BENCHMARKS_DIR / "cups-letters-test.jsonl")) == "data/benchmarks/cups-letters-test.jsonl"
    assert shown_path("/elsewhere/bench.jsonl") == "/elsewhere/bench.jsonl"
    assert shown_path(None) is None
