"""The reporting rules of issue 10 (method.md, "Reporting rules") on hand-made results sets: option mass, robust
backtracks across seeds, sensitivity, censoring, the within-item gain, similarity baselines, position bias, labels,
and the JSON field names scripts rely on."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from backend.metrics import backtrack_verdict
from backend.report import compute_report, to_json, to_markdown

T = 8
N_BOOT = 200


def argmax_row(item, variant="base", perm=0, seed=0, *, argmax=(0,) * T, correct=0, mass=None, expl=1,
               options=("ans", "d1", "d2", "d3"), domain="factual", order=(0, 1, 2, 3), kl=None):
    """A row whose per-step columns (argmax, letter mass, KL) are given; backtracked / frontrunner follow the
    paper's rule on ``argmax``."""
    am = list(argmax)
    bt, abandoned, com = backtrack_verdict(am, 3)
    final = am[-1]
    ent = list(np.linspace(1.2, 0.2, T))
    conv = expl is not None
    return {"item_id": item, "domain": domain, "variant": variant, "permutation": perm, "seed": seed,
            "model": "hand-model", "checkpoint_hash": "h", "steps": T, "template": "t", "n_options": 4,
            "options": list(options), "order": list(order), "correct": correct, "final_answer": final,
            "final_answer_original": order[final], "final_option": options[final],
            "is_correct": None if correct is None else final == correct, "backtracked": bt, "converged": conv,
            "exploration_end": expl, "entropy": ent, "final_entropy_norm": ent[-1] / math.log(4),
            "abandoned_options": [options[a] for a in abandoned], "frontrunner": com[0].option if com else None,
            "argmax": am, "letter_mass": list(mass if mass is not None else [0.9] * T),
            "kl": list(kl if kl is not None else [0.0] * (T - 1))}


def var(rep, v, domain="all"):
    return next(g for g in rep["groups"] if g["variant"] == v and g["domain"] == domain)


# ---------------------------------------------------------------------------------------------- option mass
def test_low_mass_shares_and_the_answering_subset():
    low_early = [1e-5, 1e-5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]  # low before exploration end (step 3): answering
    silent = [1e-6] * T                                        # never answers
    R = [argmax_row("a", mass=low_early, expl=3), argmax_row("b", mass=silent, expl=1, argmax=(1,) * T),
         argmax_row("c", expl=2), argmax_row("d", mass=[0.5] * 7 + [1e-3], expl=None)]
    rep = compute_report(pd.DataFrame(R), n_boot=N_BOOT)
    b = var(rep, "base")
    assert b["low_mass_share"]["value"] == pytest.approx((2 + 8 + 0 + 1) / 32)
    assert b["low_mass_instance_share"]["value"] == pytest.approx(2 / 4)  # b, and d at its last step
    ans = b["answering"]
    assert ans["available"] and ans["instances"]["value"] == 2  # a and c
    assert b["accuracy"]["value"] == pytest.approx(3 / 4) and ans["accuracy"]["value"] == pytest.approx(1.0)
    assert rep["meta"]["mass_threshold"] == 0.01 and rep["meta"]["headline_basis"] == "all instances"
    # the threshold is a parameter: at 1e-7 every step answers
    lo = compute_report(pd.DataFrame(R), n_boot=N_BOOT, mass_threshold=1e-7)
    assert var(lo, "base")["low_mass_share"]["value"] == 0 and var(lo, "base")["answering"]["instances"]["value"] == 4
    # the per-step share of low-mass instances goes with the entropy curves
    curve = [r for r in rep["entropy_curves"] if r["variant"] == "base"]
    assert curve[0]["low_mass_share"] == pytest.approx(2 / 4) and curve[-1]["low_mass_share"] == pytest.approx(2 / 4)
    md = to_markdown(rep)
    assert "## Option mass" in md and "answering instances only" in md and "over **all instances**" in md


# ---------------------------------------------------------------------------------------------- seeds
BT = (0, 0, 0, 1, 1, 1, 1, 1)   # A for 3 steps, then B: a backtrack A -> B
NO = (1,) * T


