"""The paper's metrics on hand-made trajectories, covering every edge of the definitions in method.md."""
from __future__ import annotations

import numpy as np
import pytest

from backend.errors import UsageError
from backend.metrics import (MASS_THRESHOLD, Run, analyze_trajectory, backtrack_verdict, entropy, exploration_end,
                             exploration_ends, low_mass_flags, step_kl)
from tests.helpers_trace import make_trace


def onehotish(seq, n=4, peak=0.7):
    """Beliefs whose argmax follows ``seq`` (option index per step)."""
    rest = (1 - peak) / (n - 1)
    p = np.full((len(seq), n), rest)
    for t, a in enumerate(seq):
        p[t, a] = peak
    return p


def test_final_answer_and_correctness():
    m = analyze_trajectory(onehotish([1, 1, 2, 2, 2]), correct=2)
    assert m.final_answer == 2 and m.is_correct is True
    m = analyze_trajectory(onehotish([1, 1, 2, 2, 2]), correct=0)
    assert m.is_correct is False
    m = analyze_trajectory(onehotish([1, 1, 2, 2, 2]))
    assert m.is_correct is None and m.correct is None


def test_ties_go_to_lowest_index():
    p = np.array([[0.4, 0.4, 0.1, 0.1], [0.1, 0.45, 0.45, 0.0]])
    m = analyze_trajectory(p)
    assert list(m.argmax) == [0, 1]
    assert m.final_answer == 1


def test_entropy_values():
    p = np.array([[0.25] * 4, [1.0, 0, 0, 0]])
    H = entropy(p)
    assert H[0] == pytest.approx(np.log(4)) and H[1] == pytest.approx(0.0)
    m = analyze_trajectory(p)
    assert m.entropy_norm[0] == pytest.approx(1.0)


def test_kl_direction_new_first():
    p = np.array([[0.5, 0.5], [0.9, 0.1]])
    kl = step_kl(p)
    want = 0.9 * np.log(0.9 / 0.5) + 0.1 * np.log(0.1 / 0.5)
    assert kl.shape == (1,) and kl[0] == pytest.approx(want)
    assert kl[0] != pytest.approx(0.5 * np.log(0.5 / 0.9) + 0.5 * np.log(0.5 / 0.1))


def test_kl_finite_with_zero_probabilities():
    p = np.array([[1.0, 0.0], [0.5, 0.5], [0.5, 0.5]])
    kl = step_kl(p)
    assert np.isfinite(kl).all() and kl[0] > 10 and kl[1] == 0


def test_exploration_end_smallest_t_with_three_small_kls():
    kl = np.array([0.5, 0.2, 0.005, 0.001, 0.3, 0.0, 0.0, 0.0])
    assert exploration_end(kl) == 6  # t=3 has kl_3, kl_4 small but kl_5 = 0.3
    assert exploration_end(np.array([0.0, 0.0, 0.0])) == 1
    assert exploration_end(np.array([0.01, 0.01, 0.01])) == 1  # threshold inclusive
    assert exploration_end(np.array([0.0, 0.0])) is None  # window does not fit
    assert exploration_end(kl, threshold=0.0, window=2) == 6
    assert exploration_end(kl, window=1) == 3


def test_never_converging_is_none_not_T():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4) * 0.5, size=30)
    m = analyze_trajectory(p)
    assert m.exploration_end is None and not m.converged and m.exploration_length is None


def test_converging_trajectory():
    p = np.vstack([onehotish([0, 1, 2], peak=0.5), np.tile([[0.1, 0.1, 0.7, 0.1]], (10, 1))])
    m = analyze_trajectory(p)
    assert m.exploration_end == 4 and m.converged  # kl_3 = KL(p4||p3) > 0.01; kl_4.. = 0


def test_run_of_exactly_three_is_a_commitment_two_is_not():
    m = analyze_trajectory(onehotish([1, 1, 1, 0, 0, 2, 2, 2]))
    assert m.commitments == [Run(1, 1, 3), Run(2, 6, 8)]
    assert [r.length for r in m.runs] == [3, 2, 3]


def test_backtrack_a_then_b_final_b():
    m = analyze_trajectory(onehotish([0, 3, 3, 3, 1, 2, 2, 2, 2]), correct=2)
    assert m.backtracked and m.abandoned == [3] and m.destination == 2 and m.frontrunner == 3
    assert [(a.option, b.option) for a, b in m.backtracks] == [(3, 2)]


def test_two_step_detour_is_not_a_backtrack():
    m = analyze_trajectory(onehotish([2, 2, 2, 1, 1, 2, 2, 2]))
    assert not m.backtracked and m.abandoned == [] and m.destination is None


def test_final_run_shorter_than_three_means_no_backtrack():
    # committed to 0 then 1, but the final answer (2) holds for only 2 steps
    m = analyze_trajectory(onehotish([0, 0, 0, 1, 1, 1, 2, 2]))
    assert m.final_answer == 2
    assert not m.backtracked and m.abandoned == [] and m.destination is None
    assert [c.option for c in m.commitments] == [0, 1]


def test_several_commitments_abandoned_in_order():
    m = analyze_trajectory(onehotish([1, 1, 1, 3, 3, 3, 1, 1, 1, 0, 0, 0, 0]))
    assert m.backtracked and m.abandoned == [1, 3] and m.destination == 0 and m.frontrunner == 1


def test_return_to_first_commitment_is_a_backtrack_to_it():
    m = analyze_trajectory(onehotish([2, 2, 2, 0, 0, 0, 2, 2, 2]))
    assert m.backtracked and m.abandoned == [0] and m.final_answer == 2


