"""Reports on sweep results: every number of ``shared/docs/method.md``'s table, with 95% bootstrap intervals.

Pure pandas/numpy (the Benchmark page calls these):

* :func:`load_results` (a sweep directory or a Parquet file -> one row per instance),
* :func:`compute_report` (-> a JSON-friendly dict: headline table, per variant x domain table, exploration,
  seed noise, position bias, entropy curves, histograms),
* :func:`to_markdown`, :func:`save_report`, :func:`load_report`.

Statistics (fixed here).  Rates and means are ratios of sums over instances.  Intervals are percentile bootstraps
that resample **items** (all of an item's instances -- permutations, seeds, and for paired statistics its
variants -- move together), ``n_boot`` = 2000 replicates, seeded, so a report is reproducible.  Every number
comes with ``n`` (instances in its denominator) and ``n_items``.  The accuracy gain of backtracking is stated
both ways: in points (acc_bt - acc_no_bt) and relative (acc_bt / acc_no_bt - 1); the exploration change both
ways: "Easy shorter by" 1 - mean_easy / mean_base and "Base longer by" mean_base / mean_easy - 1, over
converged instances (never-converged instances are counted separately, never replaced by T).

``python -m backend report DIR [--format md|json] [--out FILE]``
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from .errors import LoopLensError, UsageError

SCHEMA = "looplens.report/1"
N_BOOT = 2000
CI = 0.95
from .settings import LETTERS  # noqa: E402
NULLABLE_INT = ("correct", "correct_original", "exploration_end", "destination", "frontrunner")
NULLABLE_BOOL = ("is_correct",)
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


# ---------------------------------------------------------------------------------------------- loading
def load_results(path: Union[str, Path], dedupe: bool = True, warn: Optional[Callable[[str], None]] = None
                 ) -> pd.DataFrame:
    """A sweep's rows as one DataFrame (valid parts only; an instance found twice is kept once).

    ``path``: a sweep directory (``part-*.parquet``) or one Parquet file.  ``df.attrs`` gets ``manifest`` and
    ``similarity`` (the directory's ``_similarity.json``) when present.  Nullable integer columns become
    pandas ``Int64``, ``is_correct`` becomes ``boolean``.
    """
    from . import sweep as sw

    p = Path(path)
    warn = warn or (lambda s: print(f"warning: {s}", file=sys.stderr))
    if p.is_file():
        df = pd.read_parquet(p)
        manifest, simpath = None, p.parent / sw.SIMILARITY_FILE
    elif p.is_dir():
        frames = []
        for part in sw.list_parts(p):
            c = sw.check_part(part, None, verify_hidden=False)
            if not c.ok:
                warn(f"{part.name}: {c.reason}: left out (rerun the sweep to recompute it)")
                continue
            frames.append(pd.read_parquet(part))
        if not frames:
            raise LoopLensError(f"{p} holds no sweep results (no readable part-*.parquet)")
        df = pd.concat(frames, ignore_index=True)
        manifest, simpath = sw.read_manifest(p), p / sw.SIMILARITY_FILE
    else:
        raise UsageError(f"no results at {p}: give a sweep directory or a Parquet file")
    missing = [c for c in sw.KEY_COLUMNS if c not in df.columns]
    if missing:
        raise LoopLensError(f"{p} is not a sweep result (missing column(s) {', '.join(missing)})")
    if dedupe:
        dup = df.duplicated(list(sw.KEY_COLUMNS), keep="first")
        if dup.any():
            warn(f"{int(dup.sum())} duplicate instance row(s) dropped")
            df = df[~dup].reset_index(drop=True)
    df = normalise_types(df)
    df.attrs["manifest"] = manifest
    if simpath.is_file():
        from .similarity import load_similarity

        try:
            df.attrs["similarity"] = load_similarity(simpath)
        except UsageError as exc:
            warn(str(exc))
    return df


def normalise_types(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    for c in NULLABLE_INT:
        if c in df.columns:
            df[c] = pd.array(df[c].to_numpy(dtype=object, na_value=None), dtype="Int64") if df[c].dtype == object \
                else df[c].astype("Float64").round().astype("Int64")
    for c in NULLABLE_BOOL:
        if c in df.columns:
            df[c] = df[c].astype("boolean")
    if "domain" in df.columns:
        df["domain"] = df["domain"].fillna("(none)").astype(str)
    return df


# ---------------------------------------------------------------------------------------------- bootstrap
def bootstrap_weights(n_items: int, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """[n_boot, n_items] counts: how often each item is drawn in each replicate (items drawn with
    replacement, ``rng.integers(0, n_items, (n_boot, n_items))`` -- the draws of ``metrics.bootstrap_ci``)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_items, size=(n_boot, n_items))
    w = np.zeros((n_boot, n_items), dtype=np.float64)
    np.add.at(w, (np.repeat(np.arange(n_boot), n_items), idx.reshape(-1)), 1.0)
    return w