def test_robust_backtrack_counts_a_majority_of_seeds_and_flips():
    R = []
    for seed, am in enumerate((BT, BT, NO)):        # p0: 2 of 3 seeds backtrack -> robust, flips
        R.append(argmax_row("a", perm=0, seed=seed, argmax=am, correct=1))
    for seed, am in enumerate((BT, NO, NO)):        # p1: 1 of 3 -> not robust, flips
        R.append(argmax_row("a", perm=1, seed=seed, argmax=am, correct=1))
    for seed in range(3):                            # b p0: 3 of 3 -> robust, stable
        R.append(argmax_row("b", perm=0, seed=seed, argmax=BT, correct=1))
    for seed in range(3):                            # b p1: 0 of 3 -> stable
        R.append(argmax_row("b", perm=1, seed=seed, argmax=NO, correct=1))
    rep = compute_report(pd.DataFrame(R), n_boot=N_BOOT)
    b = var(rep, "base")
    assert b["backtrack_rate"]["value"] == pytest.approx(6 / 12)        # raw, per seed
    assert b["robust_backtrack_rate"]["value"] == pytest.approx(2 / 4)  # a/p0 and b/p0
    assert b["verdict_flip_share"]["value"] == pytest.approx(2 / 4)     # a/p0 and a/p1
    assert b["robust_backtrack_rate"]["n"] == 4 and b["robust_backtrack_rate"]["seeds_per_instance"] == 3
    # one seed per instance: not measured, and the report says why
    one = compute_report(pd.DataFrame([r for r in R if r["seed"] == 0]), n_boot=N_BOOT)
    rb = var(one, "base")["robust_backtrack_rate"]
    assert rb["value"] is None and "--seeds" in rb["reason"]
    assert "## Seeds: robust backtracks" in to_markdown(rep)


# ---------------------------------------------------------------------------------------------- sensitivity, censoring
def test_backtrack_rate_by_run_length_and_exploration_by_kl_threshold():
    R = [argmax_row("a", argmax=(0, 0, 1, 1, 1, 1, 1, 1), correct=1),          # backtracks at run length 2 only
         argmax_row("b", argmax=(0, 0, 0, 0, 0, 1, 1, 1), correct=1),          # at 2 and 3
         argmax_row("c", argmax=(0, 0, 0, 0, 0, 0, 0, 0), correct=0)]          # never
    kl = [0.02, 0.02, 0.02, 0.005, 0.005, 0.005, 0.001]
    R[0]["kl"] = kl
    rep = compute_report(pd.DataFrame(R), n_boot=N_BOOT)
    by = var(rep, "base")["backtrack_rate_by_run_length"]
    assert set(by) == {"2", "3", "4", "5"}
    assert [by[k]["value"] for k in ("2", "3", "4", "5")] == pytest.approx([2 / 3, 1 / 3, 0, 0])
    ek = var(rep, "base")["exploration_by_kl_threshold"]
    assert set(ek) == {"0.003", "0.01", "0.03"}
    # row a: never converges at 0.003 (censored at T = 8), ends at 4 at 0.01, at 1 at 0.03; b, c end at 1
    assert ek["0.003"]["exploration_restricted_mean"]["value"] == pytest.approx((8 + 1 + 1) / 3)
    assert ek["0.003"]["never_converged_share"]["value"] == pytest.approx(1 / 3)
    assert ek["0.01"]["exploration_restricted_mean"]["value"] == pytest.approx((4 + 1 + 1) / 3)
    assert ek["0.03"]["converged_mean"]["value"] == pytest.approx(1.0)
    assert "## Sensitivity: run length and KL threshold" in to_markdown(rep)


def test_restricted_mean_censors_never_converged_at_T():
    R = [argmax_row("a", expl=2), argmax_row("b", expl=4), argmax_row("c", expl=None),
         argmax_row("a", "easy", expl=1), argmax_row("b", "easy", expl=1), argmax_row("c", "easy", expl=3)]
    rep = compute_report(pd.DataFrame(R), n_boot=N_BOOT)
    b = var(rep, "base")
    assert b["mean_exploration"]["value"] == pytest.approx(3.0)                  # converged only: 2, 4
    assert b["exploration_restricted_mean"]["value"] == pytest.approx((2 + 4 + T) / 3)
    assert b["never_converged_share"]["value"] == pytest.approx(1 / 3)
    pair = rep["exploration"]["pair"]
    assert pair["easy_shorter"]["value"] == pytest.approx(1 - (5 / 3) / 3)
    assert pair["easy_shorter_restricted"]["value"] == pytest.approx(1 - (5 / 3) / ((2 + 4 + T) / 3))
    assert pair["never_converged_share"] == {"base": pytest.approx(1 / 3), "easy": 0}
    keys = [h["key"] for h in rep["headline"]]
    assert "easy_shorter" in keys and "easy_shorter_restricted" in keys


