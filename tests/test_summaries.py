import numpy as np

from backend import summaries
from backend.trace import TraceSet
from tests.helpers_trace import backtracking_probs, make_trace, never_converging_probs


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


def test_option_similarity_ranks_from_a_precomputed_file():
    tr = make_trace(backtracking_probs(), correct=1, options=["Sydney", "Canberra", "Perth", "Melbourne"],
                    item_id="x-1")
    sim = {"items": {"x-1": {"distractor_ranks": {"Sydney": 1, "Perth": 3, "Melbourne": 2}}}}
    assert summaries.option_similarity_ranks(sim, tr) == {0: 1, 2: 3, 3: 2}
    assert summaries.option_similarity_ranks(None, tr) == {}
