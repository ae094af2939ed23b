"""The Markdown of issue 12's report sections: exit rules, latent dynamics around backtracks, an intervention
study (point of no return, backtrack splice) and an intervention sweep's effect.

:func:`interventions_markdown` reads the fields :func:`backend.intervention_tables.report_sections` adds to a
report (``exit_rules``, ``exit_rules_basis``, ``dynamics_around_backtracks``, ``interventions``,
``intervention_sweep``) and returns the Markdown appended to :func:`backend.report.render.to_markdown` (an empty
string when the report has none of them).  Every section says what its numbers rest on: instances, items,
seeds, steps, thresholds, and the intervals' resampling.
"""
from __future__ import annotations

import math
from typing import Dict, List, Mapping, Optional, Sequence

from ..settings import RUN_LENGTH
from .text import pct

VARIANT_ORDER = ("base", "easy", "nca")
DYNAMICS_NAMES = {"step_size": "step size", "update_cos": "update cosine", "dist_final": "distance to final",
                  "accel": "change of distance"}
DYNAMICS_MEANINGS = ("step size = norm(s_t - s_(t-1)) / norm(s_t); update cosine = cosine between s_t - s_(t-1) and "
                     "s_(t-1) - s_(t-2) (+1 keeps going, -1 turns back); distance to final = norm(s_t - s_K) / "
                     "norm(s_K); change of distance = its difference from the step before")
RULE_MEANINGS = {
    "kl": "KL between consecutive beliefs below the threshold",
    "entropy": "entropy change between consecutive steps below the threshold",
    "argmax": "the same argmax for N consecutive steps",
    "latent": "relative latent change at the last position below the threshold",
    "exit_gate": "the model's cumulative exit probability reaches q",
    "exploration": "the paper's exploration end (decidable w steps after it)",
    "last": "the last step",
    "oracle": "the first step from which the argmax never changes (a bound, not an online rule)",
}


def _cell(x) -> str:
    """Text from data inside a Markdown table cell: no pipes, backticks or line breaks."""
    return " ".join(str(x).replace("|", "/").replace("`", "'").split())


