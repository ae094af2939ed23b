"""backend.stats: the plain bootstrap (scipy), the item-level cluster bootstrap, chi-square."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from scipy.stats import chi2_contingency

from backend.errors import UsageError
from backend.stats import (Sums, bootstrap_ci, bootstrap_weights, chisquare_uniform, contingency_test,
                           mantel_haenszel_parts)


def test_bootstrap_interval_contains_mean_and_shrinks_with_n():
    rng = np.random.default_rng(1)
    small = rng.normal(0, 1, 20)
    big = rng.normal(0, 1, 2000)
    e1, lo1, hi1 = bootstrap_ci(small)
    e2, lo2, hi2 = bootstrap_ci(big)
    assert lo1 <= e1 <= hi1 and lo2 <= e2 <= hi2
    assert (hi2 - lo2) < (hi1 - lo1)
    assert bootstrap_ci(small, seed=3)[1] == bootstrap_ci(small, seed=3)[1]


def test_bootstrap_ci_is_scipys_percentile_bootstrap():
    v = np.random.default_rng(3).random((12, 4))
    est, lo, hi = bootstrap_ci(v, n_boot=400, seed=5)
    r = sps.bootstrap((v,), np.mean, n_resamples=400, method="percentile", rng=np.random.default_rng(5),
                      vectorized=True, axis=0)
    np.testing.assert_allclose(lo, r.confidence_interval.low)
    np.testing.assert_allclose(hi, r.confidence_interval.high)
    np.testing.assert_allclose(est, v.mean(0))
    e1, l1, h1 = bootstrap_ci([0.25])  # one observation: a zero-width interval, not an error
    assert float(e1) == float(l1) == float(h1) == 0.25
    with pytest.raises(UsageError, match="empty"):
        bootstrap_ci([])


def test_cluster_bootstrap_resamples_whole_items():
    # item a: 3 instances all 1; item b: 1 instance 0.  A replicate drawing only a gives 1, only b gives 0.
    items = pd.Series(["a", "a", "a", "b"])
    W = bootstrap_weights(2, n_boot=200, seed=1)
    s = Sums(items, W, {"a": 0, "b": 1})
    est, reps, n = s.ratio(np.array([1.0, 1, 1, 0]), np.ones(4))
    assert est == pytest.approx(0.75) and n == 4
    draws = np.random.default_rng(1).integers(0, 2, (200, 2))
    want = [(3 * (d == 0).sum()) / (3 * (d == 0).sum() + (d == 1).sum()) for d in draws]
    np.testing.assert_allclose(reps, want)
    assert W.sum(1).tolist() == [2] * 200


def test_chisquare_uniform():
    chi2, p = chisquare_uniform([10, 10, 10, 10])
    assert chi2 == 0 and p == pytest.approx(1.0)
    chi2, p = chisquare_uniform([20, 0, 0, 0])
    assert chi2 == pytest.approx(60.0) and p == pytest.approx(sps.chi2.sf(60.0, 3))
    assert all(np.isnan(chisquare_uniform([0, 0, 0])))


def test_contingency_test_is_scipys_on_the_non_empty_part():
    t = [[10, 20, 0], [20, 10, 0]]
    chi2, p, dof = contingency_test(t)
    ref = chi2_contingency([[10, 20], [20, 10]], correction=False)
    assert (chi2, p, dof) == pytest.approx((ref.statistic, ref.pvalue, 1))
    assert contingency_test([[5, 5, 5], [5, 5, 5]])[1] == pytest.approx(1.0)
    assert np.isnan(contingency_test([[5, 0], [0, 0]])[0])


def test_mantel_haenszel_parts_give_the_stratified_difference():
    # stratum x: treated 1/2, untreated 1/4 (+25 points); stratum y: treated 3/4, untreated 1/2 (+25 points)
    strata = ["x"] * 6 + ["y"] * 6
    treated = [1, 1, 0, 0, 0, 0] + [1, 1, 1, 1, 0, 0]
    success = [1, 0, 1, 0, 0, 0] + [1, 1, 1, 0, 1, 0]
    d = mantel_haenszel_parts(strata, treated, success)
    assert d["rd_num"].sum() / d["w"].sum() == pytest.approx(0.25)
    assert d.loc["x", "n1"] == 2 and d.loc["y", "n0"] == 2
    only = mantel_haenszel_parts(["z", "z"], [1, 1], [1, 0])
    assert only["w"].sum() == 0  # no untreated unit: no weight
