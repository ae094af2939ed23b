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
from typing import Dict, List, Optional

import numpy as np
import pandas as pd

from ..errors import LoopLensError
from ..settings import LETTERS
from ..stats import CI, N_BOOT, Sums, bootstrap_weights, chisquare_uniform
from ..stats import empty_stat as _empty
from ..stats import finite as _num
from ..stats import percentile_interval as _ci
from ..stats import stat
from ..sweep.load import normalise_types
from .text import fmt as _fmt
from .text import pct as _pct

SCHEMA = "looplens.report/1"
SIM_KEYS = {"base": "distractor_ranks", "nca": "nca_distractor_ranks", "easy": "easy_ranks"}

# The paper's numbers (method.md), for the comparison column.
PAPER = {
    "backtrack_rate_base": "32%",
    "acc_gain_points": "34% higher (points or relative: unstated)",
    "acc_gain_relative": "34% higher (points or relative: unstated)",
    "backtracks_end_correct": "52%",
    "abandoned_rank_1": "72%", "abandoned_rank_2": "22%", "abandoned_rank_3": "6%",
    "easy_shorter": "54% shorter (abstract)",
    "base_longer": "54% longer",
    "nca_never_converged": "never converges",
    "nca_min_entropy_norm": "entropy stays high for all steps",
}



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


# ---------------------------------------------------------------------------------------------- the report
def _group_stats(g: pd.DataFrame, W: np.ndarray, codes: Dict[str, int], ranks: pd.Series, ci: float) -> dict:
    s = Sums(g["item_id"], W, codes)
    out: Dict[str, dict] = {}
    has_correct = g["correct"].notna().to_numpy()
    corr = g["is_correct"].fillna(False).astype(bool).to_numpy() & has_correct
    bt = g["backtracked"].astype(bool).to_numpy()
    conv = g["converged"].astype(bool).to_numpy()
    ones = np.ones(len(g))
    n_items = g["item_id"].nunique()

    items_arr = g["item_id"].to_numpy()

    def r(name, num, den, **extra):
        den_arr = np.asarray(den, dtype=np.float64)
        if np.sum(den_arr) == 0:
            out[name] = _empty(0, **extra)
            return None
        est, reps, n = s.ratio(num, den_arr)
        k = len(set(items_arr[den_arr > 0]))  # items contributing to the denominator
        out[name] = stat(est, reps, n, k, ci, **extra)
        return est, reps

    out["instances"] = {"value": len(g), "n": len(g), "n_items": n_items}
    r("backtrack_rate", bt, ones)
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
    r("converged_rate", conv, ones)
    r("never_converged_rate", ~conv, ones, count=int((~conv).sum()))
    expl = g["exploration_end"].astype("Float64").fillna(0).to_numpy(dtype=np.float64)
    r("mean_exploration", np.where(conv, expl, 0.0), conv)
    r("final_entropy_norm", g["final_entropy_norm"].to_numpy(dtype=np.float64), ones)
    ent = np.stack(g["entropy"].map(lambda a: np.asarray(a, np.float64)).to_list()) if len(g) else np.zeros((0, 1))
    nopt = g["n_options"].to_numpy(dtype=np.float64)
    min_norm = ent.min(axis=1) / np.log(nopt) if len(g) else np.zeros(0)
    r("min_entropy_norm", min_norm, ones)
    # Destinations of backtracks: the correct answer vs a distractor (variants with a correct option).
    # Abandoned answers' similarity ranks.
    rk = ranks.loc[g.index]
    k = n_distractors(g["variant"].iloc[0]) if g["variant"].nunique() == 1 else 3
    counts = np.array([[sum(1 for x in row if x == j) for j in range(1, k + 1)] for row in rk]) \
        if len(g) else np.zeros((0, k))
    total = counts.sum(axis=1) if len(g) else np.zeros(0)
    for j in range(1, k + 1):
        r(f"abandoned_rank_{j}", counts[:, j - 1] if len(g) else np.zeros(0), total, chance=1.0 / k)
    return out


def _groups(df: pd.DataFrame):
    for v in [x for x in ("base", "easy", "nca") if x in set(df["variant"])] + \
             sorted(set(df["variant"]) - {"base", "easy", "nca"}):
        dv = df[df["variant"] == v]
        yield v, "all", dv
        for d in sorted(dv["domain"].unique()):
            yield v, d, dv[dv["domain"] == d]


def compute_report(df: pd.DataFrame, similarity: Optional[dict] = None, n_boot: int = N_BOOT, seed: int = 0,
                   ci: float = CI) -> dict:
    """Every number of method.md's table (with intervals and n), per variant and domain, plus seed noise,
    position bias, entropy curves and histograms, as a JSON-friendly dict."""
    if df is None or len(df) == 0:
        raise LoopLensError("no results to report on")
    df = normalise_types(df.reset_index(drop=True))
    if similarity is None:
        similarity = df.attrs.get("similarity")
    items = sorted(df["item_id"].unique())
    codes = {iid: i for i, iid in enumerate(items)}
    W = bootstrap_weights(len(items), n_boot, seed)
    ranks = abandoned_ranks(df, similarity)

    groups = []
    by = {}
    for v, d, g in _groups(df):
        st = _group_stats(g, W, codes, ranks, ci)
        by[(v, d)] = st
        groups.append({"variant": v, "domain": d, **st})

    headline = _headline(df, by, W, codes, ci, similarity is not None)
    exploration = _exploration(df, W, codes, ci)
    rep = {
        "schema": SCHEMA,
        "meta": _meta(df, n_boot, ci, seed, similarity),
        "headline": headline,
        "groups": groups,
        "exploration": exploration,
        "seed_noise": seed_noise(df, W, codes, ci),
        "position_bias": position_bias(df, W, codes, ci),
        "entropy_curves": entropy_curves(df, W, codes, ci),
        "exploration_hist": exploration_hist(df),
        "destinations": destinations(df, W, codes, ci),
    }
    return rep


