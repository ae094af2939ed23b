import numpy as np

from backend import summaries
from backend.trace import TraceSet
from tests.helpers_trace import backtracking_probs, make_trace, never_converging_probs, one_hot_path


def test_metric_summary_and_seed_robustness():
    tr = make_trace(backtracking_probs(), correct=1)
    s = summaries.metric_summary(tr, {0: 1})
    assert s["Backtracks"].startswith("A -> B") and "similarity rank 1" in s["Abandoned answers"]
    assert s["Correct?"] == "yes"
    never = make_trace(never_converging_probs(), correct=None)
    s = summaries.metric_summary(never)
    assert s["Exploration length"] == "never converged" and s["Correct?"] == "no correct option"
    steady = np.tile([0.1, 0.7, 0.1, 0.1], (30, 1))
    df, sentence = summaries.seed_robustness([tr, make_trace(steady, seed=1, correct=1)])
    assert "only 1 of 2 seeds" in sentence and len(df) == 2


def test_variant_table_over_answer_orders():
    p = np.tile([0.7, 0.1, 0.1, 0.1], (30, 1))
    a = make_trace(p, correct=0, options=list("wxyz"), order=[0, 1, 2, 3])
    b = make_trace(p[:, [1, 0, 2, 3]], correct=1, options=list("xwyz"), order=[1, 0, 2, 3])
    table = summaries.variant_table(TraceSet([a, b]))
    assert table.loc[0, "accuracy"].startswith("100%")
    assert table.loc[0, "final answers (original order)"] == "A:2"
    assert table.loc[0, "steps below the mass threshold"] == "0% (threshold 0.01)"
    never = make_trace(never_converging_probs(), correct=None)
    t2 = summaries.variant_table(TraceSet([never, a]))
    assert t2.loc[0, "restricted mean exploration (censored at K)"] == f"{(30 + a.metrics.exploration_end) / 2:.1f}"


def test_option_similarity_ranks_from_a_precomputed_file():
    tr = make_trace(backtracking_probs(), correct=1, options=["Sydney", "Canberra", "Perth", "Melbourne"],
                    item_id="x-1")
    sim = {"items": {"x-1": {"distractor_ranks": {"Sydney": 1, "Perth": 3, "Melbourne": 2}}}}
    assert summaries.option_similarity_ranks(sim, tr) == {0: 1, 2: 3, 3: 2}
    assert summaries.option_similarity_ranks(None, tr) == {}


def test_metric_summary_counts_low_mass_steps_and_says_when_the_belief_moves_again():
    tr = make_trace(backtracking_probs(), correct=1)
    assert summaries.metric_summary(tr)["Option mass"] == "0 of 30 steps below the mass threshold 0.01"
    tr = make_trace(backtracking_probs(), correct=1)
    tr.raw_mass = tr.raw_mass.copy()
    tr.raw_mass[:3] = 1e-7
    s = summaries.metric_summary(tr)
    assert s["Option mass"].startswith("3 of 30 steps below the mass threshold 0.01 (greyed: not answering")
    # settles on A at step 1, moves to B at step 9: exploration end is not final
    moves = make_trace(np.array([[0.8, 0.2]] * 8 + [[0.2, 0.8]] * 6), correct=1)
    s = summaries.metric_summary(moves)
    assert s["Exploration length"] == "1 step (moves again later)"  # issue 13: no "1 steps"
    assert s["Exploration end"].startswith("step 1, the first step the KL stays <= 0.01 for 3 steps")
    assert "not final: the argmax changes again at step 9" in s["Exploration end"]
    assert "1 backtrack lands after it" in s["Exploration end"]
    still = summaries.metric_summary(make_trace(np.tile([0.1, 0.7, 0.1, 0.1], (10, 1))))
    assert still["Exploration length"] == "1 step"
    assert still["Exploration end"].endswith("no later movement in this run")
    # the backtrack's sensitivity to the run length
    short = make_trace(one_hot_path([0] * 3 + [1] * 27), correct=1)
    assert summaries.metric_summary(short)["Backtrack by run length"] == \
        "this backtrack holds for run length <= 3 only"
    assert summaries.run_length_text([0] * 5 + [1] * 5) == "a backtrack at every run length 2-5"
    assert summaries.run_length_text([0, 0, 1, 1, 1]) == "no backtrack at run length 3; one at run length <= 2"
    assert summaries.run_length_text([1] * 6) == "no backtrack at any run length 2-5"


