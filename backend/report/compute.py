"""Computing a report from sweep results: every number of ``shared/docs/method.md``'s table, with intervals.

Statistics (the bootstraps themselves live in :mod:`backend.stats`).  Rates and means are ratios of sums over
instances.  Intervals are percentile bootstraps that resample **items** (all of an item's instances --
permutations, seeds, and for paired statistics its variants -- move together), ``n_boot`` = 2000 replicates,
seeded, so a report is reproducible.  Every number comes with ``n`` (instances in its denominator) and
``n_items``.  The accuracy gain of backtracking is stated both ways: in points (acc_bt - acc_no_bt) and
relative (acc_bt / acc_no_bt - 1); the exploration change both ways: "Easy shorter by" 1 - mean_easy /
mean_base and "Base longer by" mean_base / mean_easy - 1, over converged instances (never-converged instances
are counted separately, never replaced by T).

The input is a DataFrame of rows in the sweep store's schema (:func:`backend.sweep.load_results`); the output
a JSON-friendly dict that :mod:`.render` turns into Markdown / JSON.
"""
from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pandas as pd

from ..errors import LoopLensError
from ..metrics import backtrack_verdict, check_mass_threshold, exploration_ends
from ..settings import REPO_ROOT
from ..settings import (KL_THRESHOLD, KL_WINDOW, LETTERS, MASS_THRESHOLD, RUN_LENGTH, SENSITIVITY_KL_THRESHOLDS,
                        SENSITIVITY_RUN_LENGTHS)
from ..stats import CI, N_BOOT, Sums, bootstrap_weights, chisquare_uniform, contingency_test, mantel_haenszel_parts
from ..stats import empty_stat as _empty
from ..stats import finite as _num
from ..stats import percentile_interval as _ci
from ..stats import stat
from ..sweep.load import normalise_types
from .text import fmt as _fmt
from .text import pct as _pct

SCHEMA = "looplens.report/1"
SIM_KEYS = {"base": "distractor_ranks", "nca": "nca_distractor_ranks", "easy": "easy_ranks"}
REFERENCE_MODEL = "Huginn-0125"
REFERENCE_BENCHMARK = "the paper's 260 self-written items (not public)"
HEADLINE_BASIS = "all instances"  # the headline's instances; the answering-only value stands beside it
WITHIN_ITEM_ESTIMATOR = ("Mantel-Haenszel risk difference with items as strata (weights n_bt * n_no_bt / n per "
                         "item; items without both backtracking and non-backtracking instances carry no weight)")

# Reference values from Huginn-0125 (method.md), for the comparison column: never a target this run reproduces.
PAPER = {
    "backtrack_rate_base": "32%",
    "robust_backtrack_rate_base": "not reported (one seed per instance)",
    "acc_gain_points": "34% higher (points or relative: unstated)",
    "acc_gain_relative": "34% higher (points or relative: unstated)",
    "acc_gain_within_item": "not reported (pooled over items only)",
    "backtracks_end_correct": "52%",
    "abandoned_rank_1": "72%", "abandoned_rank_2": "22%", "abandoned_rank_3": "6%",
    "easy_shorter": "54% shorter (abstract)",
    "easy_shorter_restricted": "54% shorter (abstract; censoring unstated)",
    "base_longer": "54% longer",
    "nca_never_converged": "never converges",
    "nca_min_entropy_norm": "entropy stays high for all steps",
}




def shown_path(path: Optional[str]) -> Optional[str]:
    """A path as a report shows it: relative to the repository when inside it (a shipped report must not carry
    the machine's directories), else as given."""
    if not path:
        return path
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except (ValueError, OSError):
        return str(path)

def abandoned_ranks(df: pd.DataFrame, similarity: Optional[dict]) -> pd.Series:
    """Per row: the similarity ranks (among that variant's distractors, 1 = most stem-similar) of its abandoned
    answers that are distractors (an abandoned correct answer has no rank)."""
    if similarity is None:
        return pd.Series([[] for _ in range(len(df))], index=df.index, dtype=object)
    items = similarity.get("items", {})
    out = []
    for iid, var, opts in zip(df["item_id"], df["variant"], df["abandoned_options"]):
        table = items.get(iid, {}).get(SIM_KEYS.get(var, ""), {})
        out.append([int(table[o]) for o in (list(opts) if opts is not None else []) if o in table])
    return pd.Series(out, index=df.index, dtype=object)


def n_distractors(variant: str) -> int:
    return 4 if variant == "nca" else 3


def _option_rank(similarity: Optional[dict], iid, variant, option) -> Optional[int]:
    if similarity is None or option is None:
        return None
    table = similarity.get("items", {}).get(iid, {}).get(SIM_KEYS.get(variant, ""), {})
    r = table.get(option)
    return None if r is None else int(r)


def _arr(x) -> np.ndarray:
    return np.asarray(x if x is not None else [], dtype=np.float64)