class Sums:
    """Per-item sums of (numerator, denominator) so that every ratio and its bootstrap is a matrix product."""

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


def _ci(reps: np.ndarray, ci: float = CI):
    r = np.asarray(reps, dtype=np.float64)
    r = r[np.isfinite(r)] if r.ndim == 1 else r
    if r.size == 0:
        return float("nan"), float("nan")
    a = (1 - ci) / 2
    lo, hi = np.nanquantile(r, [a, 1 - a], axis=0)
    return lo, hi


def _num(x) -> Optional[float]:
    if x is None:
        return None
    x = float(x)
    return None if not math.isfinite(x) else x


def stat(value, reps, n, n_items, ci=CI, **extra) -> dict:
    lo, hi = _ci(reps, ci)
    d = {"value": _num(value), "lo": _num(lo), "hi": _num(hi), "n": int(n), "n_items": int(n_items)}
    d.update(extra)
    return d


def _empty(n_items=0, **extra) -> dict:
    return {"value": None, "lo": None, "hi": None, "n": 0, "n_items": int(n_items), **extra}


# ---------------------------------------------------------------------------------------------- similarity
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
    m = len(codes)
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
    acc = r("accuracy", corr, has_correct)
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
        chi2, pval = _chisquare(counts)
        out[v] = {"n_options": n_opt, "final_position_shares": shares, "accuracy_by_correct_position": acc,
                  "chi2": _num(chi2), "p_value": _num(pval), "counts": counts.tolist()}
    return out


def _chisquare(counts) -> Tuple[float, float]:
    counts = np.asarray(counts, np.float64)
    n = counts.sum()
    if n == 0:
        return float("nan"), float("nan")
    exp = n / len(counts)
    chi2 = float(((counts - exp) ** 2 / exp).sum())
    try:
        from scipy.stats import chi2 as _c2

        p = float(_c2.sf(chi2, len(counts) - 1))
    except ImportError:
        p = float("nan")
    return chi2, p


# ---------------------------------------------------------------------------------------------- output
def _pct(x, digits=1) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{100 * x:.{digits}f}%"


