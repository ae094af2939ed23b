"""Statistics of LoopLens, in one place: bootstrap intervals, the item-level cluster bootstrap, chi-square.

Two bootstraps, both percentile intervals with seeded draws (a report is reproducible):

* :func:`bootstrap_ci` -- a statistic over independent observations (e.g. the runs of one question under
  several seeds): :func:`scipy.stats.bootstrap` with ``method="percentile"``.
* The **item-level cluster bootstrap** of sweep reports (:func:`bootstrap_weights`, :class:`Sums`).  A sweep's
  instances are not independent: the permutations, seeds and variants of one item share its question.  So the
  resampling unit is the *item*: each replicate draws ``n_items`` items with replacement and every instance of a
  drawn item comes along (for paired statistics, its other variants too).  Every statistic of a report is a
  ratio of sums over instances (a rate: successes / instances; a mean: sum / count), so a replicate's value is
  ``(W @ per_item_numerators) / (W @ per_item_denominators)`` with ``W[b, i]`` = how often item ``i`` is drawn in
  replicate ``b``.  That is one matrix product for all replicates, and exactly the statistic recomputed on each
  resampled data set (tests/report check it against such a direct bootstrap).  scipy's ``bootstrap`` resamples
  observations, not clusters of unequal size, hence this one piece of our own.  The draws are
  ``default_rng(seed).integers(0, n_items, (n_boot, n_items))``, the same as scipy's, so with one instance per
  item the cluster bootstrap equals :func:`bootstrap_ci`.

:func:`chisquare_uniform`: :func:`scipy.stats.chisquare` against equal expected counts.
:func:`contingency_test`: :func:`scipy.stats.chi2_contingency` on a table of counts (columns that are empty in
every row dropped), e.g. final-answer positions against correct-answer positions.
:func:`mantel_haenszel_parts`: the per-stratum numerators and denominators of the Mantel-Haenszel risk difference
and risk ratio, so that their item bootstrap is a ratio of sums like every other statistic.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import numpy as np
import pandas as pd
from scipy import stats as _sps

from .errors import UsageError

N_BOOT = 2000  # bootstrap replicates (reports and bands)
MAX_N_BOOT = 100_000  # more replicates change nothing visible and only cost memory ([n_boot, n_items] weights)
CI = 0.95      # confidence level of every interval


# ---------------------------------------------------------------------------------------------- plain bootstrap
def bootstrap_ci(values, stat=np.mean, n_boot: int = N_BOOT, ci: float = CI, seed: int = 0,
                 axis: int = 0) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Statistic with a percentile bootstrap interval, resampling along ``axis``: (estimate, low, high).

    ``stat`` must accept ``axis=`` (numpy reductions do).  One observation gives a zero-width interval."""
    v = np.asarray(values, dtype=np.float64)
    if v.shape[axis] == 0:
        raise UsageError("cannot bootstrap an empty sample")
    est = np.asarray(stat(v, axis=axis))
    if v.shape[axis] < 2:
        return est, est.copy(), est.copy()
    # Resamples are drawn in batches of at most ~4M numbers (bounded memory; the draws are the same).
    batch = max(1, min(n_boot, (4 * 2**20) // max(1, v.size)))
    res = _sps.bootstrap((v,), stat, n_resamples=n_boot, batch=batch, confidence_level=ci, method="percentile",
                         rng=np.random.default_rng(seed), vectorized=True, axis=axis)
    return est, np.asarray(res.confidence_interval.low), np.asarray(res.confidence_interval.high)


# ---------------------------------------------------------------------------------------------- cluster bootstrap
def bootstrap_weights(n_items: int, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """[n_boot, n_items] counts: how often each item is drawn in each replicate (items drawn with
    replacement, ``rng.integers(0, n_items, (n_boot, n_items))`` -- the draws of :func:`bootstrap_ci`)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_items, size=(n_boot, n_items))
    w = np.zeros((n_boot, n_items), dtype=np.float64)
    np.add.at(w, (np.repeat(np.arange(n_boot), n_items), idx.reshape(-1)), 1.0)
    return w


class Sums:
    """Per-item sums of (numerator, denominator), so that every ratio and its bootstrap is a matrix product."""

    def __init__(self, items: pd.Series, weights: np.ndarray, codes: Dict[str, int]):
        self.codes = codes
        self.idx = items.map(codes).to_numpy()
        self.m = len(codes)
        self.W = weights

    def per_item(self, values) -> np.ndarray:
        v = np.asarray(values, dtype=np.float64)
        out = np.zeros((self.m,) + v.shape[1:])
        np.add.at(out, self.idx, np.nan_to_num(v))
        return out

    def ratio(self, num, den) -> Tuple[float, np.ndarray, int]:
        """(estimate, bootstrap replicates, n = denominator sum) of sum(num) / sum(den)."""
        n_i, d_i = self.per_item(num), self.per_item(den)
        tot_n, tot_d = n_i.sum(0), d_i.sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            est = tot_n / tot_d if np.all(tot_d > 0) else np.where(tot_d > 0, tot_n / np.where(tot_d > 0, tot_d, 1),
                                                                   np.nan)
            reps = (self.W @ n_i) / (self.W @ d_i)
        return est, reps, tot_d


def percentile_interval(reps, ci: float = CI):
    """The percentile interval of bootstrap replicates (non-finite replicates left out); per column if 2-D."""
    r = np.asarray(reps, dtype=np.float64)
    r = r[np.isfinite(r)] if r.ndim == 1 else r
    if r.size == 0:
        return float("nan"), float("nan")
    a = (1 - ci) / 2
    lo, hi = np.nanquantile(r, [a, 1 - a], axis=0)
    return lo, hi


def finite(x) -> Optional[float]:
    """``x`` as a float, or None when it is missing or not finite (JSON has no NaN)."""
    if x is None:
        return None
    x = float(x)
    return None if not math.isfinite(x) else x


def stat(value, reps, n, n_items, ci=CI, **extra) -> dict:
    """A reported number: value, interval, n (instances in the denominator), n_items, extra fields."""
    lo, hi = percentile_interval(reps, ci)
    d = {"value": finite(value), "lo": finite(lo), "hi": finite(hi), "n": int(n), "n_items": int(n_items)}
    d.update(extra)
    return d


def empty_stat(n_items=0, **extra) -> dict:
    return {"value": None, "lo": None, "hi": None, "n": 0, "n_items": int(n_items), **extra}


# ---------------------------------------------------------------------------------------------- tests
def chisquare_uniform(counts) -> Tuple[float, float]:
    """Chi-square statistic and p-value of ``counts`` against equal expected counts (NaN, NaN when empty)."""
    counts = np.asarray(counts, np.float64)
    if counts.sum() == 0:
        return float("nan"), float("nan")
    res = _sps.chisquare(counts)
    return float(res.statistic), float(res.pvalue)


def contingency_test(table) -> Tuple[float, float, int]:
    """Chi-square test of independence / homogeneity of a table of counts (:func:`scipy.stats.chi2_contingency`):
    (statistic, p-value, degrees of freedom).  Rows or columns that are empty throughout are dropped; NaN when
    fewer than two rows or columns remain."""
    t = np.asarray(table, dtype=np.float64)
    if t.ndim != 2:
        raise UsageError(f"a contingency table is 2-D, got shape {t.shape}")
    t = t[t.sum(axis=1) > 0][:, t.sum(axis=0) > 0]
    if t.shape[0] < 2 or t.shape[1] < 2:
        return float("nan"), float("nan"), 0
    res = _sps.chi2_contingency(t, correction=False)
    return float(res.statistic), float(res.pvalue), int(res.dof)


def mantel_haenszel_parts(strata, treated, success) -> pd.DataFrame:
    """Per stratum (e.g. item): the terms of the Mantel-Haenszel risk difference and risk ratio of ``success``
    between ``treated`` and untreated units.

    With ``a`` / ``n1`` the successes / units treated, ``c`` / ``n0`` untreated, ``N = n1 + n0``:
    risk difference ``RD = sum(a n0 / N - c n1 / N) / sum(n1 n0 / N)`` (columns ``rd_num``, ``w``), risk ratio
    ``RR = sum(a n0 / N) / sum(c n1 / N)`` (``rr_num``, ``rr_den``).  A stratum with only treated or only untreated
    units has weight 0: it says nothing about the difference within it.  Index: the strata."""
    d = pd.DataFrame({"s": np.asarray(strata), "t": np.asarray(treated, bool), "y": np.asarray(success, bool)})
    g = d.groupby("s")
    n1 = g["t"].sum().astype(float)
    n0 = g["t"].count().astype(float) - n1
    a = d[d["t"]].groupby("s")["y"].sum().reindex(n1.index, fill_value=0).astype(float)
    c = d[~d["t"]].groupby("s")["y"].sum().reindex(n1.index, fill_value=0).astype(float)
    N = n1 + n0
    return pd.DataFrame({"rd_num": (a * n0 - c * n1) / N, "w": n1 * n0 / N, "rr_num": a * n0 / N,
                         "rr_den": c * n1 / N, "n1": n1, "n0": n0})