def _meta(df, n_boot, ci, seed, similarity) -> dict:
    man = df.attrs.get("manifest") or {}
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
        "benchmark": man.get("benchmark"), "fingerprint": man.get("fingerprint"),
        "sweep_parameters": man.get("parameters"), "versions": man.get("versions"),
    }


def _headline(df, by, W, codes, ci, have_sim) -> List[dict]:
    rows = []
    base = by.get(("base", "all"))

    def add(key, finding, st, note=""):
        row = {"key": key, "finding": finding, "paper": PAPER.get(key, ""), "note": note}
        row.update(st if st is not None else _empty())
        rows.append(row)

    if base is not None:
        add("backtrack_rate_base", "Base instances with at least one backtrack", base["backtrack_rate"])
        add("acc_gain_points", "accuracy gain of backtracking vs non-backtracking instances, in points (Base)",
            base["acc_gain_points"], f"acc {_pct(base['acc_backtracked']['value'])} vs "
            f"{_pct(base['acc_not_backtracked']['value'])}")
        add("acc_gain_relative", "accuracy gain of backtracking vs non-backtracking instances, relative (Base)",
            base["acc_gain_relative"])
        add("backtracks_end_correct", "Base backtracks that end on the correct answer", base["backtracks_end_correct"])
        for j, word in ((1, "most"), (2, "2nd most"), (3, "least")):
            add(f"abandoned_rank_{j}", f"abandoned answer is the {word} stem-similar distractor (Base)",
                base.get(f"abandoned_rank_{j}"), "chance 33%" if have_sim else "no similarity file")
    ex = _exploration_pair(df, W, codes, ci)
    if ex is not None:
        add("easy_shorter", "exploration with Easy distractors vs Base: Easy shorter by", ex["easy_shorter"],
            f"mean exploration Base {ex['base']['value']:.2f} vs Easy {ex['easy']['value']:.2f} steps "
            "(converged instances)" if ex["base"]["value"] is not None and ex["easy"]["value"] is not None else "")
        add("base_longer", "exploration with Easy distractors vs Base: Base longer by", ex["base_longer"])
    nca = by.get(("nca", "all"))
    if nca is not None:
        add("nca_never_converged", "NCA instances that never converge", nca["never_converged_rate"],
            f"Base: {_pct(base['never_converged_rate']['value'])}" if base else "")
        add("nca_min_entropy_norm", "NCA: lowest normalised entropy over all steps (mean over instances)",
            nca["min_entropy_norm"], f"Base: {_fmt(base['min_entropy_norm']['value'])}" if base else "")
    return rows


def _exploration_pair(df, W, codes, ci) -> Optional[dict]:
    """Mean exploration (converged instances) of Base and Easy on the same items, and their ratio both ways."""
    b = df[df["variant"] == "base"]
    e = df[df["variant"] == "easy"]
    if len(b) == 0 or len(e) == 0:
        return None
    common = sorted(set(b["item_id"]) & set(e["item_id"]))
    b, e = b[b["item_id"].isin(common)], e[e["item_id"].isin(common)]
    s_b, s_e = Sums(b["item_id"], W, codes), Sums(e["item_id"], W, codes)

    def mean(g, s):
        conv = g["converged"].astype(bool).to_numpy()
        x = g["exploration_end"].astype("Float64").fillna(0).to_numpy(dtype=np.float64)
        if conv.sum() == 0:
            return None
        return s.ratio(np.where(conv, x, 0.0), conv)

    mb, me = mean(b, s_b), mean(e, s_e)
    n_items = len(common)
    if mb is None or me is None:
        return {"base": _empty(n_items), "easy": _empty(n_items), "easy_shorter": _empty(n_items),
                "base_longer": _empty(n_items)}
    nb, ne = int(b["converged"].sum()), int(e["converged"].sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "base": stat(mb[0], mb[1], nb, n_items, ci),
            "easy": stat(me[0], me[1], ne, n_items, ci),
            "easy_shorter": stat(1 - me[0] / mb[0], 1 - me[1] / mb[1], nb + ne, n_items, ci,
                                 n_base=nb, n_easy=ne),
            "base_longer": stat(mb[0] / me[0] - 1, mb[1] / me[1] - 1, nb + ne, n_items, ci,
                                n_base=nb, n_easy=ne),
            "never_converged": {"base": int((~b["converged"].astype(bool)).sum()),
                                "easy": int((~e["converged"].astype(bool)).sum())},
        }


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


def entropy_curves(df, W, codes, ci, normalised: bool = False) -> List[dict]:
    """Mean entropy per step and variant with item-bootstrap bands (figure 4)."""
    rows = []
    for v, g in df.groupby("variant"):
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
                         "n": int(len(g))})
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
    """Across permutations: how often each shown position is the final answer (chance 1/n), and accuracy by the
    position of the correct option, per variant; chi-square test of uniform final positions."""
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
        chi2, pval = chisquare_uniform(counts)
        out[v] = {"n_options": n_opt, "final_position_shares": shares, "accuracy_by_correct_position": acc,
                  "chi2": _num(chi2), "p_value": _num(pval), "counts": counts.tolist()}
    return out
