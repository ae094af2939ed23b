"""Exit rules on hand-made trajectories: where each stops, the answer there, never stopping, and the table."""
from __future__ import annotations

import numpy as np
import pytest

from backend.errors import UsageError
from backend.stopping import Rule, default_rules, exit_rule_table, record_of, stop_step, stops
from helpers_trace import make_trace, one_hot_path


def _by_label(st):
    return {f"{s.rule} {s.setting}".strip(): s for s in st}


def test_kl_rule_stops_at_first_small_step():
    # beliefs settle: 0.4 -> 0.6 -> 0.7 -> 0.7 -> 0.7 on option 1
    rows = [[0.6, 0.4], [0.4, 0.6], [0.3, 0.7], [0.3, 0.7], [0.3, 0.7]]
    assert stop_step(Rule("kl", 1e-3), rows) == (4, 5)  # KL(p_4 || p_3) = 0
    s = stops(rows, rules=[Rule("kl", 1e-3)])[0]
    assert s.step == 4 and s.answer == 1 and s.fired
    # a threshold above the change between steps 2 and 3 stops there: KL(p3||p2) ~ 0.0226
    assert stop_step(Rule("kl", 0.05), rows)[0] == 3


def test_entropy_rule():
    rows = [[0.5, 0.5], [0.9, 0.1], [0.1, 0.9], [0.2, 0.8]]  # H2 == H3 exactly: stops at 3 with answer 1
    assert stop_step(Rule("entropy", 1e-3), rows)[0] == 3
    assert stops(rows, rules=[Rule("entropy", 1e-3)])[0].answer == 1


def test_argmax_rule_and_paper_window():
    p = one_hot_path([0, 1, 1, 2, 2, 2, 2, 0])
    assert stop_step(Rule("argmax", 3.0), p)[0] == 6
    assert stop_step(Rule("argmax", 2.0), p)[0] == 3
    assert stop_step(Rule("argmax", 1.0), p)[0] == 1
    assert stop_step(Rule("argmax", 5.0), p)[0] is None  # never: the last step is used


def test_latent_rule_needs_states():
    p = one_hot_path([0] * 5)
    states = np.array([[1.0, 0], [2, 0], [2.5, 0], [2.51, 0], [2.52, 0]])  # steps: .5, .2, .004, .004
    assert stop_step(Rule("latent", 0.01), p, states)[0] == 4
    assert stop_step(Rule("latent", 0.01), p) is None
    assert "latent" not in {s.rule for s in stops(p)}  # left out without states
    with pytest.raises(UsageError):
        stop_step(Rule("latent", 0.01), p, states[:3])


def test_exit_gate_rule():
    p = one_hot_path([0, 0, 1, 1, 1])
    e = np.array([0.1, 0.2, 0.3, 0.1, 0.3])  # cumulative .1 .3 .6 .7 1.0
    assert stop_step(Rule("exit_gate", 0.5), p, exit_probs=e)[0] == 3
    assert stop_step(Rule("exit_gate", 0.9), p, exit_probs=e)[0] == 5
    assert stop_step(Rule("exit_gate", 0.5), p, exit_probs=[0.0] * 5)[0] is None
    assert stop_step(Rule("exit_gate", 0.5), p) is None
    assert _by_label(stops(p, exit_probs=e))["exit_gate q = 0.5"].answer == 1


def test_exploration_rule_is_decidable_at_end_plus_window():
    p = one_hot_path([0, 0, 1] + [1] * 7)  # kl_3.. are 0: exploration ends at 3, decidable at 6
    assert stop_step(Rule("exploration", (0.01, 3.0)), p)[0] == 6


def test_last_and_oracle():
    p = one_hot_path([0, 1, 0, 2, 2, 2])
    assert stop_step(Rule("last"), p) == (6, 6)
    assert stop_step(Rule("oracle"), p)[0] == 4
    assert stop_step(Rule("oracle"), one_hot_path([3] * 4))[0] == 1


def test_never_stopping_uses_the_last_step():
    p = one_hot_path([t % 4 for t in range(12)], strong=0.4)  # a new argmax every step: never settles
    st = _by_label(stops(p))
    for label in ("kl < 0.0005", "kl < 0.001", "argmax 3 steps", "argmax 5 steps", "exploration kl <= 0.01 x 3"):
        assert st[label].step == 12 and not st[label].fired and st[label].answer == int(p[-1].argmax())


