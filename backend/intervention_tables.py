"""Point-of-no-return and backtrack-splice tables from intervention records, and the sections issue 12 adds to
a sweep report (:func:`report_sections`).  Pure numpy (no torch), so a report can build them from stored
records; the records come from :mod:`backend.exit_report`.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np

from .dynamics import backtrack_steps, dynamics, event_profiles
from .errors import LoopLensError
from .metrics import analyze_trajectory
from .stats import CI, bootstrap_ci
from .stopping import default_rules, exit_rule_table, records_from_results

INTERVENTIONS_FILE = "_interventions.json"  # an intervention study saved in a sweep's results directory


def final_backtrack(m):
    """(abandoned commitment, commitment to the final answer) of a backtracking run, or None: the last
    commitment to the final answer and the latest commitment to another answer before it (method.md)."""
    if not m.backtracked:
        return None
    idx = [i for i, c in enumerate(m.commitments) if c.option == m.final_answer]
    if not idx:
        return None
    before = [c for c in m.commitments[:idx[-1]] if c.option != m.final_answer]
    return (before[-1], m.commitments[idx[-1]]) if before else None


def _share(values: List[bool], n_boot: int, seed: int) -> dict:
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {"n": 0, "share": None, "low": None, "high": None}
    est, lo, hi = bootstrap_ci(v, n_boot=n_boot, seed=seed)
    return {"n": int(v.size), "share": float(est), "low": float(lo), "high": float(hi)}


def ponr_table(records: Iterable[Mapping], n_boot: int = 1000, seed: int = 0) -> List[dict]:
    """Per (variant, sigma, group, k): the share of instances whose final answer changed, with a bootstrap
    interval over instances; ``group`` is ``all``, ``backtracked`` or ``not backtracked`` (the baseline's)."""
    cells: Dict[tuple, List[bool]] = defaultdict(list)
    for r in records:
        groups = ["all", "backtracked" if r["baseline_backtracked"] else "not backtracked"]
        for g in groups:
            cells[(r["variant"], r["sigma"], g, r["at"])].append(bool(r["final_changed"]))
    rank = {"all": 0, "backtracked": 1, "not backtracked": 2}
    rows = []
    for key in sorted(cells, key=lambda k: (str(k[0]), k[1], rank[k[2]], k[3])):
        v, s, g, k = key
        rows.append({"variant": v, "sigma": s, "group": g, "at": k, **_share(cells[key], n_boot, seed)})
    return rows


def ponr_summary(rows: Sequence[Mapping], level: float = 0.05) -> List[dict]:
    """Per (variant, sigma, group) of a :func:`ponr_table`: the largest changed share and its step, and

    - ``first_stable_step``: the first step k from which the share stays <= ``level`` at every later step (a
      point of no return: noise from there on no longer changes the answer; None when the last step is above);
    - ``last_safe_step``: the last step k such that the share is <= ``level`` at every step up to k (noise up to
      there is recovered from; None when step 1 is already above); ``K - last_safe_step`` is the number of
      remaining steps the model needs to recover.
    """
    by: Dict[tuple, List[tuple]] = defaultdict(list)
    for r in rows:
        if r["share"] is not None:
            by[(r["variant"], r["sigma"], r["group"])].append((r["at"], r["share"]))
    out = []
    for (v, s, g), pts in by.items():
        pts.sort()
        ks = [k for k, _ in pts]
        high = [k for k, x in pts if x > level]
        first_stable = ks[0] if not high else next((k for k in ks if k > max(high)), None)
        last_safe = ks[-1] if not high else next((k for k in reversed(ks) if k < min(high)), None)
        kmax, smax = max(pts, key=lambda p: (p[1], -p[0]))
        out.append({"variant": v, "sigma": s, "group": g, "level": level, "max_share": smax, "max_at": kmax,
                    "first_stable_step": first_stable, "last_safe_step": last_safe})
    return out


def backtrack_splice_table(records: Iterable[Mapping], n_boot: int = 1000, seed: int = 0) -> List[dict]:
    """Per (variant, positions): shares of spliced backtracking instances where the abandoned answer is the
    argmax right after the splice, ever again, or the final answer, and where the final answer changed."""
    cells: Dict[tuple, List[Mapping]] = defaultdict(list)
    for r in records:
        cells[(r["variant"], r["positions"])].append(r)
    rows = []
    for (v, pos), rs in sorted(cells.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        row = {"variant": v, "positions": pos, "n": len(rs)}
        for q in ("returns_at_k", "ever_returns", "final_is_abandoned", "final_changed"):
            st = _share([bool(r[q]) for r in rs], n_boot, seed)
            row[q] = st["share"]
            row[f"{q}_low"], row[f"{q}_high"] = st["low"], st["high"]
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------- a report's sections
def dynamics_around_backtracks(probs_list: Sequence, states_list: Sequence, variants: Sequence, before: int = 4,
                               after: int = 4, n_boot: int = 1000) -> Dict[str, dict]:
    """Per variant: the four latent-dynamics quantities at steps relative to each backtrack (mean, 95% band)."""
    groups: Dict[str, list] = defaultdict(list)
    for p, h, v in zip(probs_list, states_list, variants):
        if h is None:
            continue
        m = analyze_trajectory(p)
        if m.backtracked:
            groups[str(v)].append((dynamics(np.asarray(h, dtype=np.float32)), backtrack_steps(m)))
    return {v: {q: prof.to_dict() for q, prof in event_profiles([d for d, _ in g], [e for _, e in g], before,
                                                                 after, n_boot=n_boot).items()}
            for v, g in sorted(groups.items())}


def report_sections(df, hidden: Optional[np.ndarray] = None, study: Optional[Mapping] = None,
                    n_boot: int = 1000) -> dict:
    """What issue 12 adds to a sweep report (JSON-ready): ``exit_rules`` (from the rows' beliefs, and the
    last-position states when ``hidden`` [rows, steps, E] is given), ``dynamics_around_backtracks`` (with
    ``hidden``), and, when an intervention study of the same model is given (``study``: the dict of
    :func:`backend.exit_report.intervention_study`), its point-of-no-return table and summary and the backtrack
    splice table."""
    recs = records_from_results(df, hidden)
    out = {"exit_rules": exit_rule_table(recs, n_boot=n_boot),
           "exit_rules_basis": exit_rules_basis(df, hidden is not None, n_boot)}
    if hidden is not None:
        out["dynamics_around_backtracks"] = dynamics_around_backtracks(
            [r["probs"] for r in recs], [r["states"] for r in recs], [r["variant"] for r in recs], n_boot=n_boot)
    effect = intervention_effect(df, n_boot=n_boot)
    if effect is not None:
        out["intervention_sweep"] = effect
    if study is not None:
        out["interventions"] = {k: study[k] for k in ("parameters", "ponr", "ponr_summary", "ponr_changed_at_k",
                                                      "backtrack_splice") if k in study}
    return out


def exit_rules_basis(df, with_states: bool, n_boot: int) -> dict:
    """What the exit-rule table of a results set rests on: instances and items per variant, seeds, steps, the
    rules' thresholds, and which inputs were present (states for ``latent``, exit probabilities for the gate)."""
    has_gate = "exit_prob" in df.columns and bool(df["exit_prob"].map(lambda x: x is not None and np.ndim(x) > 0)
                                                  .any())
    per = {str(v): {"instances": int(len(g)),
                    "items": int(g["item_id"].nunique()) if "item_id" in g.columns else None}
           for v, g in df.groupby("variant", sort=True)} if len(df) else {}
    return {"variants": per, "seeds": int(df["seed"].nunique()) if "seed" in df.columns and len(df) else None,
            "steps": int(df["steps"].max()) if "steps" in df.columns and len(df) else None,
            "rules": [{"rule": r.name, "setting": r.setting_label()} for r in default_rules()],
            "latent_states": with_states, "exit_gate": has_gate, "n_boot": n_boot, "ci": CI,
            "resampling": "items"}


def intervention_effect(df, n_boot: int = 1000, seed: int = 0) -> Optional[dict]:
    """The effect of an intervention sweep's intervention (None for a plain sweep): per variant, the share of
    instances whose final answer changed (and split by whether the baseline backtracked), the baseline's and the
    intervened runs' accuracy, the share that diverged from the baseline's argmax and how many steps after the
    intervention the argmax rejoined it for good (those that rejoined)."""
    if "intervention" not in df.columns:
        return None
    rows = df[df["intervention"].notna()]
    if not len(rows):
        return None
    specs = sorted(set(rows["intervention"]))
    iv = json.loads(specs[0])
    recs = [{"variant": r.variant, "sigma": iv.get("sigma"), "at": int(r.iv_at),
             "final_changed": bool(r.final_changed), "baseline_backtracked": bool(r.baseline_backtracked)}
            for r in rows.itertuples(index=False)]
    per = {}
    for v, g in rows.groupby("variant", sort=True):
        corr = g["is_correct"].dropna().astype(float)
        bcorr = g["baseline_is_correct"].dropna().astype(float)
        rej = g["steps_to_rejoin"].dropna().astype(float)
        per[str(v)] = {"instances": int(len(g)), "items": int(g["item_id"].nunique()),
                       "accuracy": float(corr.mean()) if len(corr) else None,
                       "baseline_accuracy": float(bcorr.mean()) if len(bcorr) else None,
                       "diverged": float(g["diverged_at"].notna().mean()),
                       "rejoined": int(len(rej)), "mean_steps_to_rejoin": float(rej.mean()) if len(rej) else None,
                       "max_steps_to_rejoin": int(rej.max()) if len(rej) else None,
                       "mean_final_tv": float(g["final_tv"].astype(float).mean())}
    return {"intervention": iv, "interventions_found": len(specs), "seeds": int(rows["seed"].nunique()),
            "final_changed": ponr_table(recs, n_boot=n_boot, seed=seed), "per_variant": per}


def align_hidden(df, keys, hidden: np.ndarray, key_columns: Sequence[str]) -> Optional[np.ndarray]:
    """The hidden states [rows, steps, E] in the order of ``df``'s rows, matched on ``key_columns`` (``keys``: a
    table of those columns for ``hidden``'s rows); None when any row of ``df`` has no stored states."""
    if hidden is None or len(hidden) == 0 or len(keys) != len(hidden):
        return None
    cols = list(key_columns)
    where = {tuple(r): i for i, r in enumerate(keys[cols].itertuples(index=False, name=None))}
    idx = [where.get(tuple(r)) for r in df[cols].itertuples(index=False, name=None)]
    if any(i is None for i in idx):
        return None
    return np.asarray(hidden)[idx]


def load_study(directory) -> Optional[dict]:
    """The intervention study saved in a results directory (``_interventions.json``), or None when there is none;
    an unreadable or foreign file is a one-line LoopLensError."""
    p = Path(directory)
    f = p / INTERVENTIONS_FILE if p.is_dir() else p.parent / INTERVENTIONS_FILE
    if not f.is_file():
        return None
    try:
        d = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise LoopLensError(f"{f} is not a readable intervention study ({str(exc).splitlines()[0][:100]}): make "
                            "it again with python -m backend interventions") from None
    if not isinstance(d, dict) or not isinstance(d.get("ponr"), list) or not isinstance(d.get("exit_rules"), list):
        raise LoopLensError(f"{f} is not an intervention study (no 'ponr' and 'exit_rules' tables): make it again "
                            "with python -m backend interventions")
    return d
