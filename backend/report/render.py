"""Rendering a computed report: Markdown, JSON, saving and loading ``report.json``, the shipped reports."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Dict, List, Tuple, Union

import numpy as np

from ..errors import LoopLensError, UsageError
from ..settings import KL_THRESHOLD, KL_WINDOW, LETTERS, MASS_THRESHOLD, RESULTS_DIR, RUN_LENGTH
from ..stats import finite as _num
from ..sweep.load import has_results
from .compute import (HEADLINE_BASIS, REFERENCE_MODEL, SCHEMA, WITHIN_ITEM_ESTIMATOR, reference_caveat,
                      report_title)
from .render_interventions import interventions_markdown
from .text import fmt as _fmt
from .text import pct as _pct


# Markdown that can form from text: links and images ([ ]), HTML (< >), emphasis and code (* _ `), tables (|), math
# ($), strikethrough (~), headings (#), Streamlit's directives and emoji (:red[...], :smile:), escapes (\\).  Bare
# URLs, www. names and e-mail addresses are linked even when escaped: a zero-width space after "://", "www" and "@"
# keeps the text as written but no longer a link.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|$~#]|:(?=[A-Za-z]))")  # ":" only where a directive/emoji could start
_AUTOLINK = re.compile(r"(?i)(://|\bwww(?=\.)|@)")


def md_text(text) -> str:
    """``text`` from a report (a model, benchmark or variant name, a note) as Markdown that shows exactly that text:
    markup characters backslash-escaped, bare links broken, line breaks made spaces."""
    s = _AUTOLINK.sub(lambda m: ":\u200b//" if m.group(1) == "://" else m.group(1) + "\u200b",
                      " ".join(str(text).split()))
    return _MD_SPECIAL.sub(r"\\\1", s)


# Fields whose values are names the code looks up, never shown as text.
_NOT_TEXT = frozenset({"key"})


def md_escaped(o, _key: str = ""):
    """A copy of a report with every string value made :func:`md_text` (dictionary keys and the lookup fields of
    ``_NOT_TEXT`` kept): what to_markdown renders, so a hostile report.json shows its strings as text."""
    if isinstance(o, dict):
        return {k: (v if k in _NOT_TEXT else md_escaped(v, k)) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [md_escaped(v, _key) for v in o]
    if isinstance(o, str):
        return md_text(o)
    return o


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


def _cell(st) -> str:
    """A rate cell with its interval, or the reason it is empty."""
    if not isinstance(st, dict):
        return "n/a"
    if st.get("value") is None and st.get("reason"):
        return "n/a"
    return _pct_ci(st)


def _steps_cell(st) -> str:
    return _num_ci(st) if isinstance(st, dict) else "n/a"


def distinct_groups(groups: List[dict]) -> List[dict]:
    """The report's variant x domain groups without the rows that repeat another: with a single domain its rows are
    the "all" rows again, so only "all" is kept."""
    domains = {g.get("domain") for g in groups} - {"all"}
    return [g for g in groups if g.get("domain") == "all" or len(domains) > 1]


def to_markdown(rep: dict) -> str:
    raw, rep = rep, md_escaped(rep)  # every string from the report shown as text (variant names: md_text below)
    m = rep["meta"]
    title = m.get("title") or report_title(m)
    thr = m.get("mass_threshold")
    old = thr is None  # a report made before the reporting rules (issue 10)
    thr = MASS_THRESHOLD if old else thr
    L = []
    L.append(f"# LoopLens sweep report: {title}")
    L.append("")
    L.append(f"Model {m['model']} (checkpoint {m['checkpoint_hash']}), {m['steps']} steps, template "
             f"{m['template']}; {m['instances']} instances = {m['items']} items x variants "
             f"({', '.join(f'{md_text(k)} {v}' for k, v in m['variants'].items())}) x {m['permutations']} answer "
             f"orders x {m['seeds']} seed(s). Domains: {', '.join(m['domains'])}. Benchmark: {m.get('benchmark')}.")
    bal = m.get("orders_balanced")
    orders = ("balanced (every option in every position equally often)" if bal else
              "NOT balanced: position statistics are confounded with the design" if bal is False else
              "unknown (no order column)")
    L.append(f"Answer orders: {orders}. "
             f"Intervals: {int(100 * m['ci'])}% percentile bootstrap over items ({m['n_boot']} replicates, seed "
             f"{m['bootstrap_seed']}). n = instances in the denominator. Similarity model: "
             f"{m.get('similarity_model') or 'none'}. Generated {m['generated']}.")
    L.append((f"Thresholds: mass {thr:g} (a step whose total option mass is below it is *not answering*: its "
              "renormalised belief is noise), " if not old else "Thresholds: no mass threshold (this report was made "
              "before the reporting rules: make it again to see option mass, robust backtracks and the rest), ") +
             f"KL {m.get('kl_threshold', KL_THRESHOLD):g} over "
             f"{m.get('kl_window', KL_WINDOW)} steps, commitment = run of {m.get('run_length', RUN_LENGTH)} steps.")
    L.append("")
    L.append(f"## Results of {title}, beside reference values from {m.get('reference_model', REFERENCE_MODEL)}")
    L.append("")
    cav = reference_caveat(m)
    if cav:
        L.append(cav)
        L.append("")
    L.append(f"The headline column is over **{m.get('headline_basis', HEADLINE_BASIS)}** (the paper's definition, "
             "so comparable with the reference values); beside it the same statistic over *answering* instances "
             f"only (option mass >= {thr:g} at every step from exploration end on).")
    L.append("")
    L.append(f"| finding | reference value ({m.get('reference_model', REFERENCE_MODEL)}) | this run, all instances "
             "[95% CI] | n (items) | answering instances only [95% CI] (n) | note |")
    L.append("|---|---|---|---|---|---|")
    for r in rep["headline"]:
        unit = "pp" if r["key"] in ("acc_gain_points", "acc_gain_within_item") else "%"
        val = _pct_ci(r, unit)
        a = r.get("answering") or {}
        aval = f"{_pct_ci(a, unit)} ({a.get('n', 0)})" if a.get("value") is not None else "n/a"
        L.append(f"| {r['finding']} | {r['paper']} | {val} | {r['n']} ({r['n_items']}) | {aval} | "
                 f"{r.get('note', '')} |")
    L.append("")
    L.append("The accuracy gain is given in points (acc_bt - acc_no_bt) and relative (acc_bt / acc_no_bt - 1), "
             "pooled over items and within items; the exploration change as 1 - Easy/Base and Base/Easy - 1, over "
             "converged instances and as restricted means (never-converged instances censored at T).")
    cons = rep.get("consistency") or {}
    ref = cons.get("reference")
    this_run = [f"{md_text(v)}: accuracy of backtracked {_pct(c['acc_backtracked'])} = backtracks ending correct "
                f"{_pct(c['backtracks_end_correct'])}" for v, c in (cons.get("this_run") or {}).items()
                if c.get("acc_backtracked") is not None]
    if ref:
        L.append("")
        L.append(f"Consistency check of the reference values: the accuracy of backtracked instances equals the share "
                 f"of backtracks that end correct ({_pct(ref['backtracks_end_correct'], 0)}), so \"+34%\" implies a "
                 f"non-backtracking accuracy of {_pct(ref['implied_acc_not_backtracked_if_relative'])} if relative "
                 f"and {_pct(ref['implied_acc_not_backtracked_if_points'], 0)} if in points (below chance, "
                 f"{_pct(ref['chance'], 0)}): the relative reading is the plausible one."
                 + (" This run: " + "; ".join(this_run) + "." if this_run else ""))
    L.append("")
    groups_all = [g for g in rep["groups"] if g["domain"] == "all"]
    L.append("## Option mass")
    L.append("")
    L.append(f"| variant | steps below {thr:g} | instances not answering from exploration end on | "
             "answering instances |")
    L.append("|---|---|---|---|")
    for g in groups_all:
        L.append(f"| {g['variant']} | {_cell(g.get('low_mass_share'))} | {_cell(g.get('low_mass_instance_share'))} "
                 f"| {_cell(g.get('answering_share'))} |")
    silent = [(g["variant"], g["low_mass_instance_share"]["value"]) for g in groups_all
              if (g.get("low_mass_instance_share") or {}).get("value") is not None
              and g["low_mass_instance_share"]["value"] > 0.5]
    if silent:
        L.append("")
        L.append("Most instances of " + ", ".join(f"{v} ({_pct(x)})" for v, x in silent) + " do not answer from "
                 "exploration end on: their belief statistics below (backtracks, exploration, entropy) rest on "
                 "renormalised noise, not on a preference; read the answering-only values.")
    L.append("")
    L.append("## Per variant and domain")
    L.append("")
    L.append("| variant | domain | n | accuracy | backtrack rate (per seed) | robust backtrack rate | acc. backtracked | "
             "acc. not backtracked | gain (points, pooled) | gain (points, within item) | mean exploration "
             "(converged) | restricted mean exploration (censored at T) | never converged | final entropy (norm.) |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for g in distinct_groups(rep["groups"]):
        nc = g["never_converged_rate"]
        L.append(f"| {g['variant']} | {g['domain']} | {g['instances']['value']} | {_pct_ci(g['accuracy'])} | "
                 f"{_pct_ci(g['backtrack_rate'])} | {_cell(g.get('robust_backtrack_rate'))} | "
                 f"{_pct_ci(g['acc_backtracked'])} | {_pct_ci(g['acc_not_backtracked'])} | "
                 f"{_pct_ci(g['acc_gain_points'], 'pp')} | {_pct_ci(g.get('accuracy_gain_within_item'), 'pp')} | "
                 f"{_num_ci(g['mean_exploration'])} | {_steps_cell(g.get('exploration_restricted_mean'))} | "
                 f"{nc.get('count', 0)} ({_pct(nc['value'])}) | {_num_ci(g['final_entropy_norm'])} |")
    L.append("")
    L.append("Within-item gain: " + WITHIN_ITEM_ESTIMATOR + "; the pooled difference mixes easy and hard items.")
    L.append("")
    L.append("## Seeds: robust backtracks")
    L.append("")
    L.append("A backtrack verdict is *robust* when it holds under more than half of the instance's initial-state "
             "seeds.")
    L.append("")
    L.append("| variant | per-seed backtrack rate | robust backtrack rate | verdicts that flip across seeds | "
             "seeds per instance |")
    L.append("|---|---|---|---|---|")
    for g in groups_all:
        rb = g.get("robust_backtrack_rate") or {}
        L.append(f"| {g['variant']} | {_pct_ci(g['backtrack_rate'])} | {_cell(rb)} | "
                 f"{_cell(g.get('verdict_flip_share'))} | {rb.get('seeds_per_instance', 1)} |")
    if any((g.get("robust_backtrack_rate") or {}).get("reason") for g in groups_all):
        L.append("")
        L.append("Not measured: " + next(g["robust_backtrack_rate"]["reason"] for g in groups_all
                                         if (g.get("robust_backtrack_rate") or {}).get("reason")) + ".")
    L.append("")
    sens = m.get("sensitivity") or {"run_lengths": [], "kl_thresholds": []}
    L.append("## Sensitivity: run length and KL threshold")
    L.append("")
    L.append("| variant | " + " | ".join(f"backtrack rate, run length {r}" for r in sens["run_lengths"]) + " | " +
             " | ".join(f"exploration (restricted mean; never converged), KL {k:g}" for k in sens["kl_thresholds"])
             + " |")
    L.append("|---|" + "---|" * (len(sens["run_lengths"]) + len(sens["kl_thresholds"])))
    for g in groups_all:
        rl = g.get("backtrack_rate_by_run_length") or {}
        kl = g.get("exploration_by_kl_threshold") or {}
        cells = [_cell(rl.get(str(r))) for r in sens["run_lengths"]]
        for k in sens["kl_thresholds"]:
            e = kl.get(str(k)) or {}
            cells.append(f"{_steps_cell(e.get('exploration_restricted_mean'))}; "
                         f"{_cell(e.get('never_converged_share'))}" if e.get("exploration_restricted_mean")
                         else "n/a")
        L.append(f"| {g['variant']} | " + " | ".join(cells) + " |")
    L.append("")
    ex = rep["exploration"]["pair"]
    L.append("## Exploration")
    L.append("")
    if ex:
        ncs = ex.get("never_converged_share") or {}
        L.append(f"Easy vs Base. Mean exploration length over converged instances: Base {_num_ci(ex['base'])}, Easy "
                 f"{_num_ci(ex['easy'])} steps; Easy shorter by {_pct_ci(ex['easy_shorter'])}, Base longer by "
                 f"{_pct_ci(ex['base_longer'])}. Restricted means (never-converged censored at T): Base "
                 f"{_steps_cell(ex.get('base_restricted'))}, Easy {_steps_cell(ex.get('easy_restricted'))}; Easy "
                 f"shorter by {_cell(ex.get('easy_shorter_restricted'))}. Never converged: Base "
                 f"{ex.get('never_converged', {}).get('base')} ({_pct(ncs.get('base'))}), Easy "
                 f"{ex.get('never_converged', {}).get('easy')} ({_pct(ncs.get('easy'))}).")
        L.append("")
    later = [f"{g['variant']}: the argmax changes again after it in {_cell(g.get('later_movement_share'))} of "
             f"converged instances, {g.get('backtracks_after_exploration_end')} backtracking instance(s) commit to "
             "their final answer after it"
             for g in groups_all if (g.get("later_movement_share") or {}).get("value") is not None]
    L.append("Exploration end is the first step where the step KL stays at or below the threshold for the window; it "
             "is not final: the belief can move again later." + (" " + "; ".join(later) + "." if later else ""))
    L.append("")
    L.append("## Similarity ranks: abandoned answers against the model's other wrong choices and the frontrunner")
    L.append("")
    L.append("Shares of similarity rank 1 / 2 / 3 (/ 4 for NCA) among the variant's distractors (1 = most "
             "stem-similar), per domain. Abandoned: the abandoned distractors of backtracking instances; wrong "
             "choices: wrong first commitments and wrong final answers; frontrunner: the first commitment, when it "
             "is a distractor. Chance is 1/3 (1/4 for NCA); the fair comparison is with the other two columns. For "
             "arithmetic, sentence-embedding similarity with a number means little.")
    L.append("")
    L.append("| variant | domain | abandoned (n) | wrong choices (n) | frontrunner (n) |")
    L.append("|---|---|---|---|---|")
    for g in distinct_groups(rep["groups"]):
        cells = []
        for key in ("abandoned_similarity_ranks", "wrong_choice_similarity_ranks", "frontrunner_similarity_ranks"):
            d = g.get(key) or {}
            ks = sorted(k for k in d if k.startswith("rank_"))
            if not d.get("n"):
                cells.append("n/a (0)")
                continue
            cells.append(" / ".join(_pct((d[k] or {}).get("value"), 0) for k in ks) + f" ({d['n']})")
        dom = g["domain"] + (" (*)" if "arith" in str(g["domain"]).lower() else "")
        L.append(f"| {g['variant']} | {dom} | " + " | ".join(cells) + " |")
    if any("arith" in str(g["domain"]).lower() for g in rep["groups"]):
        L.append("")
        L.append("(*) arithmetic: the options are numbers, whose sentence-embedding similarity to the stem means "
                 "little.")
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
                L.append(f"| {md_text(v)} | {_pct_ci(st['backtrack_flip_rate'])} | {_pct_ci(st['pairwise_disagreement'])} | "
                         f"{_pct_ci(st['answer_flip_rate'])} | {_pct_ci(st['single_seed_backtracks'])} |")
    L.append("")
    L.append("## Position bias (across answer orders)")
    L.append("")
    for v, pb in rep["position_bias"].items():
        shares = ", ".join(f"{s['position']} {_pct_ci(s)}" for s in pb["final_position_shares"])
        L.append(f"- **{md_text(v)}** final answer at position: {shares} (chance {_pct(1 / pb['n_options'])})")
        if pb.get("correct_counts") is not None:
            L.append(f"  - test: {pb.get('test')}: chi-square {_fmt(pb['chi2'], 1)}, dof {pb.get('dof')}, p = "
                     f"{_fmt(pb['p_value'], 4)}; correct answer at positions "
                     f"{', '.join(f'{LETTERS[k]} {c}' for k, c in enumerate(pb['correct_counts']))}")
        else:
            L.append(f"  - test: {pb.get('test', 'final positions against equal shares')}: chi-square "
                     f"{_fmt(pb['chi2'], 1)}, p = {_fmt(pb['p_value'], 4)}")
        if pb["accuracy_by_correct_position"]:
            acc = ", ".join(f"{s['correct_position']} {_pct_ci(s)}" for s in pb["accuracy_by_correct_position"])
            L.append(f"  - accuracy when the correct option is at: {acc}")
    L.append("")
    return "\n".join(L) + interventions_markdown(rep)


KEY_FIELDS = (
    ("low_mass_share", "steps below the mass threshold", "%"),
    ("low_mass_instance_share", "instances not answering from exploration end on", "%"),
    ("backtrack_rate", "backtrack rate (per seed)", "%"),
    ("robust_backtrack_rate", "robust backtrack rate (majority of seeds)", "%"),
    ("verdict_flip_share", "backtrack verdicts that flip across seeds", "%"),
    ("mean_exploration", "mean exploration (converged)", "steps"),
    ("exploration_restricted_mean", "restricted mean exploration (censored at T)", "steps"),
    ("never_converged_share", "never converged", "%"),
    ("acc_gain_points", "accuracy gain of backtracking, pooled (points)", "pp"),
    ("accuracy_gain_within_item", "accuracy gain of backtracking, within item (points)", "pp"),
)


def key_table(rep: dict) -> List[dict]:
    """The reporting rules' numbers per variant, one row per number (a table the Benchmark page shows)."""
    variants = rep.get("variants") or {g["variant"]: g for g in rep.get("groups", []) if g.get("domain") == "all"}
    rows = []
    for key, label, unit in KEY_FIELDS:
        row = {"number": label, "field": key}
        for v, g in variants.items():
            st = g.get(key)
            row[v] = _num_ci(st) if unit == "steps" else _pct_ci(st, unit)
        rows.append(row)
    rl = {v: g.get("backtrack_rate_by_run_length") or {} for v, g in variants.items()}
    for r in sorted({k for d in rl.values() for k in d}, key=int):
        rows.append({"number": f"backtrack rate, run length {r}", "field": f"backtrack_rate_by_run_length.{r}",
                     **{v: _pct_ci(d.get(r)) for v, d in rl.items()}})
    return rows


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