def derive(df: pd.DataFrame, similarity: Optional[dict], mass_threshold: float = MASS_THRESHOLD) -> pd.DataFrame:
    """Per-row quantities the reporting rules need, recomputed from the stored per-step columns (``letter_mass``,
    ``argmax``, ``kl``) so that every threshold is a report parameter:

    * ``_low_steps`` / ``_n_steps``: steps whose total option mass is below ``mass_threshold``; ``_answering``: the
      mass stays >= the threshold at every step from exploration end on (from step T when never converged);
    * ``_bt_rl{r}``: the backtrack verdict with commitments of ``r`` steps (method.md's rule);
    * ``_expl_kl{i}``: exploration end under the i-th sensitivity KL threshold (NaN: never converged);
    * ``_later_move``: converged, and the argmax changes again after exploration end; ``_bt_after_end``: the
      instance's commitment to its final answer after an abandoned one starts after exploration end;
    * ``_front_rank``, ``_wrong_ranks``: similarity ranks of the frontrunner (when it is a distractor) and of the
      wrong choices (a wrong first commitment, a wrong final answer; each option once per instance).
    Rows without these columns (hand-made results) get NaN / None, and the statistics that need them are empty.
    """
    out = pd.DataFrame(index=df.index)
    T = df["steps"].to_numpy(dtype=np.float64) if "steps" in df else np.full(len(df), np.nan)
    expl = df["exploration_end"].astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
    if "letter_mass" in df.columns:
        low = [(_arr(m) < mass_threshold) for m in df["letter_mass"]]
        out["_low_steps"] = [float(x.sum()) for x in low]
        out["_n_steps"] = [float(len(x)) for x in low]
        starts = np.where(np.isnan(expl), T, expl)
        out["_answering"] = [not bool(x[int(s0) - 1:].any()) if len(x) else True for x, s0 in zip(low, starts)]
        out["_low_any"] = [bool(x.any()) for x in low]
    else:
        out["_low_steps"] = np.nan
        out["_n_steps"] = np.nan
        out["_answering"] = pd.array([pd.NA] * len(df), dtype="boolean")
        out["_low_any"] = pd.array([pd.NA] * len(df), dtype="boolean")
    if "argmax" in df.columns:
        ams = [np.asarray(a, dtype=np.int64) for a in df["argmax"]]
        for r in SENSITIVITY_RUN_LENGTHS:
            out[f"_bt_rl{r}"] = [backtrack_verdict(a, r)[0] if len(a) else False for a in ams]
        later, after = [], []
        for a, e in zip(ams, expl):
            if np.isnan(e) or not len(a):
                later.append(False)
                after.append(False)
                continue
            e = int(e)
            later.append(bool((a[e:] != a[e - 1:-1]).any()) if e < len(a) else False)
            bt, _, com = backtrack_verdict(a, RUN_LENGTH)
            final_starts = [c.start for i, c in enumerate(com) if c.option == int(a[-1]) and i > 0
                            and any(x.option != c.option for x in com[:i])]
            after.append(bool(bt and final_starts and final_starts[-1] > e))
        out["_later_move"] = later
        out["_bt_after_end"] = after
    else:
        for r in SENSITIVITY_RUN_LENGTHS:
            out[f"_bt_rl{r}"] = np.nan
        out["_later_move"] = np.nan
        out["_bt_after_end"] = np.nan
    if "kl" in df.columns and len(df):
        lens = {len(k) for k in df["kl"]}
        for i, thr in enumerate(SENSITIVITY_KL_THRESHOLDS):
            if len(lens) == 1:
                out[f"_expl_kl{i}"] = exploration_ends(np.stack([_arr(k) for k in df["kl"]]), thr, KL_WINDOW)
            else:
                out[f"_expl_kl{i}"] = [exploration_ends(_arr(k)[None], thr, KL_WINDOW)[0] for k in df["kl"]]
    else:
        for i, _ in enumerate(SENSITIVITY_KL_THRESHOLDS):
            out[f"_expl_kl{i}"] = np.nan
    # Similarity ranks of the frontrunner and of the wrong choices.
    front, wrong = [], []
    n = len(df)
    col = lambda c: df[c].tolist() if c in df.columns else [None] * n  # noqa: E731
    for iid, var, opts, corr, fr, fa in zip(df["item_id"].tolist(), df["variant"].tolist(), col("options"),
                                            df["correct"].tolist(), col("frontrunner"), df["final_answer"].tolist()):
        opts = list(opts) if opts is not None else []
        corr = None if corr is None or pd.isna(corr) else int(corr)
        fr = None if fr is None or pd.isna(fr) else int(fr)
        fa = None if fa is None or pd.isna(fa) else int(fa)
        fr_rank = _option_rank(similarity, iid, var, opts[fr]) if fr is not None and fr < len(opts) and fr != corr \
            else None
        front.append(np.nan if fr_rank is None else float(fr_rank))
        w = []
        for o in dict.fromkeys(x for x in (fr, fa) if x is not None and x != corr and x < len(opts)):
            rk = _option_rank(similarity, iid, var, opts[o])
            if rk is not None:
                w.append(rk)
        wrong.append(w)
    out["_front_rank"] = front
    out["_wrong_ranks"] = pd.Series(wrong, index=df.index, dtype=object)
    out.attrs["mass_threshold"] = mass_threshold
    return out


