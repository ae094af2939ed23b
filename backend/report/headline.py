"""The Benchmark page's view of a computed report: headline numbers with their intervals and what they rest on, a
one-line description of the run, and the tables (per variant, one column each; rows that repeat another dropped).

Plain data (strings and numbers), no Streamlit and no Markdown: strings from the report are returned as they are,
and the page shows them as text (``pages.common.plain``, Plotly's ``plots.text``).
"""
from __future__ import annotations

import re
from typing import Dict, List, Optional

from ..plots import VARIANT_NAMES
from ..settings import MASS_THRESHOLD
from .compute import PAPER, REFERENCE_BENCHMARK, REFERENCE_MODEL, report_title
from .render import KEY_FIELDS, _num_ci, _pct_ci, distinct_groups
from .text import fmt, pct

def variant_label(v) -> str:
    """A variant as the charts name it (Base, Easy, No correct answer); another name as it is."""
    return VARIANT_NAMES.get(v) or str(v)


def _num(x) -> Optional[float]:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def _count(x) -> str:
    n = _num(x)
    return "?" if n is None else f"{int(n):,}"


def title(rep: dict) -> str:
    meta = rep.get("meta") or {}
    return str(meta.get("title") or report_title(meta))


def _variants_text(meta: dict) -> str:
    """``{"base": 10080, ...}`` (or a list of names) as "Base 10,080, Easy 10,080, ..." -- never a Python dict."""
    v = meta.get("variants")
    if isinstance(v, dict):
        return ", ".join(f"{variant_label(k)} {_count(n)}" for k, n in v.items())
    if isinstance(v, (list, tuple)):
        return ", ".join(variant_label(k) for k in v)
    return "?" if v is None else str(v)


def _orders_text(meta: dict) -> str:
    p = meta.get("permutations")
    if isinstance(p, dict):  # per variant
        p = ", ".join(f"{variant_label(k)} {_count(n)}" for k, n in p.items())
    elif isinstance(p, (list, tuple)):
        p = ", ".join(str(x) for x in p)
    bal = {True: "balanced", False: "not balanced"}.get(meta.get("orders_balanced"), "balance unknown")
    return f"{p if p is not None else '?'} answer orders ({bal})"


def _ci_text(meta: dict) -> str:
    ci = _num(meta.get("ci")) or 0.95
    boot = meta.get("n_boot")
    return (f"{ci:.0%} percentile bootstrap over {meta.get('resampling') or 'items'}"
            + (f" ({_count(boot)} replicates)" if boot is not None else ""))


def description(rep: dict) -> str:
    """One line: what ran, on what, how often, and how the intervals were made."""
    m = rep.get("meta") or {}
    thr = m.get("mass_threshold")
    return (f"Model {m.get('model')} · benchmark {m.get('benchmark')} · {_count(m.get('instances'))} instances = "
            f"{_count(m.get('items'))} items × variants ({_variants_text(m)}) × {_orders_text(m)} × "
            f"{_count(m.get('seeds'))} seed(s) · {m.get('steps')} steps · mass threshold "
            f"{fmt(_num(thr), 2) if _num(thr) is not None else 'n/a (made before the reporting rules)'} · "
            f"intervals: {_ci_text(m)}")


def not_a_replication(rep: dict) -> str:
    """One sentence: whose numbers these are, and that the reference values beside them are another model's."""
    m = rep.get("meta") or {}
    ref_model = m.get("reference_model") or REFERENCE_MODEL
    ref_bench = m.get("reference_benchmark") or REFERENCE_BENCHMARK
    model, bench = m.get("model"), m.get("benchmark")
    differs = [f"{model} is not {ref_model}"] if model != ref_model else []
    if bench != REFERENCE_BENCHMARK:
        differs.append(f"{bench} is not the paper's benchmark")
    why = (": " + " and ".join(differs)) if differs else ""
    return (f"These are the numbers of {model} on {bench}, not a replication of the paper{why}. The reference "
            f"values beside them are {ref_model}'s on {ref_bench}, shown for orientation and labelled as such.")


def basis(rep: dict) -> str:
    """What every headline number rests on (the help text of each card)."""
    m = rep.get("meta") or {}
    thr = _num(m.get("mass_threshold"))
    return (f"Rests on {_count(m.get('instances'))} instances: {_count(m.get('items'))} items × answer orders × "
            f"{_count(m.get('seeds'))} seed(s) of the initial state, {m.get('steps')} recurrent steps. Steps with an "
            f"option mass below {thr if thr is not None else MASS_THRESHOLD:g} count as not answering. Interval: "
            f"{_ci_text(m)}.")