def test_later_movement_after_exploration_end_is_counted():
    moves = argmax_row("a", argmax=(0, 0, 0, 1, 1, 1, 1, 1), correct=1, expl=1)   # ends at 1, switches at 4
    still = argmax_row("b", argmax=(1,) * T, correct=1, expl=1)
    rep = compute_report(pd.DataFrame([moves, still]), n_boot=N_BOOT)
    b = var(rep, "base")
    assert b["later_movement_share"]["value"] == pytest.approx(1 / 2)
    assert b["backtracks_after_exploration_end"] == 1
    md = to_markdown(rep)
    assert "it is not final" in md and "1 backtracking instance(s) commit to their final answer after it" in md


# ---------------------------------------------------------------------------------------------- within-item gain
def test_within_item_gain_disagrees_with_the_pooled_one_on_a_confounded_case():
    """Simpson's paradox: within each item backtracking instances are 25 points more accurate, but backtracks are
    common on the hard item and rare on the easy one, so pooled they look 20 points *less* accurate."""
    R, p = [], 0

    def add(item, bt, correct, k):
        nonlocal p
        for _ in range(k):
            am = BT if bt else NO                    # final answer B (index 1)
            R.append(argmax_row(item, perm=p, argmax=am, correct=1 if correct else 2))
            p += 1
    add("easy", True, True, 2)                       # easy item: bt 2/2 correct, no-bt 6/8
    add("easy", False, True, 6)
    add("easy", False, False, 2)
    add("hard", True, True, 2)                       # hard item: bt 2/8 correct, no-bt 0/2
    add("hard", True, False, 6)
    add("hard", False, False, 2)
    rep = compute_report(pd.DataFrame(R), n_boot=N_BOOT)
    b = var(rep, "base")
    assert b["acc_gain_points"]["value"] == pytest.approx(0.4 - 0.6)
    w = b["accuracy_gain_within_item"]
    assert w["value"] == pytest.approx(0.25) and "Mantel-Haenszel" in w["estimator"]
    # relative: MH risk ratio - 1 = (2*8/10 + 2*2/10) / (6*2/10 + 0*8/10) - 1
    assert b["accuracy_gain_within_item_relative"]["value"] == pytest.approx((1.6 + 0.4) / 1.2 - 1)
    h = {r["key"]: r for r in rep["headline"]}
    assert h["acc_gain_within_item"]["value"] == pytest.approx(0.25)
    assert h["acc_gain_points"]["value"] == pytest.approx(-0.2)
    # the paper's consistency check: accuracy of backtracked instances = share of backtracks ending correct
    c = rep["consistency"]
    assert c["reference"]["implied_acc_not_backtracked_if_relative"] == pytest.approx(0.52 / 1.34)
    assert c["reference"]["implied_acc_not_backtracked_if_points"] == pytest.approx(0.18)
    assert c["this_run"]["base"]["equal"] is True
    md = to_markdown(rep)
    assert "38.8% if relative" in md and "18% if in points" in md and "within item" in md


# ---------------------------------------------------------------------------------------------- similarity baselines
SIM = {"model": "test", "items": {iid: {"distractor_ranks": {"d1": 1, "d2": 2, "d3": 3}} for iid in "abc"}}