def _fmt(x, digits=3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _pct_ci(st: dict, unit: str = "%") -> str:
    if st is None or st.get("value") is None:
        return "n/a"
    f = _pct if unit == "%" else (lambda x: _pct(x)[:-1] + " pp" if _pct(x) != "n/a" else "n/a")
    if st.get("lo") is None:
        return f(st["value"])
    return f"{f(st['value'])} [{f(st['lo'])}, {f(st['hi'])}]"


def _num_ci(st: dict, digits=2) -> str:
    if st is None or st.get("value") is None:
        return "n/a"
    if st.get("lo") is None:
        return _fmt(st["value"], digits)
    return f"{_fmt(st['value'], digits)} [{_fmt(st['lo'], digits)}, {_fmt(st['hi'], digits)}]"


def to_markdown(rep: dict) -> str:
    m = rep["meta"]
    L = []
    L.append(f"# LoopLens sweep report: {m['model']}")
    L.append("")
    L.append(f"Model `{m['model']}` (checkpoint `{m['checkpoint_hash']}`), {m['steps']} steps, template "
             f"`{m['template']}`; {m['instances']} instances = {m['items']} items x variants "
             f"({', '.join(f'{k} {v}' for k, v in m['variants'].items())}) x {m['permutations']} permutations x "
             f"{m['seeds']} seed(s). Domains: {', '.join(m['domains'])}.")
    L.append(f"Intervals: {int(100 * m['ci'])}% percentile bootstrap over items ({m['n_boot']} replicates, seed "
             f"{m['bootstrap_seed']}). n = instances in the denominator. Similarity model: "
             f"{m.get('similarity_model') or 'none'}. Generated {m['generated']}.")
    L.append("")
    L.append("## The paper's numbers")
    L.append("")
    L.append("| finding | paper | this run [95% CI] | n (items) | note |")
    L.append("|---|---|---|---|---|")
    for r in rep["headline"]:
        val = _pct_ci(r, "pp" if r["key"] == "acc_gain_points" else "%")
        L.append(f"| {r['finding']} | {r['paper']} | {val} | {r['n']} ({r['n_items']}) | {r.get('note', '')} |")
    L.append("")
    L.append("The accuracy gain is given in points (acc_bt - acc_no_bt) and relative (acc_bt / acc_no_bt - 1); the "
             "exploration change as 1 - Easy/Base and Base/Easy - 1 (means over converged instances).")
    L.append("")
    L.append("## Per variant and domain")
    L.append("")
    L.append("| variant | domain | n | accuracy | backtrack rate | acc. backtracked | acc. not backtracked | "
             "gain (points) | gain (relative) | mean exploration | never converged | final entropy (norm.) |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for g in rep["groups"]:
        nc = g["never_converged_rate"]
        L.append(f"| {g['variant']} | {g['domain']} | {g['instances']['value']} | {_pct_ci(g['accuracy'])} | "
                 f"{_pct_ci(g['backtrack_rate'])} | {_pct_ci(g['acc_backtracked'])} | "
                 f"{_pct_ci(g['acc_not_backtracked'])} | {_pct_ci(g['acc_gain_points'], 'pp')} | "
                 f"{_pct_ci(g['acc_gain_relative'])} | {_num_ci(g['mean_exploration'])} | "
                 f"{nc.get('count', 0)} ({_pct(nc['value'])}) | {_num_ci(g['final_entropy_norm'])} |")
    L.append("")
    L.append("## Abandoned answers by stem similarity (backtracking instances)")
    L.append("")
    L.append("| variant | domain | rank 1 (most similar) | rank 2 | rank 3 | rank 4 | n abandoned distractors |")
    L.append("|---|---|---|---|---|---|---|")
    for g in rep["groups"]:
        if g["domain"] != "all" or g.get("abandoned_rank_1") is None:
            continue
        cells = [(_pct_ci(g[f"abandoned_rank_{j}"]) if f"abandoned_rank_{j}" in g else "-") for j in range(1, 5)]
        L.append(f"| {g['variant']} | all | {' | '.join(cells)} | {g['abandoned_rank_1']['n']} |")
    L.append("")
    ex = rep["exploration"]["pair"]
    if ex:
        L.append("## Exploration: Easy vs Base")
        L.append("")
        L.append(f"Mean exploration length (converged instances): Base {_num_ci(ex['base'])}, Easy "
                 f"{_num_ci(ex['easy'])} steps. Easy shorter by {_pct_ci(ex['easy_shorter'])}; Base longer by "
                 f"{_pct_ci(ex['base_longer'])}. Never converged: Base {ex.get('never_converged', {}).get('base')}, "
                 f"Easy {ex.get('never_converged', {}).get('easy')}.")
        L.append("")
    L.append("## Seed noise")
    L.append("")
    sn = rep["seed_noise"]
    if not sn.get("available"):
        L.append(f"Not measured: {sn['reason']}.")
    else:
        L.append(f"{sn['instances']} instances with {sn['seeds_per_instance']:.1f} seeds each.")
        L.append("")
        L.append("| variant | backtrack verdict flips | pairwise disagreement | final answer flips | "
                 "backtracks under one seed only |")
        L.append("|---|---|---|---|---|")
        for v, st in sn.items():
            if isinstance(st, dict) and "backtrack_flip_rate" in st:
                L.append(f"| {v} | {_pct_ci(st['backtrack_flip_rate'])} | {_pct_ci(st['pairwise_disagreement'])} | "
                         f"{_pct_ci(st['answer_flip_rate'])} | {_pct_ci(st['single_seed_backtracks'])} |")
    L.append("")
    L.append("## Position bias (across permutations)")
    L.append("")
    for v, pb in rep["position_bias"].items():
        shares = ", ".join(f"{s['position']} {_pct_ci(s)}" for s in pb["final_position_shares"])
        L.append(f"- **{v}** final answer at position: {shares} (chance {_pct(1 / pb['n_options'])}; "
                 f"chi-square {_fmt(pb['chi2'], 1)}, p = {_fmt(pb['p_value'], 4)})")
        if pb["accuracy_by_correct_position"]:
            acc = ", ".join(f"{s['correct_position']} {_pct_ci(s)}" for s in pb["accuracy_by_correct_position"])
            L.append(f"  - accuracy when the correct option is at: {acc}")
    L.append("")
    return "\n".join(L)


def _clean(o):
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating, float)):
        return _num(o)
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.ndarray):
        return _clean(o.tolist())
    return o


