"""Rendering a computed report: Markdown, JSON, saving and loading ``report.json``, the shipped reports."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Tuple, Union

import numpy as np

from ..errors import LoopLensError, UsageError
from ..settings import RESULTS_DIR
from ..stats import finite as _num
from ..sweep.load import has_results
from .compute import SCHEMA
from .text import fmt as _fmt
from .text import pct as _pct


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
    if d.exists() and not d.is_dir():
        raise UsageError(f"{d} is a file: give a directory to save report.md and report.json in")
    md, js = d / "report.md", d / "report.json"
    try:
        d.mkdir(parents=True, exist_ok=True)
        md.write_text(to_markdown(rep), encoding="utf-8")
        js.write_text(to_json(rep) + "\n", encoding="utf-8")
    except OSError as exc:
        raise LoopLensError(f"cannot write the report into {d}: {exc.strerror or exc}") from None
    return md, js


# The top-level fields a saved report must have, with their types (checked before anything renders them).
REPORT_SHAPE = {"meta": dict, "headline": list, "groups": list, "exploration": dict, "seed_noise": dict,
                "position_bias": dict, "entropy_curves": list, "exploration_hist": dict, "destinations": list}


def load_report(path: Union[str, Path]) -> dict:
    """A saved report.json (a file, or a directory holding one)."""
    p = Path(path)
    if p.is_dir():
        p = p / "report.json"
    if not p.is_file():
        raise UsageError(f"no report at {p}")
    try:
        rep = json.loads(p.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise LoopLensError(f"{p} is not a valid report ({str(exc).splitlines()[0][:120]})") from None
    except OSError as exc:
        raise LoopLensError(f"cannot read {p}: {exc.strerror or exc}") from None
    if not isinstance(rep, dict) or rep.get("schema") != SCHEMA:
        schema = rep.get("schema") if isinstance(rep, dict) else None
        raise LoopLensError(f"{p} is not a LoopLens report (schema {str(schema)[:40]!r}; expected {SCHEMA!r})")
    for key, typ in REPORT_SHAPE.items():
        if not isinstance(rep.get(key), typ):
            raise LoopLensError(f"{p} is a damaged or foreign report: {key!r} is missing or not a "
                                f"{typ.__name__}; make it again with python -m backend report DIR --save DIR")
    return rep


RESULTS_ROOT = RESULTS_DIR


def shipped_reports(root: Union[str, Path, None] = None) -> Dict[str, Path]:
    """Model name -> directory under data/results holding a report.json (what the Benchmark page shows)."""
    root = Path(root) if root is not None else RESULTS_ROOT
    if not root.is_dir():
        return {}
    return {d.name: d for d in sorted(root.iterdir()) if (d / "report.json").is_file()}


def has_rows(directory: Union[str, Path]) -> bool:
    """True when the directory also holds the per-instance Parquet rows (not only the report)."""
    return has_results(directory)