def test_seed_robustness_says_whether_a_backtrack_is_robust():
    steady = np.tile([0.1, 0.7, 0.1, 0.1], (30, 1))
    bt = [make_trace(backtracking_probs(), seed=s, correct=1) for s in range(2)]
    _, sentence = summaries.seed_robustness(bt + [make_trace(steady, seed=2, correct=1)])
    assert "2 of 3 seeds" in sentence and "majority of seeds (robust)" in sentence
    _, sentence = summaries.seed_robustness(bt[:1] + [make_trace(steady, seed=s, correct=1) for s in (1, 2)])
    assert "1 of 3 seeds" in sentence and "not robust" in sentence


# ---------------------------------------------------------------------------------------------- issue 13
def test_plural():
    assert [summaries.plural(n, "step") for n in (0, 1, 2)] == ["0 steps", "1 step", "2 steps"]
    assert summaries.plural(1, "is", "are") == "1 is" and summaries.plural(3, "is", "are") == "3 are"


def test_metric_help_defines_each_metric_with_the_thresholds_in_force():
    tr = make_trace(backtracking_probs(), correct=1)
    helps = summaries.metric_help(tr)
    values = summaries.metric_summary(tr)
    assert set(helps) >= {"Final answer", "Correct?", "Exploration length", "Commitments", "Backtracks",
                          "Option mass"}
    for label, text in helps.items():
        assert text != values.get(label) and len(text) > 60  # a definition, not the value again
    assert "3 consecutive steps" in helps["Commitments"] and "0.01" in helps["Exploration length"]
    assert "3 steps" in helps["Exploration length"]  # the KL window
    assert "0.01" in helps["Option mass"]  # the mass threshold
    h5 = summaries.metric_help(tr.with_metrics(run_length=5, kl_threshold=0.003))
    assert "5 consecutive steps" in h5["Commitments"] and ">= 5 steps" in h5["Backtracks"]
    assert "0.003" in h5["Exploration length"]
    charts = summaries.chart_help(tr.with_metrics(run_length=4))
    assert "4 steps" in charts["belief"] and "renormalis" in charts["mass"] and "0.01" in charts["kl"]


def test_backtrack_hint_says_why_a_changing_answer_has_no_backtrack():
    # B for 2 steps, C for 1, then A: the answer changes twice, but only A is held 3 steps
    tr = make_trace(one_hot_path([1, 1, 2] + [0] * 10), correct=0)
    assert not tr.metrics.backtracks
    hint = summaries.backtrack_hint(tr.metrics)
    assert hint.startswith("0 backtracks: the answer changed 2 times (B -> C -> A)")
    assert "no answer was held for 3 steps before changing" in hint
    # with run length 2, B is a commitment and there is a backtrack: no hint
    assert summaries.backtrack_hint(tr.with_metrics(run_length=2).metrics) is None
    # never changes: no hint
    assert summaries.backtrack_hint(make_trace(one_hot_path([0] * 8)).metrics) is None
    # no commitment at all
    flip = make_trace(one_hot_path([0, 1] * 5), correct=0)
    assert "changed 9 times" in summaries.backtrack_hint(flip.metrics)
    assert "no commitment to backtrack from" in summaries.backtrack_hint(flip.metrics)
    # after the commitment, a short excursion
    tail = make_trace(one_hot_path([0] * 5 + [1, 1]), correct=0)
    assert "after the commitment to A" in summaries.backtrack_hint(tail.metrics)
    assert "1 time (A -> B)" in summaries.backtrack_hint(tail.metrics)
