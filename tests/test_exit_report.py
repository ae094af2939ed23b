"""Report tables of issue 12: exit rules on a results set, the point-of-no-return curve, the backtrack splice."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from backend.errors import UsageError
from backend.exit_report import backtrack_splice_records, noise_ponr_records
from backend.intervention_tables import backtrack_splice_table, final_backtrack, ponr_summary, ponr_table
from backend.stopping import exit_rule_table_for_results
from backend.items import Item
from backend.metrics import analyze_trajectory
from backend.trace import trace_items
from helpers_trace import one_hot_path


def _rows():
    good = one_hot_path([1, 0, 0, 0, 0, 0])
    wrong = one_hot_path([0, 0, 0, 1, 1, 1])
    return pd.DataFrame({
        "variant": ["base", "base", "nca"],
        "correct": pd.array([0, 0, None], dtype="Int64"),
        "belief": [[list(r) for r in p] for p in (good, wrong, good)],
    })


def test_exit_rule_table_from_results_rows():
    rows = exit_rule_table_for_results(_rows())
    base = {(r["rule"], r["setting"]): r for r in rows if r["variant"] == "base"}
    assert base[("last", "")]["accuracy"] == 0.5 and base[("last", "")]["mean_steps"] == 6
    assert base[("oracle", "")]["mean_steps"] == pytest.approx((2 + 4) / 2)
    # the wrong run held the correct answer for steps 1-3: stopping there is right, the last step is not
    assert base[("argmax", "3 steps")]["accuracy"] == 1.0 and base[("argmax", "3 steps")]["agrees_with_final"] == 0.5
    assert all(r["accuracy"] is None for r in rows if r["variant"] == "nca")
    hidden = np.stack([np.cumsum(np.ones((6, 4)), 0)] * 3).astype(np.float16)
    with_states = exit_rule_table_for_results(_rows(), hidden)
    assert "latent" in {r["rule"] for r in with_states}
    with pytest.raises(UsageError):
        exit_rule_table_for_results(_rows(), hidden[:2])
    with pytest.raises(UsageError, match="belief"):
        exit_rule_table_for_results(pd.DataFrame({"variant": ["base"]}))


def test_ponr_table_and_point():
    recs = []
    for k in (1, 2, 3):
        for i in range(10):
            changed = (k == 3 and i < 5) or (k == 1 and i < 1)
            recs.append({"variant": "base", "sigma": 1.0, "at": k, "final_changed": changed,
                         "baseline_backtracked": i < 4})
    rows = ponr_table(recs, n_boot=200)
    allrows = {r["at"]: r for r in rows if r["group"] == "all"}
    assert allrows[3]["share"] == 0.5 and allrows[1]["share"] == 0.1 and allrows[2]["share"] == 0.0
    assert allrows[3]["low"] <= 0.5 <= allrows[3]["high"] and allrows[3]["n"] == 10
    bt = {r["at"]: r for r in rows if r["group"] == "backtracked"}
    assert bt[3]["share"] == 1.0 and bt[3]["n"] == 4
    (summ,) = [r for r in ponr_summary(rows, 0.05) if r["group"] == "all"]
    # the curve is high at 1, low at 2, high at 3 (late noise matters): no step from which it stays low
    assert summ["first_stable_step"] is None and summ["last_safe_step"] is None
    assert summ["max_share"] == 0.5 and summ["max_at"] == 3
    (early,) = [r for r in ponr_summary([r for r in rows if r["at"] < 3], 0.05) if r["group"] == "all"]
    assert early["first_stable_step"] == 2 and early["last_safe_step"] is None
    (late,) = [r for r in ponr_summary([r for r in rows if r["at"] > 1], 0.05) if r["group"] == "all"]
    assert late["first_stable_step"] is None and late["last_safe_step"] == 2


def test_final_backtrack_pair():
    m = analyze_trajectory(one_hot_path([0] * 3 + [2] * 3 + [0] * 3 + [1] * 4))  # A, C, A, B: final B
    a, c = final_backtrack(m)
    assert (a.option, a.start, a.end) == (0, 7, 9) and (c.option, c.start) == (1, 10)
    back = analyze_trajectory(one_hot_path([0] * 3 + [2] * 3 + [0] * 4))  # A, C, A: C abandoned
    a, c = final_backtrack(back)
    assert a.option == 2 and c.option == 0 and c.start == 7
    assert final_backtrack(analyze_trajectory(one_hot_path([1] * 6))) is None


Q = Item("What is the capital of France?", ("Paris", "London", "Berlin", "Madrid"), 0, id="q1", variant="base")


def test_noise_ponr_records_sigma_zero_never_changes(tiny_bundle):
    items = [Q, Q.permuted(1)]
    recs = noise_ponr_records(tiny_bundle, items, [1, 2], 8, sigma=0.0, at_steps=[2, 5])
    assert len(recs) == 4 and not any(r["final_changed"] or r["changed_at_k"] for r in recs)
    assert {r["at"] for r in recs} == {2, 5}
    big = noise_ponr_records(tiny_bundle, items, [1, 2], 8, sigma=50.0, at_steps=[7])
    assert len(big) == 2


def test_backtrack_splice_records_plan(tiny_bundle):
    (real,) = trace_items(tiny_bundle, [Q], 12, seeds=4)
    fake = dataclasses.replace(real, probs=one_hot_path([0] * 4 + [1] * 8), _metrics=None)  # A 1-4, B 5-12
    recs = backtrack_splice_records(tiny_bundle, [Q], [4], 12, baseline=[fake], positions="all")
    (r,) = recs
    assert r["splice_step"] == 4 and r["at"] == 7 and r["abandoned"] == 0 and r["destination"] == 1
    # every position of the run's own state at step 4: step 7 reads like the real run's step 4
    assert r["returns_at_k"] == (int(real.probs[3].argmax()) == 0)
    table = backtrack_splice_table(recs, n_boot=50)
    assert table[0]["n"] == 1 and table[0]["positions"] == "all"
    steady = dataclasses.replace(real, probs=one_hot_path([1] * 12), _metrics=None)
    assert backtrack_splice_records(tiny_bundle, [Q], [4], 12, baseline=[steady]) == []  # no backtrack, no splice


def test_intervention_study_on_a_tiny_benchmark(tiny_bundle):
    import json

    from backend.exit_report import intervention_study
    from backend.items import BenchmarkItem

    bi = BenchmarkItem(id="b1", question="What is the capital of France?", answer="Paris",
                       distractors=["London", "Berlin", "Madrid"], easy_distractors=["blue", "seven", "dog"])
    out = intervention_study(tiny_bundle, [bi], steps=6, permutations=2, ponr_permutations=1, sigmas=(0.0,),
                             n_boot=50)
    json.dumps(out)
    assert set(out["baseline"]) == {"base", "easy"} and out["baseline"]["base"]["n"] == 2
    last = {r["variant"]: r for r in out["exit_rules"] if r["rule"] == "last"}
    assert last["base"]["accuracy"] == out["baseline"]["base"]["accuracy"]
    assert {r["at"] for r in out["ponr"]} == {1, 2, 3, 4, 5}
    assert all(r["share"] == 0.0 for r in out["ponr"])  # sigma 0 never changes an answer
    assert all(r["max_share"] == 0.0 and r["first_stable_step"] == 1 for r in out["ponr_summary"])


def test_report_sections_from_rows_hidden_and_a_study():
    from backend.intervention_tables import report_sections

    df = _rows()
    hidden = np.stack([np.cumsum(np.ones((6, 4)), 0)] * 3).astype(np.float16)
    study = {"parameters": {"sigmas": [1.0]}, "ponr": [{"variant": "base", "at": 1}], "ponr_summary": [],
             "backtrack_splice": [], "exit_rules": "not copied"}
    sec = report_sections(df, hidden, study, n_boot=50)
    assert {r["rule"] for r in sec["exit_rules"]} >= {"latent", "last", "oracle"}
    # the 'wrong' row backtracks A -> B at step 4 (commitments A 1-3, B 4-6)
    prof = sec["dynamics_around_backtracks"]["base"]["step_size"]
    assert prof["n_events"] == 1 and prof["offsets"][4] == 0
    assert sec["interventions"]["ponr"] == study["ponr"] and "exit_rules" not in sec["interventions"]
    plain = report_sections(df)
    assert "dynamics_around_backtracks" not in plain and "interventions" not in plain