def _stat(rep: dict, variant: str, key: str) -> Optional[dict]:
    variants = rep.get("variants") or {g.get("variant"): g for g in rep.get("groups", [])
                                       if isinstance(g, dict) and g.get("domain") == "all"}
    g = variants.get(variant) if isinstance(variants, dict) else None
    st = g.get(key) if isinstance(g, dict) else None
    return st if isinstance(st, dict) else None


def _headline(rep: dict, key: str) -> Optional[dict]:
    return next((r for r in rep.get("headline", []) if isinstance(r, dict) and r.get("key") == key), None)


def _interval(st: Optional[dict], unit: str) -> Optional[str]:
    if not st or _num(st.get("lo")) is None or _num(st.get("hi")) is None:
        return None
    f = (lambda x: pct(x)) if unit == "%" else (lambda x: fmt(x, 1))
    return f"95% CI {f(st['lo'])} to {f(st['hi'])}" + ("" if unit == "%" else " steps")


def _value(st: Optional[dict], unit: str) -> str:
    if not st or _num(st.get("value")) is None:
        return "n/a"
    return pct(st["value"]) if unit == "%" else f"{fmt(st['value'], 1)} steps"


# (label, where the number is: ("variant", variant, field) or ("headline", key), unit, the reference key in PAPER,
#  what the number is)
CARDS = (
    ("Accuracy · Base", ("variant", "base", "accuracy"), "%", None,
     "Share of Base instances whose final answer (argmax at the last step) is the correct option."),
    ("Accuracy · Easy", ("variant", "easy", "accuracy"), "%", None,
     "Share of Easy instances (unrelated distractors) whose final answer is the correct option."),
    ("Exploration · Base", ("variant", "base", "mean_exploration"), "steps", None,
     "Mean step at which exploration ends (the step KL stays below its threshold), over converged Base instances."),
    ("Easy explores shorter", ("headline", "easy_shorter"), "%", "easy_shorter",
     "1 - mean exploration of Easy / mean exploration of Base, over converged instances."),
    ("Backtracks · Base", ("headline", "backtrack_rate_base"), "%", "backtrack_rate_base",
     "Backtrack rate: share of Base runs (every seed's run counted) with at least one backtrack: a commitment to one option, then "
     "a commitment to another."),
    ("Robust backtracks", ("headline", "robust_backtrack_rate_base"), "%", None,
     "Share of Base instances whose backtrack verdict holds under a majority of the seeds (robust backtrack rate)."),
    ("Backtracks end correct", ("headline", "backtracks_end_correct"), "%", "backtracks_end_correct",
     "Share of Base backtracks whose last commitment is the correct option."),
    ("NCA never converges", ("headline", "nca_never_converged"), "%", "nca_never_converged",
     "Share of No-correct-answer (NCA) instances whose step KL never settles below the threshold."),
)


def cards(rep: dict) -> List[Dict[str, Optional[str]]]:
    """The headline numbers as cards: label, value, interval (or None), reference (Huginn-0125's value, labelled as
    such, or None) and help (what the number is and what it rests on).  Cards without a value are left out."""
    ref_model = (rep.get("meta") or {}).get("reference_model") or REFERENCE_MODEL
    rests = basis(rep)
    out = []
    for label, where, unit, ref_key, what in CARDS:
        st = _stat(rep, where[1], where[2]) if where[0] == "variant" else _headline(rep, where[1])
        if not st or _num(st.get("value")) is None:
            continue
        ref = None
        if ref_key:
            ref_val = (st.get("paper") if where[0] == "headline" else None) or PAPER.get(ref_key)
            ref = f"{ref_model}, reference: {ref_val}" if ref_val else None
        n = st.get("n")
        help_text = what + (f" n = {_count(n)} in the denominator, {_count(st.get('n_items'))} items. "
                            if n is not None else " ") + rests
        out.append({"label": label, "value": _value(st, unit), "interval": _interval(st, unit), "reference": ref,
                    "help": help_text})
    return out