def _group_stats(g: pd.DataFrame, W: np.ndarray, codes: Dict[str, int], ranks: pd.Series, ci: float,
                 dv: pd.DataFrame, answering: bool = True) -> dict:
    """Every statistic of one (variant, domain) group; ``dv``: its derived columns (:func:`derive`).  With
    ``answering`` the same belief statistics over its answering instances go under ``"answering"``."""
    s = Sums(g["item_id"], W, codes)
    out: Dict[str, dict] = {}
    has_correct = g["correct"].notna().to_numpy()
    corr = g["is_correct"].fillna(False).astype(bool).to_numpy() & has_correct
    bt = g["backtracked"].astype(bool).to_numpy()
    conv = g["converged"].astype(bool).to_numpy()
    ones = np.ones(len(g))
    n_items = g["item_id"].nunique()
    items_arr = g["item_id"].to_numpy()
    dv = dv.loc[g.index]

    def st_of(num, den, sums=s, items=items_arr, **extra):
        den_arr = np.asarray(den, dtype=np.float64)
        if np.sum(den_arr) == 0 or not np.all(np.isfinite(np.asarray(num, np.float64))):
            return _empty(0, **extra), None
        est, reps, n = sums.ratio(num, den_arr)
        k = len(set(items[den_arr > 0]))  # items contributing to the denominator
        return stat(est, reps, n, k, ci, **extra), (est, reps)

    def r(name, num, den, **extra):
        st_, er = st_of(num, den, **extra)
        if name is None:
            return st_
        out[name] = st_
        return er

    out["instances"] = {"value": len(g), "n": len(g), "n_items": n_items}
    # --- option mass
    if dv["_n_steps"].notna().all() and len(g):
        r("low_mass_share", dv["_low_steps"].to_numpy(np.float64), dv["_n_steps"].to_numpy(np.float64),
          unit="steps")
        ans = dv["_answering"].astype(bool).to_numpy()
        r("low_mass_instance_share", ~ans, ones, unit="instances",
          rule="option mass below the threshold at some step from exploration end on (from step T if never "
               "converged)")
        r("answering_share", ans, ones)
    else:
        for k in ("low_mass_share", "low_mass_instance_share", "answering_share"):
            out[k] = _empty(n_items, reason="no per-step option mass in the rows")
    # --- backtracking
    r("backtrack_rate", bt, ones)
    _robust(out, g, W, codes, ci)
    by_rl = {}
    for rl in SENSITIVITY_RUN_LENGTHS:
        col = dv[f"_bt_rl{rl}"]
        by_rl[str(rl)] = r(None, col.astype(float).to_numpy(), ones) if col.notna().all() and len(g) else \
            _empty(n_items, reason="no per-step argmax in the rows")
    out["backtrack_rate_by_run_length"] = by_rl
    r("accuracy", corr, has_correct)
    a_bt = r("acc_backtracked", corr & bt, has_correct & bt)
    a_nb = r("acc_not_backtracked", corr & ~bt, has_correct & ~bt)
    r("backtracks_end_correct", corr & bt, has_correct & bt)
    if a_bt is not None and a_nb is not None:
        n_bt, n_nb = int((has_correct & bt).sum()), int((has_correct & ~bt).sum())
        with np.errstate(invalid="ignore", divide="ignore"):
            out["acc_gain_points"] = stat(a_bt[0] - a_nb[0], a_bt[1] - a_nb[1], n_bt + n_nb, n_items, ci,
                                          n_backtracked=n_bt, n_not_backtracked=n_nb)
            rel = a_bt[0] / a_nb[0] - 1 if a_nb[0] > 0 else float("nan")
            out["acc_gain_relative"] = stat(rel, a_bt[1] / a_nb[1] - 1, n_bt + n_nb, n_items, ci,
                                            n_backtracked=n_bt, n_not_backtracked=n_nb)
    else:
        out["acc_gain_points"] = _empty(n_items)
        out["acc_gain_relative"] = _empty(n_items)
    _within_item(out, g[has_correct], corr[has_correct], bt[has_correct], W, codes, ci)
    # --- exploration (censored at T)
    r("converged_rate", conv, ones)
    r("never_converged_rate", ~conv, ones, count=int((~conv).sum()))
    r("never_converged_share", ~conv, ones, count=int((~conv).sum()))
    expl = g["exploration_end"].astype("Float64").fillna(0).to_numpy(dtype=np.float64)
    T = g["steps"].to_numpy(dtype=np.float64)
    r("mean_exploration", np.where(conv, expl, 0.0), conv)
    r("exploration_restricted_mean", np.where(conv, expl, T), ones, censored_at="T (the step limit)",
      never_converged=int((~conv).sum()))
    by_kl = {}
    for i, thr in enumerate(SENSITIVITY_KL_THRESHOLDS):
        e = dv[f"_expl_kl{i}"].to_numpy(np.float64)
        if np.isnan(e).all() and "kl" not in g.columns:
            by_kl[str(thr)] = {"reason": "no per-step KL in the rows"}
            continue
        c = ~np.isnan(e)
        by_kl[str(thr)] = {"converged_mean": r(None, np.where(c, e, 0.0), c),
                           "exploration_restricted_mean": r(None, np.where(c, e, T), ones),
                           "never_converged_share": r(None, ~c, ones)}
    out["exploration_by_kl_threshold"] = by_kl
    if dv["_later_move"].notna().all() and len(g):
        r("later_movement_share", dv["_later_move"].astype(bool).to_numpy() & conv, conv,
          rule="the argmax changes again after exploration end (converged instances)")
        out["backtracks_after_exploration_end"] = int(dv["_bt_after_end"].astype(bool).sum())
    else:
        out["later_movement_share"] = _empty(n_items, reason="no per-step argmax in the rows")
        out["backtracks_after_exploration_end"] = None
    # --- entropy
    r("final_entropy_norm", g["final_entropy_norm"].to_numpy(dtype=np.float64), ones)
    ent = np.stack(g["entropy"].map(lambda a: np.asarray(a, np.float64)).to_list()) if len(g) else np.zeros((0, 1))
    nopt = g["n_options"].to_numpy(dtype=np.float64)
    min_norm = ent.min(axis=1) / np.log(nopt) if len(g) else np.zeros(0)
    r("min_entropy_norm", min_norm, ones)
    # --- similarity ranks: abandoned answers, and the baselines (wrong choices, the frontrunner)
    rk = ranks.loc[g.index]
    k = n_distractors(g["variant"].iloc[0]) if g["variant"].nunique() == 1 else 3
    counts = np.array([[sum(1 for x in row if x == j) for j in range(1, k + 1)] for row in rk]) \
        if len(g) else np.zeros((0, k))
    total = counts.sum(axis=1) if len(g) else np.zeros(0)
    for j in range(1, k + 1):
        r(f"abandoned_rank_{j}", counts[:, j - 1] if len(g) else np.zeros(0), total, chance=1.0 / k)
    out["abandoned_similarity_ranks"] = _rank_shares(r, list(rk), k)
    out["wrong_choice_similarity_ranks"] = _rank_shares(r, list(dv["_wrong_ranks"]), k)
    fr = dv["_front_rank"].to_numpy(np.float64)
    out["frontrunner_similarity_ranks"] = _rank_shares(r, [[int(x)] if np.isfinite(x) else [] for x in fr], k)
    if answering:
        if dv["_answering"].isna().any():
            out["answering"] = {"available": False, "reason": "no per-step option mass in the rows"}
        else:
            ga = g[dv["_answering"].astype(bool).to_numpy()]
            out["answering"] = {"available": True, **_group_stats(ga, W, codes, ranks, ci, dv, answering=False)} \
                if len(ga) else {"available": False, "reason": "no instance answers (option mass at or above the "
                                 "threshold from exploration end on)"}
    return out