def _num(x, digits=2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def _interval(v, lo, hi, p: bool, digits=2) -> str:
    f = pct if p else (lambda x: _num(x, digits))
    if v is None:
        return "n/a"
    if lo is None or hi is None:
        return f(v)
    return f"{f(v)} [{f(lo)}, {f(hi)}]"


def _variants(keys) -> List[str]:
    keys = [str(k) for k in keys]
    return [v for v in VARIANT_ORDER if v in keys] + sorted(k for k in keys if k not in VARIANT_ORDER)


# ---------------------------------------------------------------------------------------------- exit rules
def exit_rules_markdown(rows: Sequence[Mapping], basis: Optional[Mapping], meta: Mapping) -> List[str]:
    if not rows:
        return []
    L = ["## Exit rules: where each stopping rule would stop, and the answer there", ""]
    b = basis or {}
    per = b.get("variants") or {}
    counts = ", ".join(f"{v} {per[v]['instances']} instances"
                       + ("" if per[v].get("items") is None else f" ({per[v]['items']} items)") for v in _variants(per))
    seeds = b.get("seeds", meta.get("seeds"))
    steps = b.get("steps", meta.get("steps"))
    L.append(f"From this sweep's rows: {counts or 'see n'}; {seeds} initial-state seed(s) per instance, runs of "
             f"{steps} steps. Each rule is online: it stops at the first step its condition holds, with the argmax "
             "there as its answer; a rule that never fires uses the last step (*never stopped*). Settings: the "
             "threshold, window or quantile named in the table.")
    inputs = ["beliefs"]
    inputs.append("last-position latent states (the sweep's `_hidden`)" if b.get("latent_states") else
                  "no latent states (so no `latent` rule)")
    inputs.append("the model's exit gate" if b.get("exit_gate") else "no exit gate (this family has none, or the "
                  "rows predate it: no `exit_gate` rule)")
    L.append(f"Inputs: {', '.join(inputs)}. Accuracy counts instances with a correct option (none for NCA). "
             + (f"Intervals: {int(100 * b.get('ci', 0.95))}% percentile bootstrap over items ({b['n_boot']} "
                "replicates)." if b.get("n_boot") else "No intervals (the report was made without them)."))
    L.append("The last-step rule's accuracy is the final accuracy; the oracle gives the same answers with the "
             "fewest steps, the bound every rule is measured against.")
    L.append("")
    by: Dict[str, List[Mapping]] = {}
    for r in rows:
        by.setdefault(str(r.get("variant")), []).append(r)
    for v in _variants(by):
        L.append(f"**{v}**")
        L.append("")
        L.append("| rule | setting | mean steps [95% CI] | accuracy [95% CI] | never stopped | answer = final | "
                 "n (items) |")
        L.append("|---|---|---|---|---|---|---|")
        for r in by[v]:
            items = "" if r.get("n_items") is None else f" ({r['n_items']})"
            L.append(f"| {_cell(r['rule'])} | {_cell(r.get('setting') or '')} | "
                     f"{_interval(r['mean_steps'], r.get('mean_steps_low'), r.get('mean_steps_high'), False)} | "
                     f"{_interval(r.get('accuracy'), r.get('accuracy_low'), r.get('accuracy_high'), True)} | "
                     f"{pct(r.get('never_stopped'))} | {pct(r.get('agrees_with_final'))} | {r['n']}{items} |")
        L.append("")
    used = sorted({r["rule"] for r in rows})
    L.append("Rules: " + "; ".join(f"`{k}`: {RULE_MEANINGS[k]}" for k in used if k in RULE_MEANINGS) + ".")
    L.append("")
    return L


# ---------------------------------------------------------------------------------------------- dynamics
def dynamics_markdown(dyn: Mapping, meta: Mapping) -> List[str]:
    if not dyn:
        return []
    L = ["## Latent dynamics around backtracks", ""]
    L.append("Per backtrack (the first step of the commitment that replaces an abandoned one, offset 0), the "
             "last-position state's motion at steps relative to it: mean over backtracks with a 95% bootstrap band "
             "over backtracks; n = backtracks with that step inside the run. From this sweep's stored states "
             f"({meta.get('seeds', '?')} seed(s) per instance, every backtracking instance counted once per "
             f"backtrack). {DYNAMICS_MEANINGS}.")
    L.append("")
    for v in _variants(dyn):
        q = dyn[v]
        first = next(iter(q.values()), None)
        if not first:
            continue
        L.append(f"**{v}** ({first.get('n_events')} backtracks)")
        L.append("")
        names = [k for k in DYNAMICS_NAMES if k in q]
        L.append("| offset | " + " | ".join(DYNAMICS_NAMES[k] for k in names) + " | n |")
        L.append("|---" * (len(names) + 2) + "|")
        for i, off in enumerate(first["offsets"]):
            cells = [_interval(q[k]["mean"][i], q[k]["low"][i], q[k]["high"][i], False, 3) for k in names]
            L.append(f"| {off:+d} | " + " | ".join(cells) + f" | {first['count'][i]} |")
        L.append("")
    return L


# ---------------------------------------------------------------------------------------------- the study
def _spread(ks: Sequence[int], n: int) -> List[int]:
    ks = sorted(set(ks))
    if len(ks) <= n:
        return ks
    return sorted({ks[round(i * (len(ks) - 1) / (n - 1))] for i in range(n)})


def _curve_steps(rows: Sequence[Mapping], n: int = 14) -> List[int]:
    """The steps shown as columns: a few before the first step where any share is above 0, then (up to ``n``
    in all) the steps from there to the end, where the curve moves."""
    ks = sorted({r["at"] for r in rows})
    moving = [r["at"] for r in rows if r["share"]]
    if not moving:
        return _spread(ks, 6)
    start = min(moving)
    before = [k for k in ks if k < start]
    after = [k for k in ks if k >= start]
    head = _spread(before, min(4, len(before)) if before else 0) if before else []
    return head + _spread(after, n - len(head))


def study_markdown(study: Mapping) -> List[str]:
    if not study:
        return []
    p = study.get("parameters", {})
    L = ["## Interventions: point of no return and the backtrack splice", ""]
    sig = ", ".join(f"{s:g}" for s in p.get("sigmas", []))
    L.append(f"From the intervention study saved beside the rows (`_interventions.json`: `python -m backend "
             f"interventions`), model `{_cell(p.get('model'))}` (checkpoint `{_cell(p.get('checkpoint_hash'))}`), "
             f"{p.get('steps')} steps, one initial-state seed per instance (seed index 0 of the sweep's seeds, base "
             f"seed {p.get('base_seed')}). Intervals: 95% percentile bootstrap over instances ({p.get('n_boot')} "
             "replicates).")
    L.append("")
    ponr = study.get("ponr") or []
    if ponr:
        npo = int(p.get("ponr_permutations", 1))
        orders = "answer order 0" if npo == 1 else f"answer orders 0-{npo - 1}"
        L.append(f"**Point of no return.** Noise of scale sigma ({sig}; x each position's state norm) added to the "
                 f"state at step k, for every k from 1 to {p.get('steps', 0) - 1}, on {orders} of every item: the "
                 "share of instances whose final answer changes (group *all*; n = instances per step; the columns "
                 "are the steps where the curve moves, and a few before).")
        L.append("")
        allrows = [r for r in ponr if r["group"] == "all"]
        ks = _curve_steps(allrows)
        L.append("| variant | sigma | n | " + " | ".join(f"k={k}" for k in ks) + " |")
        L.append("|---|---|---|" + "---|" * len(ks))
        cells: Dict[tuple, Dict[int, Mapping]] = {}
        for r in allrows:
            cells.setdefault((r["variant"], r["sigma"]), {})[r["at"]] = r
        for (v, s) in sorted(cells, key=lambda x: (_variants([c[0] for c in cells]).index(str(x[0])), x[1])):
            c = cells[(v, s)]
            n = next(iter(c.values()))["n"]
            L.append(f"| {_cell(v)} | {s:g} | {n} | " + " | ".join(pct(c[k]["share"]) if k in c else "" for k in ks)
                     + " |")
        L.append("")
        summ = study.get("ponr_summary") or []
        if summ:
            lvl = summ[0].get("level", 0.05)
            L.append(f"Summary per variant, sigma and baseline group (level {pct(lvl, 0)}): *last safe step* = the "
                     f"last k such that noise at every step up to k changes at most {pct(lvl, 0)} of final answers; "
                     "*first stable step* = the first k from which it does at every later step.")
            L.append("")
            L.append("| variant | sigma | group | n | largest share changed (at k) | last safe step | "
                     "first stable step |")
            L.append("|---|---|---|---|---|---|---|")
            nmap = {(r["variant"], r["sigma"], r["group"]): r["n"] for r in ponr}
            for r in summ:
                L.append(f"| {_cell(r['variant'])} | {r['sigma']:g} | {_cell(r['group'])} | "
                         f"{nmap.get((r['variant'], r['sigma'], r['group']), '')} | {pct(r['max_share'])} "
                         f"({r['max_at']}) | {r['last_safe_step'] if r['last_safe_step'] is not None else 'none'} | "
                         f"{r['first_stable_step'] if r['first_stable_step'] is not None else 'none'} |")
            L.append("")
    sp = study.get("backtrack_splice") or []
    if sp:
        L.append(f"**Backtrack splice.** For each backtracking instance ({p.get('permutations')} answer orders per "
                 "item; its last abandoned commitment a before the commitment to the final answer b), the state at "
                 "the last step of a's commitment is spliced into the run once b's commitment is established (its "
                 f"first step + the commitment run length {RUN_LENGTH} - 1), at the last position only or at all "
                 "positions: does a come back?")
        L.append("")
        L.append("| variant | positions | backtracking instances | a is the argmax right after [95% CI] | a ever "
                 "again | a is the final answer | final answer changed |")
        L.append("|---|---|---|---|---|---|---|")
        for r in sp:
            def q(k):
                return _interval(r.get(k), r.get(f"{k}_low"), r.get(f"{k}_high"), True)
            L.append(f"| {_cell(r['variant'])} | {_cell(r['positions'])} | {r['n']} | {q('returns_at_k')} | "
                     f"{q('ever_returns')} | {q('final_is_abandoned')} | {q('final_changed')} |")
        L.append("")
    return L


# ---------------------------------------------------------------------------------------------- a sweep's effect
def _label(iv: Mapping) -> str:
    k = iv.get("kind")
    if k == "noise":
        what = f"noise sigma={iv.get('sigma'):g} (noise seed {iv.get('noise_seed', 0)})"
    elif k == "reset":
        what = "reset to an initial state" + ("" if iv.get("reset_seed") is None else f" (seed {iv['reset_seed']})")
    elif k == "splice":
        src = ", ".join(f"{a} {b}" for a, b in (iv.get("splice_from") or {}).items()) or "the run itself"
        what = f"splice from {src}, step {iv.get('splice_step')}, {iv.get('splice_positions')} positions"
    else:
        what = str(k)
    return _cell(f"{what} at step {iv.get('at')}")


def sweep_effect_markdown(eff: Mapping) -> List[str]:
    if not eff:
        return []
    iv = eff["intervention"]
    L = ["## Intervention sweep: what the intervention changed", ""]
    L.append(f"Every instance of this sweep was run with **{_label(iv)}** and beside its baseline (same item, "
             f"answer order, seed and steps); the tables above describe the intervened runs. {eff['seeds']} seed(s) "
             "per instance. Intervals: 95% percentile bootstrap over instances."
             + ("" if eff.get("interventions_found", 1) == 1 else
                f" Warning: the rows hold {eff['interventions_found']} interventions; only the first is shown."))
    L.append("")
    L.append("| variant | instances (items) | baseline accuracy | intervened accuracy | final answer changed [95% CI] "
             "| changed, baseline backtracked | changed, baseline did not | diverged from the baseline's argmax | "
             "rejoined (mean / max steps after the intervention) |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    fc = {(r["variant"], r["group"]): r for r in eff.get("final_changed", [])}
    for v in _variants(eff["per_variant"]):
        d = eff["per_variant"][v]

        def ch(g):
            r = fc.get((v, g))
            return "n/a" if not r or r["share"] is None else f"{_interval(r['share'], r['low'], r['high'], True)} " \
                                                               f"(n {r['n']})"
        rej = (f"{d['rejoined']} ({_num(d['mean_steps_to_rejoin'], 1)} / {d['max_steps_to_rejoin']})"
               if d["rejoined"] else "0")
        L.append(f"| {_cell(v)} | {d['instances']} ({d['items']}) | {pct(d['baseline_accuracy'])} | "
                 f"{pct(d['accuracy'])} | {ch('all')} | {ch('backtracked')} | {ch('not backtracked')} | "
                 f"{pct(d['diverged'])} | {rej} |")
    L.append("")
    return L


def interventions_markdown(rep: Mapping) -> str:
    """The issue-12 sections of a report as Markdown (empty when it has none), to append to the report's."""
    meta = rep.get("meta", {})
    L: List[str] = []
    L += exit_rules_markdown(rep.get("exit_rules") or [], rep.get("exit_rules_basis"), meta)
    L += dynamics_markdown(rep.get("dynamics_around_backtracks") or {}, meta)
    L += study_markdown(rep.get("interventions") or {})
    L += sweep_effect_markdown(rep.get("intervention_sweep") or {})
    return ("\n" + "\n".join(L)) if L else ""