def headline_rows(rep: dict) -> List[Dict[str, str]]:
    """The headline table: each finding, the reference value beside it, this run's value with its interval, n."""
    ref_model = (rep.get("meta") or {}).get("reference_model") or REFERENCE_MODEL
    rows = []
    for r in rep.get("headline", []):
        if not isinstance(r, dict):
            continue
        unit = "pp" if r.get("key") in ("acc_gain_points", "acc_gain_within_item") else "%"
        rows.append({"finding": str(r.get("finding", "")),
                     f"reference value ({ref_model})": str(r.get("paper") or "—"),
                     "this run [95% CI]": _pct_ci(r, unit),
                     "n (items)": f"{_count(r.get('n'))} ({_count(r.get('n_items'))})",
                     "note": str(r.get("note") or "")})
    return rows


VARIANT_ROWS = (
    ("instances", None, "n"),
    ("accuracy", "accuracy", "%"),
    ("backtrack rate (per seed)", "backtrack_rate", "%"),
    ("robust backtrack rate", "robust_backtrack_rate", "%"),
    ("accuracy, backtracked", "acc_backtracked", "%"),
    ("accuracy, not backtracked", "acc_not_backtracked", "%"),
    ("accuracy gain of backtracking (points, pooled)", "acc_gain_points", "pp"),
    ("accuracy gain of backtracking (points, within item)", "accuracy_gain_within_item", "pp"),
    ("mean exploration (converged, steps)", "mean_exploration", "steps"),
    ("restricted mean exploration (censored at T, steps)", "exploration_restricted_mean", "steps"),
    ("never converged", "never_converged_rate", "count"),
    ("final entropy (normalised)", "final_entropy_norm", "num"),
)


def _group_name(g: dict, several_domains: bool) -> str:
    name = variant_label(g.get("variant"))
    return f"{name} · {g.get('domain')}" if several_domains and g.get("domain") != "all" else name


def variant_rows(rep: dict, skip_key_fields: bool = False) -> List[Dict[str, str]]:
    """The per-variant table, one row per statistic and one column per variant (per variant x domain when there are
    several domains); a domain's columns that only repeat the "all" columns are left out, and with
    ``skip_key_fields`` (and a single domain) so are the rows :func:`key_rows` shows already."""
    groups = [g for g in rep.get("groups", []) if isinstance(g, dict)]
    kept = distinct_groups(groups)
    several = any(g.get("domain") != "all" for g in kept)
    cols = [(_group_name(g, several), g) for g in kept]
    shown = {k for k, _, _ in KEY_FIELDS} | {"never_converged_rate"} if skip_key_fields and not several else set()
    rows = []
    for label, key, unit in VARIANT_ROWS:
        if key in shown:
            continue
        row = {"statistic": label}
        for name, g in cols:
            st = g.get(key) if key else g.get("instances")
            if unit == "n":
                row[name] = _count(st.get("value") if isinstance(st, dict) else st)
            elif unit == "count":
                row[name] = (f"{_count(st.get('count', 0))} ({pct(st.get('value'))})"
                             if isinstance(st, dict) else "n/a")
            elif unit in ("steps", "num"):
                row[name] = _num_ci(st) if isinstance(st, dict) else "n/a"
            else:
                row[name] = _pct_ci(st, unit) if isinstance(st, dict) else "n/a"
        rows.append(row)
    return _drop_repeats(rows)


def _drop_repeats(rows: List[dict]) -> List[dict]:
    seen, out = set(), []
    for r in rows:
        k = tuple(r.items())
        if k not in seen:
            seen.add(k)
            out.append(r)
    return out


def key_rows(rep: dict, table: List[dict]) -> List[Dict[str, str]]:
    """``render.key_table``'s rows with the variants named as in the charts, and no repeated rows."""
    return _drop_repeats([{("number" if k == "number" else "field" if k == "field" else variant_label(k)): str(v)
                           for k, v in r.items()} for r in table])


_H = re.compile(r"^(#{1,6})(?=\s)", re.MULTILINE)


def demoted_markdown(md: str, levels: int = 3) -> str:
    """The report's Markdown with every heading ``levels`` lower (# -> ####, at most ######), to show inside a page
    that has its own title: no second H1."""
    return _H.sub(lambda m: "#" * min(6, len(m.group(1)) + levels), md)


__all__ = ["KEY_FIELDS", "basis", "cards", "demoted_markdown", "description", "headline_rows", "key_rows",
           "title", "variant_label", "variant_rows"]