def _rank_shares(r, rank_lists, k: int) -> dict:
    """Shares of ranks 1..k over all listed ranks (each listed rank one observation): ``{rank_j: stat, n}``."""
    counts = np.array([[sum(1 for x in row if x == j) for j in range(1, k + 1)] for row in rank_lists]) \
        if len(rank_lists) else np.zeros((0, k))
    total = counts.sum(axis=1) if len(rank_lists) else np.zeros(0)
    shares = {}
    for j in range(1, k + 1):
        shares[f"rank_{j}"] = r(None, counts[:, j - 1] if len(rank_lists) else np.zeros(0), total, chance=1.0 / k)
    shares["n"] = int(total.sum())
    return shares


def _robust(out: dict, g: pd.DataFrame, W, codes, ci) -> None:
    """Robust backtrack rate (the verdict holds under a majority -- more than half -- of an instance's seeds) and
    the share of instances whose verdict flips across seeds; over instances with at least two seeds."""
    keys = ["item_id", "permutation"] + (["variant"] if g["variant"].nunique() > 1 else [])
    n_items = g["item_id"].nunique()
    agg = g.assign(_bt=g["backtracked"].astype(bool)).groupby(keys).agg(
        n=("seed", "nunique"), k=("_bt", "sum"), m=("_bt", "count")).reset_index()
    multi = agg[agg["n"] >= 2]
    if len(multi) == 0:
        why = "every instance has one seed: rerun the sweep with --seeds 3 (the default) into the same directory"
        out["robust_backtrack_rate"] = _empty(n_items, reason=why)
        out["verdict_flip_share"] = _empty(n_items, reason=why)
        return
    s = Sums(multi["item_id"], W, codes)
    ones = np.ones(len(multi))
    k_items = multi["item_id"].nunique()
    robust = (multi["k"] * 2 > multi["m"]).to_numpy()
    flip = ((multi["k"] > 0) & (multi["k"] < multi["m"])).to_numpy()
    est, reps, n = s.ratio(robust, ones)
    out["robust_backtrack_rate"] = stat(est, reps, n, k_items, ci, seeds_per_instance=float(multi["n"].mean()),
                                        rule="backtracks under more than half of its seeds")
    est, reps, n = s.ratio(flip, ones)
    out["verdict_flip_share"] = stat(est, reps, n, k_items, ci, seeds_per_instance=float(multi["n"].mean()))


def _within_item(out: dict, g: pd.DataFrame, corr, bt, W, codes, ci) -> None:
    """Accuracy gain of backtracking within items: Mantel-Haenszel risk difference (points) and risk ratio - 1
    (relative), items as strata; item-bootstrap intervals (ratios of per-item sums)."""
    n_items = g["item_id"].nunique()
    if len(g) == 0 or not bt.any() or bt.all():
        out["accuracy_gain_within_item"] = _empty(n_items, estimator=WITHIN_ITEM_ESTIMATOR)
        out["accuracy_gain_within_item_relative"] = _empty(n_items, estimator=WITHIN_ITEM_ESTIMATOR)
        return
    parts = mantel_haenszel_parts(g["item_id"].to_numpy(), bt, corr)
    strata = int((parts["w"] > 0).sum())
    s = Sums(pd.Series(parts.index), W, codes)
    n = int(parts.loc[parts["w"] > 0, ["n1", "n0"]].to_numpy().sum())
    if strata == 0:
        why = "no item has both backtracking and non-backtracking instances"
        out["accuracy_gain_within_item"] = _empty(n_items, estimator=WITHIN_ITEM_ESTIMATOR, reason=why)
        out["accuracy_gain_within_item_relative"] = _empty(n_items, estimator=WITHIN_ITEM_ESTIMATOR, reason=why)
        return
    est, reps, _ = s.ratio(parts["rd_num"].to_numpy(), parts["w"].to_numpy())
    out["accuracy_gain_within_item"] = stat(est, reps, n, strata, ci, unit="points", estimator=WITHIN_ITEM_ESTIMATOR)
    with np.errstate(invalid="ignore", divide="ignore"):
        est, reps, _ = s.ratio(parts["rr_num"].to_numpy(), parts["rr_den"].to_numpy())
    out["accuracy_gain_within_item_relative"] = stat(est - 1, reps - 1, n, strata, ci, unit="relative",
                                                     estimator=WITHIN_ITEM_ESTIMATOR.replace(
                                                         "risk difference", "risk ratio - 1"))


def _groups(df: pd.DataFrame):
    for v in [x for x in ("base", "easy", "nca") if x in set(df["variant"])] + \
             sorted(set(df["variant"]) - {"base", "easy", "nca"}):
        dv = df[df["variant"] == v]
        yield v, "all", dv
        for d in sorted(dv["domain"].unique()):
            yield v, d, dv[dv["domain"] == d]