def test_table_per_variant_and_last_equals_final_accuracy():
    good = one_hot_path([1, 0, 0, 0, 0, 0, 0, 0])  # settles early on option 0
    late = one_hot_path([1, 1, 1, 1, 1, 0, 0, 0])  # argmax 1 for 5 steps, then 0
    never = one_hot_path([(t // 2) % 4 for t in range(8)], strong=0.4)
    recs = [{"probs": good, "correct": 0, "variant": "base"}, {"probs": late, "correct": 0, "variant": "base"},
            {"probs": never, "correct": 1, "variant": "base"}, {"probs": good, "correct": None, "variant": "nca"}]
    rows = exit_rule_table(recs)
    base = {f"{r['rule']} {r['setting']}".strip(): r for r in rows if r["variant"] == "base"}
    finals = [int(r["probs"][-1].argmax()) == r["correct"] for r in recs[:3]]
    assert base["last"]["accuracy"] == pytest.approx(np.mean(finals)) and base["last"]["mean_steps"] == 8
    assert base["oracle"]["accuracy"] == base["last"]["accuracy"]
    assert base["oracle"]["mean_steps"] == pytest.approx((2 + 6 + 7) / 3)  # never: 0 0 1 1 2 2 3 3 settles at 7
    a3 = base["argmax 3 steps"]  # good: 4 (answer 0), late: 3 (answer 1, wrong), never: 8 (never stopped)
    assert a3["mean_steps"] == pytest.approx((4 + 3 + 8) / 3) and a3["never_stopped"] == pytest.approx(1 / 3)
    assert a3["accuracy"] == pytest.approx(1 / 3) and a3["agrees_with_final"] == pytest.approx(2 / 3)
    nca = [r for r in rows if r["variant"] == "nca"]
    assert nca and all(r["accuracy"] is None for r in nca)
    assert {r["rule"] for r in rows} == {"kl", "entropy", "argmax", "exploration", "last", "oracle"}
    # from traces: the latent rule joins when states are recorded
    tr = make_trace(good, correct=0)
    rows_tr = exit_rule_table([record_of(tr)])
    assert "latent" in {r["rule"] for r in rows_tr}


def test_rule_settings_are_checked():
    for bad in [("kl", None), ("kl", -1.0), ("argmax", 2.5), ("exit_gate", 2.0), ("nap", 1.0), ("last", 1.0)]:
        with pytest.raises(UsageError):
            Rule(*bad)
    assert [r.name for r in default_rules()][-2:] == ["last", "oracle"]


def test_table_intervals_resample_items():
    """With n_boot, mean steps and accuracy get percentile intervals from a bootstrap over items (the report's
    scheme): they equal an explicit loop over resampled items, and an item's instances move together."""
    from backend.stats import bootstrap_weights

    good = one_hot_path([1, 0, 0, 0, 0, 0, 0, 0])
    late = one_hot_path([1, 1, 1, 1, 1, 0, 0, 0])
    recs = [{"probs": good, "correct": 0, "variant": "base", "item_id": "a"},
            {"probs": late, "correct": 0, "variant": "base", "item_id": "a"},
            {"probs": late, "correct": 0, "variant": "base", "item_id": "b"},
            {"probs": good, "correct": 1, "variant": "base", "item_id": "c"}]
    plain = exit_rule_table(recs)
    assert "accuracy_low" not in plain[0]
    rows = exit_rule_table(recs, n_boot=300, seed=3)
    r = next(x for x in rows if x["rule"] == "argmax" and x["setting"] == "3 steps")
    assert r["n_items"] == 3 and r["n_boot"] == 300
    # argmax-3 stops: good at 4 (answer 0), late at 3 (answer 1)
    steps = {"a": [4, 3], "b": [3], "c": [4]}
    right = {"a": [1, 0], "b": [0], "c": [0]}
    W = bootstrap_weights(3, 300, 3)
    def ratio(d):
        num = np.array([sum(d[k]) for k in "abc"], float)
        den = np.array([len(d[k]) for k in "abc"], float)
        return W @ num / (W @ den)
    assert r["mean_steps_low"] == pytest.approx(np.quantile(ratio(steps), 0.025))
    assert r["mean_steps_high"] == pytest.approx(np.quantile(ratio(steps), 0.975))
    assert r["accuracy_low"] == pytest.approx(np.quantile(ratio(right), 0.025))
    assert r["accuracy_high"] == pytest.approx(np.quantile(ratio(right), 0.975))
    assert r["mean_steps_low"] <= r["mean_steps"] <= r["mean_steps_high"]
    assert {k: v for k, v in r.items() if k in plain[0]} == next(
        x for x in plain if x["rule"] == "argmax" and x["setting"] == "3 steps")


def test_records_from_results_read_the_exit_gate_when_stored():
    import pandas as pd
    from backend.stopping import records_from_results

    p = one_hot_path([0, 0, 0, 0])
    df = pd.DataFrame({"belief": [list(p), list(p)], "variant": ["base", "base"], "correct": [0, 0],
                       "item_id": ["x", "y"], "exit_prob": [[0.1, 0.5, 0.2, 0.2], None]})
    recs = records_from_results(df)
    assert recs[0]["exit_probs"].tolist() == [0.1, 0.5, 0.2, 0.2] and recs[1]["exit_probs"] is None
    gate = [r for r in exit_rule_table(recs) if r["rule"] == "exit_gate"]
    assert {r["setting"]: r["n"] for r in gate} == {"q = 0.5": 1, "q = 0.9": 1}
    assert next(r for r in gate if r["setting"] == "q = 0.5")["mean_steps"] == 2
    df["exit_prob"] = float("nan")  # rows of parts written before the column existed
    assert all(r["exit_probs"] is None for r in records_from_results(df))