def test_commitments_after_final_commitment_do_not_count():
    # final answer 1 is committed at steps 1-3; a later excursion to 3 ends with a short run of 1
    m = analyze_trajectory(onehotish([1, 1, 1, 3, 3, 3, 1, 1]))
    assert not m.backtracked and m.abandoned == []


def test_single_run_no_backtrack():
    m = analyze_trajectory(onehotish([2] * 30), correct=2)
    assert m.commitments == [Run(2, 1, 30)] and not m.backtracked and m.frontrunner == 2


def test_thresholds_are_parameters():
    seq = [0, 0, 1, 1, 2, 2]
    assert analyze_trajectory(onehotish(seq)).commitments == []
    m = analyze_trajectory(onehotish(seq), run_length=2)
    assert m.backtracked and m.abandoned == [0, 1] and m.params["run_length"] == 2


def test_bad_input_is_refused_with_a_message():
    with pytest.raises(UsageError, match="NaN"):
        analyze_trajectory(np.array([[0.5, 0.5], [np.nan, 0.5]]))
    with pytest.raises(UsageError, match="shape"):
        analyze_trajectory(np.ones(4))
    with pytest.raises(UsageError, match="out of range"):
        analyze_trajectory(onehotish([0, 0]), correct=4)


def test_summary_is_json_friendly():
    import json
    m = analyze_trajectory(onehotish([0, 3, 3, 3, 1, 2, 2, 2, 2]), correct=2)
    s = json.loads(json.dumps(m.summary()))
    assert s["backtracked"] is True and s["abandoned"] == [3] and s["commitments"][0] == {"option": 3, "start": 2, "end": 4}


# ---------------------------------------------------------------------------------------------- option mass (issue 10)
def test_low_mass_steps_are_flagged_and_answering_is_judged_from_exploration_end_on():
    p = np.array([[0.7, 0.3]] * 6)  # converges at once: exploration end = step 1
    mass = np.array([1e-5, 0.002, 0.5, 0.6, 0.9, 0.95])
    m = analyze_trajectory(p, 0, mass=mass)
    assert m.mass_threshold == MASS_THRESHOLD == 0.01
    assert m.low_mass.tolist() == [True, True, False, False, False, False] and m.n_low_mass == 2
    assert m.exploration_end == 1 and m.answering is False  # low mass at and after exploration end
    # raw masses [T, n] are summed per step; a later exploration end can leave the low-mass steps behind
    q = np.array([[0.5, 0.5], [0.9, 0.1], [0.1, 0.9], [0.1, 0.9], [0.1, 0.9], [0.1, 0.9], [0.1, 0.9]])
    raw = np.array([[1e-6, 1e-6], [1e-4, 1e-5], [0.2, 0.3], [0.2, 0.3], [0.2, 0.3], [0.2, 0.3], [0.2, 0.3]])
    m2 = analyze_trajectory(q, 1, mass=raw)
    assert m2.exploration_end == 3 and m2.n_low_mass == 2 and m2.answering is True
    assert analyze_trajectory(q, 1, mass=raw, mass_threshold=0.6).answering is False
    assert low_mass_flags([0.001, 0.5], 0.01).tolist() == [True, False]
    # never converged: judged at the last step
    osc = np.array([[0.9, 0.1], [0.1, 0.9]] * 4)
    assert analyze_trajectory(osc, mass=[0.5] * 7 + [0.001]).answering is False
    assert analyze_trajectory(osc, mass=[0.001] * 7 + [0.5]).answering is True
    # no mass given: unknown, not "answering"
    assert analyze_trajectory(p).low_mass is None and analyze_trajectory(p).answering is None
    for bad in (-0.1, 1.5, "x", True):
        with pytest.raises(UsageError, match="mass threshold"):
            analyze_trajectory(p, mass=mass, mass_threshold=bad)
    with pytest.raises(UsageError, match="one value per step"):
        analyze_trajectory(p, mass=[0.5, 0.5])
    s = m.summary()
    assert s["n_low_mass"] == 2 and s["answering"] is False and s["mass_threshold"] == 0.01


def test_trace_metrics_read_the_trace_mass():
    tr = make_trace(np.array([[0.9, 0.1]] * 5))
    tr.raw_mass = np.array([[1e-4, 1e-4]] * 2 + [[0.45, 0.05]] * 3)
    assert tr.metrics.low_mass.tolist() == [True, True, False, False, False]
    assert tr.analyze(mass_threshold=1e-5).n_low_mass == 0


def test_exploration_end_is_not_final_later_movement_is_reported():
    # settles on A (steps 1-4), KL small, then switches to B at step 9
    p = np.array([[0.8, 0.2]] * 8 + [[0.2, 0.8]] * 6)
    m = analyze_trajectory(p, 1)
    assert m.exploration_end == 1
    assert m.later_argmax_change == 9 and m.later_kl_step == 8
    assert [(a.option, b.option) for a, b in m.backtracks_after_exploration_end] == [(0, 1)]
    still = analyze_trajectory(np.array([[0.8, 0.2]] * 8), 0)
    assert still.later_argmax_change is None and still.later_kl_step is None


def test_backtrack_verdict_at_other_run_lengths_and_vectorised_exploration_ends():
    am = [0, 0, 1, 1, 1, 1]  # A for 2 steps then B for 4
    assert backtrack_verdict(am, 2)[0] and backtrack_verdict(am, 2)[1] == [0]
    assert not backtrack_verdict(am, 3)[0]
    kl = np.array([[0.1, 0.001, 0.001, 0.001, 0.5], [0.1, 0.2, 0.02, 0.02, 0.02], [1, 1, 1, 1, 1]])
    for thr in (0.003, 0.01, 0.03):
        got = exploration_ends(kl, thr, 3)
        want = [exploration_end(k, thr, 3) for k in kl]
        assert [None if np.isnan(g) else int(g) for g in got] == want