def compute_report(df: pd.DataFrame, similarity: Optional[dict] = None, n_boot: int = N_BOOT, seed: int = 0,
                   ci: float = CI, mass_threshold: float = MASS_THRESHOLD) -> dict:
    """Every number of method.md's table (with intervals and n), per variant and domain, under its reporting
    rules (option mass, seeds, sensitivity, censoring, within-item effects, similarity baselines, answer orders),
    plus seed noise, position bias, entropy curves and histograms, as a JSON-friendly dict."""
    if df is None or len(df) == 0:
        raise LoopLensError("no results to report on")
    mass_threshold = check_mass_threshold(mass_threshold)
    attrs = dict(df.attrs)
    df = normalise_types(df.reset_index(drop=True))
    df.attrs = {}  # pandas deep-copies attrs (the similarity file) into every slice: keep them out of the way
    if similarity is None:
        similarity = attrs.get("similarity")
    items = sorted(df["item_id"].unique())
    codes = {iid: i for i, iid in enumerate(items)}
    W = bootstrap_weights(len(items), n_boot, seed)
    ranks = abandoned_ranks(df, similarity)
    dv = derive(df, similarity, mass_threshold)

    groups = []
    by = {}
    for v, d, g in _groups(df):
        st = _group_stats(g, W, codes, ranks, ci, dv)
        by[(v, d)] = st
        groups.append({"variant": v, "domain": d, **st})

    meta = _meta(df, n_boot, ci, seed, similarity, attrs.get("manifest"))
    meta.update({"mass_threshold": mass_threshold, "headline_basis": HEADLINE_BASIS,
                 "kl_threshold": KL_THRESHOLD, "kl_window": KL_WINDOW, "run_length": RUN_LENGTH,
                 "sensitivity": {"run_lengths": list(SENSITIVITY_RUN_LENGTHS),
                                 "kl_thresholds": list(SENSITIVITY_KL_THRESHOLDS)},
                 "seeds_per_instance": float(df.groupby(["item_id", "variant", "permutation"])["seed"]
                                             .nunique().mean()),
                 "orders_balanced": orders_balanced(df),
                 "reference_model": REFERENCE_MODEL, "reference_benchmark": REFERENCE_BENCHMARK,
                 "title": report_title(meta)})
    headline = _headline(df, by, W, codes, ci, similarity is not None, dv)
    exploration = _exploration(df, W, codes, ci)
    rep = {
        "schema": SCHEMA,
        "meta": meta,
        "headline": headline,
        "groups": groups,
        "variants": {g["variant"]: g for g in groups if g["domain"] == "all"},
        "consistency": consistency(by),
        "exploration": exploration,
        "seed_noise": seed_noise(df, W, codes, ci),
        "position_bias": position_bias(df, W, codes, ci),
        "entropy_curves": entropy_curves(df, W, codes, ci, dv=dv),
        "exploration_hist": exploration_hist(df),
        "destinations": destinations(df, W, codes, ci),
    }
    return rep


def report_title(meta: dict) -> str:
    """What produced the numbers: "<model> on <benchmark>"."""
    bench = meta.get("benchmark")
    name = Path(str(bench)).stem if bench else "an unnamed benchmark"
    model = str(meta.get("model"))
    return f"{Path(model).name if '/' in model else model} on {name}"


def reference_caveat(meta: dict) -> Optional[str]:
    """One sentence when the model or the benchmark is not the paper's (None when both are)."""
    if meta.get("model") == REFERENCE_MODEL and meta.get("benchmark") == REFERENCE_BENCHMARK:
        return None
    return (f"These numbers are {report_title(meta)}'s; the reference values are {REFERENCE_MODEL}'s on "
            f"{REFERENCE_BENCHMARK}, so they frame the comparison and are not reproduced by this run.")


def orders_balanced(df: pd.DataFrame) -> Optional[bool]:
    """True when, per (item, variant) and seed, every original option sits in every shown position equally often
    (None when the rows carry no ``order``)."""
    if "order" not in df.columns or len(df) == 0:
        return None
    for _, g in df.groupby(["item_id", "variant", "seed"]):
        orders = np.stack([np.asarray(o, dtype=np.int64) for o in g["order"]])
        n = orders.shape[1]
        counts = np.zeros((n, n), dtype=np.int64)
        np.add.at(counts, (orders, np.broadcast_to(np.arange(n), orders.shape)), 1)
        if counts.min() != counts.max():
            return False
    return True


def consistency(by: dict) -> dict:
    """The check the paper's numbers allow: the accuracy of backtracked instances *is* the share of backtracks
    that end correct (a backtracking instance's final answer is its destination), so 52% with "+34%" implies a
    non-backtracking accuracy of 0.52 / 1.34 = 38.8% if relative, 52% - 34% = 18% (below chance, 25%) if in
    points: the relative reading is the plausible one.  The same identity on this run, per variant."""
    ref_bt = 0.52
    out = {"reference": {"backtracks_end_correct": ref_bt, "gain": 0.34,
                         "implied_acc_not_backtracked_if_relative": ref_bt / 1.34,
                         "implied_acc_not_backtracked_if_points": ref_bt - 0.34, "chance": 0.25,
                         "reading": "relative (the points reading implies an accuracy below chance)"},
           "this_run": {}}
    for (v, d), st in by.items():
        if d != "all":
            continue
        a, b = st["acc_backtracked"].get("value"), st["backtracks_end_correct"].get("value")
        out["this_run"][v] = {"acc_backtracked": a, "backtracks_end_correct": b,
                              "equal": None if a is None or b is None else bool(abs(a - b) < 1e-12)}
    return out


def _meta(df, n_boot, ci, seed, similarity, manifest=None) -> dict:
    man = manifest or {}
    first = lambda c: (df[c].iloc[0] if c in df.columns and len(df) else None)  # noqa: E731
    return {
        "generated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": first("model"), "checkpoint_hash": first("checkpoint_hash"),
        "models": sorted(df["model"].unique().tolist()) if "model" in df else [],
        "steps": int(first("steps")) if "steps" in df else None,
        "template": first("template"),
        "instances": int(len(df)), "items": int(df["item_id"].nunique()),
        "variants": {v: int(n) for v, n in df["variant"].value_counts().sort_index().items()},
        "domains": sorted(df["domain"].unique().tolist()),
        "permutations": int(df["permutation"].nunique()), "seeds": int(df["seed"].nunique()),
        "n_boot": n_boot, "ci": ci, "bootstrap_seed": seed, "resampling": "items",
        "similarity_model": (similarity or {}).get("model"),
        "benchmark": shown_path(man.get("benchmark")), "fingerprint": man.get("fingerprint"),
        "sweep_parameters": man.get("parameters"), "versions": man.get("versions"),
    }