def test_frontrunner_and_wrong_choice_rank_baselines_per_domain():
    R = [  # a: first commits to d1 (rank 1), abandons it for the answer
        argmax_row("a", argmax=BT, correct=1, options=("d1", "ans", "d2", "d3")),
        # b: commits to d2 (rank 2) and stays there: a wrong frontrunner and a wrong final answer (counted once)
        argmax_row("b", argmax=(0,) * T, correct=1, options=("d2", "ans", "d1", "d3"), domain="arithmetic"),
        # c: first commits to d3 (rank 3), ends on d1 (rank 1): two wrong choices
        argmax_row("c", argmax=(0, 0, 0, 2, 2, 2, 2, 2), correct=1, options=("d3", "ans", "d1", "d2"),
                   domain="arithmetic"),
    ]
    rep = compute_report(pd.DataFrame(R), similarity=SIM, n_boot=N_BOOT)
    b = var(rep, "base")
    fr, wr, ab = (b["frontrunner_similarity_ranks"], b["wrong_choice_similarity_ranks"],
                  b["abandoned_similarity_ranks"])
    assert fr["n"] == 3 and [fr[f"rank_{j}"]["value"] for j in (1, 2, 3)] == pytest.approx([1 / 3, 1 / 3, 1 / 3])
    assert wr["n"] == 4 and [wr[f"rank_{j}"]["value"] for j in (1, 2, 3)] == pytest.approx([2 / 4, 1 / 4, 1 / 4])
    assert ab["n"] == 2 and [ab[f"rank_{j}"]["value"] for j in (1, 2, 3)] == pytest.approx([1 / 2, 0, 1 / 2])
    ar = var(rep, "base", "arithmetic")["frontrunner_similarity_ranks"]
    assert ar["n"] == 2 and ar["rank_1"]["value"] == 0
    md = to_markdown(rep)
    assert "| base | arithmetic (*) |" in md and "sentence-embedding similarity with a number means little" in md


# ---------------------------------------------------------------------------------------------- position bias
def test_position_test_compares_final_with_correct_position():
    """The old design (the shipped report's): the correct answer at A in 7 of 25 orders, 140 items, a model that is
    always right. Final positions are far from uniform (chi-square 16.8, the old "finding"), but they follow the
    correct positions exactly: no position bias."""
    R = []
    correct_at = [0] * 7 + [1] * 6 + [2] * 6 + [3] * 6
    for i, c in enumerate(correct_at):
        for item in range(140):
            R.append(argmax_row(f"i{item}", perm=i, argmax=(c,) * T, correct=c))
    rep = compute_report(pd.DataFrame(R), n_boot=20)
    pb = rep["position_bias"]["base"]
    assert pb["chi2"] == pytest.approx(0.0) and pb["p_value"] == pytest.approx(1.0)
    assert pb["chi2_uniform"] == pytest.approx(16.8) and pb["p_value_uniform"] < 0.001  # the old check's artefact
    assert np.diag(pb["contingency"]).tolist() == [980, 840, 840, 840]
    assert "chi2_contingency" in pb["test"]
    # a model that answers A whenever the correct answer is at D is biased: detected
    R2 = [dict(r) for r in R]
    for r in R2:
        if r["correct"] == 3:
            r.update(final_answer=0, argmax=[0] * T, is_correct=False)
    pb2 = compute_report(pd.DataFrame(R2), n_boot=20)["position_bias"]["base"]
    assert pb2["p_value"] < 0.001 and pb2["contingency"][3][0] == 840


# ---------------------------------------------------------------------------------------------- names and labels
ISSUE_FIELDS = ("low_mass_share", "robust_backtrack_rate", "backtrack_rate_by_run_length", "verdict_flip_share",
                "exploration_restricted_mean", "never_converged_share", "accuracy_gain_within_item",
                "frontrunner_similarity_ranks")


def test_json_carries_the_named_fields_per_variant_and_labels_say_what_was_measured():
    R = [argmax_row(i, v, perm=p, seed=s, argmax=BT if (p + s) % 2 else NO, correct=None if v == "nca" else 1)
         for i in "ab" for v in ("base", "easy", "nca") for p in range(2) for s in range(2)]
    df = pd.DataFrame(R)
    df.attrs["manifest"] = {"benchmark": "/x/data/benchmarks/cups-mini-test.jsonl"}
    rep = json.loads(to_json(compute_report(df, similarity=SIM, n_boot=N_BOOT)))
    for v in ("base", "easy", "nca"):
        for f in ISSUE_FIELDS:
            assert f in rep["variants"][v], (v, f)
        assert rep["variants"][v] == next(g for g in rep["groups"] if g["variant"] == v and g["domain"] == "all")
    assert set(rep["variants"]["base"]["backtrack_rate_by_run_length"]) == {"2", "3", "4", "5"}
    assert rep["meta"]["title"] == "hand-model on cups-mini-test"
    md = to_markdown(rep)
    assert md.startswith("# LoopLens sweep report: hand-model on cups-mini-test")
    assert "reference values from Huginn-0125" in md and "reproduced" not in md.replace("not reproduced", "")
    assert "are not reproduced by this run" in md  # the caveat sentence: another model, another benchmark
    assert "settles for good" not in md
