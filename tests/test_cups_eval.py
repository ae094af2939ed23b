"""backend/cups_eval.py: the default-model targets, on hand-made traces of real cups items (no model)."""
from __future__ import annotations

import random

import numpy as np

from backend import cups, cups_eval
from backend.items import BenchmarkItem
from tests.helpers_trace import one_hot_path, make_trace

ITEM = BenchmarkItem.from_dict(cups.make_item(0, ["s12", "s23", "s34"], cups.simulate(0, ["s12", "s23", "s34"]),
                                              "x-1", random.Random(0)))
# path c1 -> c2 -> c3 -> c4: base options c4 (answer), then c3 (1 short), c2 (2 short), c1 (3 short)


def _trace(argmaxes, seed=0, variant="base"):
    inst = ITEM.instance(variant, 0)
    return make_trace(one_hot_path(argmaxes), correct=inst.correct, options=list(inst.options), seed=seed,
                      item_id=ITEM.id, variant=variant)


def test_option_kinds_follow_the_annotations():
    tr = _trace([0] * 30)
    assert [cups_eval.option_kind(ITEM, tr, i) for i in range(4)] == ["answer", "1 short", "2 short", "3+ short"]
    easy = _trace([0] * 30, variant="easy")
    assert [cups_eval.option_kind(ITEM, easy, i) for i in range(1, 4)] == ["not a cup"] * 3


def test_robust_backtracks_need_a_majority_of_seeds_and_kinds_are_counted():
    bt = [1] * 5 + [0] * 25  # commits to "1 short", then to the answer
    flat = [0] * 30
    runs = [[_trace(bt, 0)], [_trace(bt, 1)], [_trace(flat, 2)]]
    s = cups_eval.summarize([ITEM], runs)
    assert s["backtrack_rate_per_seed"] == round(2 / 3, 3) and s["robust_backtrack_rate"] == 1.0
    assert s["verdict_flip_share"] == 1.0 and s["accuracy"] == 1.0 and s["mass_ok_share"] == 1.0
    k = cups_eval.kinds_table([ITEM], runs)
    assert k["abandoned"] == {"1 short": 1.0} and k["base_rate"]["answer"] == 0.25
    assert k["wrong_frontrunner"] == {"1 short": 1.0}
    runs1 = [[_trace(bt, 0)], [_trace(flat, 1)], [_trace(flat, 2)]]
    assert cups_eval.summarize([ITEM], runs1)["robust_backtrack_rate"] == 0.0


def test_low_option_mass_is_counted():
    tr = _trace([0] * 30)
    tr.raw_mass = tr.probs * np.linspace(0.1, 1.0, 30)[:, None]  # below 0.5 at the first steps
    assert cups_eval.summarize([ITEM], [[tr]])["mass_ok_share"] == 0.0