def _headline(df, by, W, codes, ci, have_sim, dv) -> List[dict]:
    rows = []
    base = by.get(("base", "all"))

    def add(key, finding, st, note="", answering=None):
        row = {"key": key, "finding": finding, "paper": PAPER.get(key, ""), "note": note}
        row.update(st if st is not None else _empty())
        row["answering"] = answering if answering is not None else _empty()
        rows.append(row)

    def ans(group, key):
        a = (group or {}).get("answering") or {}
        return a.get(key) if a.get("available") else None

    def rank_note(g):
        parts = []
        for name, key in (("wrong choices", "wrong_choice_similarity_ranks"),
                          ("frontrunner", "frontrunner_similarity_ranks")):
            r1 = (g.get(key) or {}).get("rank_1") or {}
            parts.append(f"{name}: {_pct(r1.get('value'))} rank 1 (n {(g.get(key) or {}).get('n', 0)})")
        return "; ".join(parts) + "; chance 33%"

    if base is not None:
        add("backtrack_rate_base", "Base instances with at least one backtrack", base["backtrack_rate"],
            "per-seed rate (every seed's run counted)", answering=ans(base, "backtrack_rate"))
        add("robust_backtrack_rate_base", "Base instances whose backtrack holds under a majority of seeds",
            base["robust_backtrack_rate"], f"verdict flips across seeds: "
            f"{_pct(base['verdict_flip_share'].get('value'))}", answering=ans(base, "robust_backtrack_rate"))
        add("acc_gain_points", "accuracy gain of backtracking vs non-backtracking instances, in points, pooled (Base)",
            base["acc_gain_points"], f"acc {_pct(base['acc_backtracked']['value'])} vs "
            f"{_pct(base['acc_not_backtracked']['value'])}", answering=ans(base, "acc_gain_points"))
        add("acc_gain_relative", "accuracy gain of backtracking vs non-backtracking instances, relative, pooled "
            "(Base)", base["acc_gain_relative"], answering=ans(base, "acc_gain_relative"))
        add("acc_gain_within_item", "accuracy gain of backtracking within items, in points (Base; Mantel-Haenszel "
            "over items)", base["accuracy_gain_within_item"],
            f"relative: {_pct(base['accuracy_gain_within_item_relative'].get('value'))}",
            answering=ans(base, "accuracy_gain_within_item"))
        add("backtracks_end_correct", "Base backtracks that end on the correct answer", base["backtracks_end_correct"],
            answering=ans(base, "backtracks_end_correct"))
        for j, word in ((1, "most"), (2, "2nd most"), (3, "least")):
            add(f"abandoned_rank_{j}", f"abandoned answer is the {word} stem-similar distractor (Base)",
                base.get(f"abandoned_rank_{j}"), (rank_note(base) if j == 1 else "") if have_sim
                else "no similarity file", answering=ans(base, f"abandoned_rank_{j}"))
    ex = _exploration_pair(df, W, codes, ci)
    exa = _exploration_pair(df[dv["_answering"].fillna(False).astype(bool).to_numpy()], W, codes, ci) \
        if not dv["_answering"].isna().any() else None
    if ex is not None:
        add("easy_shorter", "exploration with Easy distractors vs Base: Easy shorter by (converged instances)",
            ex["easy_shorter"],
            f"mean exploration Base {ex['base']['value']:.2f} vs Easy {ex['easy']['value']:.2f} steps "
            "(converged instances)" if ex["base"]["value"] is not None and ex["easy"]["value"] is not None else "",
            answering=(exa or {}).get("easy_shorter"))
        add("easy_shorter_restricted", "exploration with Easy distractors vs Base: Easy shorter by (restricted "
            "means, never-converged censored at T)", ex["easy_shorter_restricted"],
            f"never converged: Base {_pct(ex['never_converged_share']['base'])}, Easy "
            f"{_pct(ex['never_converged_share']['easy'])}", answering=(exa or {}).get("easy_shorter_restricted"))
        add("base_longer", "exploration with Easy distractors vs Base: Base longer by (converged instances)",
            ex["base_longer"], answering=(exa or {}).get("base_longer"))
    nca = by.get(("nca", "all"))
    if nca is not None:
        add("nca_never_converged", "NCA instances that never converge", nca["never_converged_rate"],
            f"Base: {_pct(base['never_converged_rate']['value'])}" if base else "",
            answering=ans(nca, "never_converged_rate"))
        add("nca_min_entropy_norm", "NCA: lowest normalised entropy over all steps (mean over instances)",
            nca["min_entropy_norm"], f"Base: {_fmt(base['min_entropy_norm']['value'])}" if base else "",
            answering=ans(nca, "min_entropy_norm"))
    for v in ("base", "easy", "nca"):
        g = by.get((v, "all"))
        if g is not None:
            add(f"low_mass_share_{v}", f"{v}: steps below the mass threshold (not answering)", g["low_mass_share"],
                f"instances not answering from exploration end on: "
                f"{_pct(g['low_mass_instance_share'].get('value'))}")
    return rows


