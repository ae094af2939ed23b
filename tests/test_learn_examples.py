"""backend.learn (the Learn page's examples); named apart from tests/pages/test_learn.py (same basename)."""
import numpy as np

from backend import learn
from tests.helpers_trace import backtracking_probs, make_trace, never_converging_probs


def test_learn_select_and_explain():
    bt = make_trace(backtracking_probs(), correct=1)
    steady = make_trace(np.tile([0.1, 0.7, 0.1, 0.1], (30, 1)), correct=1, item_id="t-2")
    nca = make_trace(never_converging_probs(), correct=None, variant="nca", item_id="t-3")
    picks = learn.select_examples([bt, steady, nca])
    assert picks["backtrack"] == 0 and picks["nca"] == 2
    for kind, i in picks.items():
        text = learn.explain(kind, [bt, steady, nca][i])
        assert text.count(". ") >= 1 and len(text) < 600