def to_json(rep: dict) -> str:
    return json.dumps(_clean(rep), indent=1, ensure_ascii=False, allow_nan=False)


def save_report(rep: dict, directory: Union[str, Path]) -> Tuple[Path, Path]:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    md, js = d / "report.md", d / "report.json"
    md.write_text(to_markdown(rep), encoding="utf-8")
    js.write_text(to_json(rep) + "\n", encoding="utf-8")
    return md, js


def load_report(path: Union[str, Path]) -> dict:
    """A saved report.json (a file, or a directory holding one)."""
    p = Path(path)
    if p.is_dir():
        p = p / "report.json"
    if not p.is_file():
        raise UsageError(f"no report at {p}")
    try:
        rep = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise LoopLensError(f"{p} is not a valid report ({exc})") from None
    if rep.get("schema") != SCHEMA:
        raise LoopLensError(f"{p} is not a LoopLens report (schema {rep.get('schema')!r})")
    return rep


RESULTS_ROOT = Path(__file__).resolve().parents[1] / "data" / "results"


def shipped_reports(root: Union[str, Path, None] = None) -> Dict[str, Path]:
    """Model name -> directory under data/results holding a report.json (what the Benchmark page shows)."""
    root = Path(root) if root is not None else RESULTS_ROOT
    if not root.is_dir():
        return {}
    return {d.name: d for d in sorted(root.iterdir()) if (d / "report.json").is_file()}


def has_rows(directory: Union[str, Path]) -> bool:
    """True when the directory also holds the per-instance Parquet rows (not only the report)."""
    from .sweep import list_parts

    return bool(list_parts(Path(directory)))


# ---------------------------------------------------------------------------------------------- CLI
def register_cli(sub) -> None:
    p = sub.add_parser("report", help="the paper's numbers with bootstrap intervals, from a sweep's results")
    p.add_argument("dir", help="a sweep results directory (or one Parquet file)")
    p.add_argument("--format", default="md", choices=["md", "json"])
    p.add_argument("--out", default=None, help="write to this file instead of stdout")
    p.add_argument("--save", default=None, metavar="DIR", help="write DIR/report.md and DIR/report.json")
    p.add_argument("--similarity", default=None, help="a similarity JSON (default: the sweep's _similarity.json)")
    p.add_argument("--n-boot", type=int, default=N_BOOT, help=f"bootstrap replicates (default {N_BOOT})")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.set_defaults(func=cmd_report)


def cmd_report(a) -> int:
    if a.n_boot < 1:
        raise UsageError(f"--n-boot must be >= 1, got {a.n_boot}")
    df = load_results(a.dir)
    sim = None
    if a.similarity:
        from .similarity import load_similarity

        sim = load_similarity(a.similarity)
    rep = compute_report(df, similarity=sim, n_boot=a.n_boot, seed=a.seed)
    if a.save:
        md, js = save_report(rep, a.save)
        print(f"wrote {md} and {js}", file=sys.stderr)
    text = to_markdown(rep) if a.format == "md" else to_json(rep)
    if a.out:
        Path(a.out).write_text(text + ("\n" if not text.endswith("\n") else ""), encoding="utf-8")
    elif not a.save:
        print(text)
    return 0