def _exploration_pair(df, W, codes, ci) -> Optional[dict]:
    """Mean exploration of Base and Easy on the same items, and their ratio both ways: over converged instances,
    and as restricted means (never-converged instances censored at T)."""
    b = df[df["variant"] == "base"]
    e = df[df["variant"] == "easy"]
    if len(b) == 0 or len(e) == 0:
        return None
    common = sorted(set(b["item_id"]) & set(e["item_id"]))
    b, e = b[b["item_id"].isin(common)], e[e["item_id"].isin(common)]
    s_b, s_e = Sums(b["item_id"], W, codes), Sums(e["item_id"], W, codes)

    def mean(g, s, restricted=False):
        conv = g["converged"].astype(bool).to_numpy()
        x = g["exploration_end"].astype("Float64").fillna(0).to_numpy(dtype=np.float64)
        if restricted:
            if len(g) == 0:
                return None
            return s.ratio(np.where(conv, x, g["steps"].to_numpy(np.float64)), np.ones(len(g)))
        if conv.sum() == 0:
            return None
        return s.ratio(np.where(conv, x, 0.0), conv)

    n_items = len(common)
    nc = {"base": int((~b["converged"].astype(bool)).sum()), "easy": int((~e["converged"].astype(bool)).sum())}
    ncs = {"base": nc["base"] / len(b) if len(b) else None, "easy": nc["easy"] / len(e) if len(e) else None}
    out = {"never_converged": nc, "never_converged_share": ncs}
    mb, me = mean(b, s_b), mean(e, s_e)
    rb, re_ = mean(b, s_b, True), mean(e, s_e, True)
    nb, ne = int(b["converged"].sum()), int(e["converged"].sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        if mb is None or me is None:
            out.update({"base": _empty(n_items), "easy": _empty(n_items), "easy_shorter": _empty(n_items),
                        "base_longer": _empty(n_items)})
        else:
            out.update({
                "base": stat(mb[0], mb[1], nb, n_items, ci),
                "easy": stat(me[0], me[1], ne, n_items, ci),
                "easy_shorter": stat(1 - me[0] / mb[0], 1 - me[1] / mb[1], nb + ne, n_items, ci,
                                     n_base=nb, n_easy=ne),
                "base_longer": stat(mb[0] / me[0] - 1, mb[1] / me[1] - 1, nb + ne, n_items, ci,
                                    n_base=nb, n_easy=ne)})
        if rb is None or re_ is None:
            out.update({"base_restricted": _empty(n_items), "easy_restricted": _empty(n_items),
                        "easy_shorter_restricted": _empty(n_items), "base_longer_restricted": _empty(n_items)})
        else:
            out.update({
                "base_restricted": stat(rb[0], rb[1], len(b), n_items, ci),
                "easy_restricted": stat(re_[0], re_[1], len(e), n_items, ci),
                "easy_shorter_restricted": stat(1 - re_[0] / rb[0], 1 - re_[1] / rb[1], len(b) + len(e), n_items,
                                                ci, n_base=len(b), n_easy=len(e)),
                "base_longer_restricted": stat(rb[0] / re_[0] - 1, rb[1] / re_[1] - 1, len(b) + len(e), n_items,
                                               ci, n_base=len(b), n_easy=len(e))})
    return out


def _exploration(df, W, codes, ci) -> dict:
    out = {"pair": _exploration_pair(df, W, codes, ci)}
    # Paired per item: mean exploration per variant (converged instances), for the paired plot.
    conv = df[df["converged"].astype(bool)]
    per = conv.groupby(["item_id", "variant"])["exploration_end"].mean().astype(float).unstack()
    nev = df.assign(nc=~df["converged"].astype(bool)).groupby(["item_id", "variant"])["nc"].sum().unstack()
    rows = []
    dom = df.groupby("item_id")["domain"].first()
    for iid in sorted(df["item_id"].unique()):
        row = {"item_id": iid, "domain": dom[iid]}
        for v in ("base", "easy", "nca"):
            x = per.loc[iid, v] if (iid in per.index and v in per.columns) else float("nan")
            row[v] = _num(x)
            row[f"{v}_never_converged"] = int(nev.loc[iid, v]) if (iid in nev.index and v in nev.columns
                                                                   and not pd.isna(nev.loc[iid, v])) else 0
        rows.append(row)
    out["per_item"] = rows
    return out


def exploration_hist(df) -> dict:
    """Per variant: counts of exploration length 1..T and of never-converged instances."""
    T = int(df["steps"].max())
    out = {}
    for v, g in df.groupby("variant"):
        x = g["exploration_end"].dropna().astype(int)
        counts = np.bincount(x, minlength=T + 1)[1:T + 1]
        out[v] = {"length": list(range(1, T + 1)), "count": counts.tolist(),
                  "never_converged": int((~g["converged"].astype(bool)).sum()), "n": int(len(g))}
    return out


def entropy_curves(df, W, codes, ci, normalised: bool = False, dv: Optional[pd.DataFrame] = None) -> List[dict]:
    """Mean entropy per step and variant with item-bootstrap bands (figure 4), and the share of instances whose
    option mass is below the threshold at that step (``low_mass_share``; None without per-step masses)."""
    rows = []
    for v, g in df.groupby("variant"):
        low = None
        if dv is not None and "letter_mass" in g.columns and len({len(m) for m in g["letter_mass"]}) == 1:
            thr = float(dv.attrs.get("mass_threshold", MASS_THRESHOLD))
            low = (np.stack([_arr(m) for m in g["letter_mass"]]) < thr).mean(axis=0)
        ent = np.stack(g["entropy"].map(lambda a: np.asarray(a, np.float64)).to_list())
        if normalised:
            ent = ent / np.log(g["n_options"].to_numpy(np.float64))[:, None]
        norm = ent / np.log(g["n_options"].to_numpy(np.float64))[:, None]
        s = Sums(g["item_id"], W, codes)
        ones = np.ones(len(g))
        est, reps, _ = s.ratio(ent, np.repeat(ones[:, None], ent.shape[1], 1))
        est_n, reps_n, _ = s.ratio(norm, np.repeat(ones[:, None], ent.shape[1], 1))
        lo, hi = _ci(reps, ci)
        lo_n, hi_n = _ci(reps_n, ci)
        for t in range(ent.shape[1]):
            rows.append({"variant": v, "step": t + 1, "mean": _num(est[t]), "lo": _num(lo[t]), "hi": _num(hi[t]),
                         "mean_norm": _num(est_n[t]), "lo_norm": _num(lo_n[t]), "hi_norm": _num(hi_n[t]),
                         "n": int(len(g)),
                         "low_mass_share": None if low is None or t >= len(low) else _num(low[t])})
    return rows


def destinations(df, W, codes, ci) -> List[dict]:
    """Where backtracks end: the correct answer or a distractor, per variant (with a correct option)."""
    rows = []
    for v, g in df.groupby("variant"):
        g = g[g["backtracked"].astype(bool)]
        if len(g) == 0 or g["correct"].isna().all():
            continue
        s = Sums(g["item_id"], W, codes)
        corr = g["is_correct"].fillna(False).astype(bool).to_numpy()
        est, reps, n = s.ratio(corr, np.ones(len(g)))
        rows.append({"variant": v, "destination": "correct", **stat(est, reps, n, g["item_id"].nunique(), ci)})
        rows.append({"variant": v, "destination": "distractor",
                     **stat(1 - est, 1 - reps, n, g["item_id"].nunique(), ci)})
    return rows


def seed_noise(df, W, codes, ci) -> dict:
    """How often the backtrack verdict (and the final answer) differs across seeds of the same instance."""
    keys = ["item_id", "variant", "permutation"]
    n_seeds = df.groupby(keys)["seed"].nunique()
    multi = n_seeds[n_seeds >= 2]
    if len(multi) == 0:
        return {"available": False, "reason": "every instance has one seed: rerun the sweep with --seeds 2 or more "
                "into the same directory to measure seed noise", "seeds": int(df["seed"].nunique())}
    d = df.set_index(keys).loc[multi.index].reset_index()
    agg = d.groupby(keys).agg(bt_any=("backtracked", "any"), bt_all=("backtracked", "all"),
                              bt_sum=("backtracked", "sum"), n=("seed", "nunique"),
                              fa_n=("final_answer_original", "nunique")).reset_index()
    agg["flip"] = agg["bt_any"] & ~agg["bt_all"]
    agg["one_only"] = agg["bt_sum"] == 1
    agg["answer_flip"] = agg["fa_n"] > 1
    # Pairwise disagreement: share of seed pairs with different verdicts.
    agg["pair_disagree"] = (agg["bt_sum"] * (agg["n"] - agg["bt_sum"])) / (agg["n"] * (agg["n"] - 1) / 2)
    out = {"available": True, "instances": int(len(agg)), "seeds_per_instance": float(agg["n"].mean())}
    for v, g in [("all", agg)] + list(agg.groupby("variant")):
        s = Sums(g["item_id"], W, codes)
        ones = np.ones(len(g))
        st = {}
        for name, num, den in (("backtrack_flip_rate", g["flip"], ones),
                               ("pairwise_disagreement", g["pair_disagree"], ones),
                               ("answer_flip_rate", g["answer_flip"], ones),
                               ("single_seed_backtracks", g["one_only"], g["bt_any"])):
            num = np.asarray(num, np.float64)
            den = np.asarray(den, np.float64)
            if den.sum() == 0:
                st[name] = _empty(g["item_id"].nunique())
                continue
            est, reps, n = s.ratio(num, den)
            st[name] = stat(est, reps, n, g["item_id"].nunique(), ci)
        out[v] = st
    return out


def position_bias(df, W, codes, ci) -> dict:
    """Across answer orders, per variant: how often each shown position is the final answer, accuracy by the
    position of the correct option, and the test of position bias: the final answer's position against the
    correct answer's position, a chi-square test of homogeneity (:func:`scipy.stats.chi2_contingency`) of the
    two position distributions (a model that always answers correctly shows none, whatever the design).  Variants
    without a correct option are tested against equal shares (right when the orders are balanced).  The
    ``contingency`` table counts instances by (correct position, final position)."""
    out = {}
    for v, g in df.groupby("variant"):
        n_opt = int(g["n_options"].mode().iloc[0])
        g = g[g["n_options"] == n_opt]
        s = Sums(g["item_id"], W, codes)
        fa = g["final_answer"].to_numpy()
        ones = np.ones(len(g))
        shares, acc = [], []
        for k in range(n_opt):
            est, reps, n = s.ratio(fa == k, ones)
            shares.append({"position": LETTERS[k], **stat(est, reps, n, g["item_id"].nunique(), ci,
                                                             chance=1.0 / n_opt)})
            if g["correct"].notna().any():
                has = (g["correct"].fillna(-1).astype(int).to_numpy() == k)
                if has.sum():
                    corr = g["is_correct"].fillna(False).astype(bool).to_numpy()
                    e2, r2, n2 = s.ratio(corr & has, has)
                    acc.append({"correct_position": LETTERS[k], **stat(e2, r2, n2, g["item_id"].nunique(), ci)})
        counts = np.bincount(fa.astype(int), minlength=n_opt)
        chi2_u, p_u = chisquare_uniform(counts)
        entry = {"n_options": n_opt, "final_position_shares": shares, "accuracy_by_correct_position": acc,
                 "counts": counts.tolist(), "chi2_uniform": _num(chi2_u), "p_value_uniform": _num(p_u)}
        gc = g[g["correct"].notna()]
        if len(gc):
            cp = gc["correct"].astype(int).to_numpy()
            fp = gc["final_answer"].astype(int).to_numpy()
            table = np.zeros((n_opt, n_opt), dtype=np.int64)
            np.add.at(table, (cp, fp), 1)
            correct_counts = np.bincount(cp, minlength=n_opt)
            chi2, pval, dof = contingency_test(np.stack([np.bincount(fp, minlength=n_opt), correct_counts]))
            entry.update({"test": "final position vs correct position: chi-square test of homogeneity "
                                  "(scipy.stats.chi2_contingency)",
                          "contingency": table.tolist(), "correct_counts": correct_counts.tolist(),
                          "chi2": _num(chi2), "p_value": _num(pval), "dof": dof})
        else:
            entry.update({"test": "no correct option: final positions against equal shares (scipy.stats.chisquare)",
                          "chi2": _num(chi2_u), "p_value": _num(p_u), "dof": n_opt - 1})
        out[v] = entry
    return out
