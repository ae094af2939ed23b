"""Measure a cups model against the default-model targets (issue 15), with the project's tracer and metrics.

Every number comes from :func:`backend.trace.trace_items` (the same tracer the app uses) and
:func:`backend.metrics.analyze_trajectory` (its default thresholds: KL 0.01 for 3 steps, runs of 3).  Each item is
shown in one answer order (the k-th item in order k mod 24, so every position holds the answer equally often over 24
items) and traced under several initial-state seeds; a backtrack verdict is *robust* when it holds under a majority
of them.  Distractor kinds come from the items' ``distractor_notes`` (see :mod:`backend.cups`).  The linear probe
decodes, from the last-position state after step t, the ball's cup after k swaps (scikit-learn logistic regression,
cross-validated with items kept apart across folds).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .cups import CUPS, KIND_EASY, KIND_LAST_SWAP, KIND_NEVER, KIND_STATE
from .items import BenchmarkItem
from .stats import bootstrap_ci
from .trace import Trace, trace_items

SEEDS = (0, 1, 2, 3, 4)
STEPS = 30
MASS_MIN = 0.5  # target 1: total option mass at every step from step 2 on
REPORT_STEPS = (1, 2, 3, 4, 6, 8, 10, 12, 16, 20, 30)


def instances(items: Sequence[BenchmarkItem], variant: str):
    return [it.instance(variant, k % 24) for k, it in enumerate(items)]


def run(bundle, items, variant: str, seeds=SEEDS, steps: int = STEPS, init_scale: float = 1.0,
        keep_all_states: bool = False) -> List[List[Trace]]:
    """[seed][item] traces of one variant."""
    insts = instances(items, variant)
    if init_scale == 0.0:
        return [trace_items(bundle, insts, steps, seeds=0, init_scale=0.0)]
    return [trace_items(bundle, insts, steps, seeds=s, keep_all_states=keep_all_states) for s in seeds]


def option_kind(item: BenchmarkItem, trace: Trace, option: int) -> str:
    """The kind of a shown option: 'answer', 'k short' (the ball's cup k swaps before the end), 'last swap',
    'never reached', 'not a cup'."""
    text = trace.options[option]
    if trace.correct == option:
        return "answer"
    note = item.extra["distractor_notes"].get(text)
    if note is None:  # nca: the answer is not shown, every other cup is annotated
        return "answer"
    if note["kind"] == KIND_STATE:
        k = note["of"] - note["after"]
        return f"{k} short" if k <= 2 else "3+ short"
    return {KIND_LAST_SWAP: "last swap", KIND_NEVER: "never reached", KIND_EASY: "not a cup"}[note["kind"]]


KINDS = ("answer", "1 short", "2 short", "3+ short", "last swap", "never reached", "not a cup")


def _share(counts: Dict[str, float]) -> Dict[str, float]:
    tot = sum(counts.values())
    return {k: round(v / tot, 3) for k, v in counts.items() if v} if tot else {}


def kinds_table(items, runs: List[List[Trace]]) -> dict:
    """Frontrunners (first commitments), abandoned answers and wrong final answers by kind, beside the base rate
    (the share of shown options of that kind, averaged over instances: what a blind pick would give)."""
    base, front, aband, wrong, first_wrong = ({k: 0.0 for k in KINDS} for _ in range(5))
    for traces in runs:
        for it, tr in zip(items, traces):
            kinds = [option_kind(it, tr, i) for i in range(tr.n_options)]
            for k in kinds:
                base[k] += 1 / len(kinds)
            m = tr.metrics
            if m.frontrunner is not None:
                front[kinds[m.frontrunner]] += 1
                if m.frontrunner != tr.correct:
                    first_wrong[kinds[m.frontrunner]] += 1
            for a in m.abandoned:
                aband[kinds[a]] += 1
            if not m.is_correct:
                wrong[kinds[m.final_answer]] += 1
    return {"base_rate": _share(base), "frontrunner": _share(front), "wrong_frontrunner": _share(first_wrong),
            "abandoned": _share(aband), "abandoned_n": int(sum(aband.values())), "wrong_final": _share(wrong)}


def _settled_step(tr: Trace) -> int:
    """The first step from which the argmax is the correct option to the end (K + 1 if it never is)."""
    am = tr.probs.argmax(1)
    t = len(am)
    while t > 0 and am[t - 1] == tr.correct:
        t -= 1
    return t + 1


def summarize(items, runs: List[List[Trace]], steps: int = STEPS) -> dict:
    """Accuracy by step, option mass, entropy, exploration, backtracking (per seed and robust) of one variant."""
    n_items, n_seeds = len(items), len(runs)
    scored = runs[0][0].correct is not None
    out: dict = {"items": n_items, "seeds": n_seeds}
    mass = np.array([[tr.letter_mass for tr in traces] for traces in runs])  # [seeds, items, K]
    out["mass_ok_share"] = round(float((mass[:, :, 1:] >= MASS_MIN).all(-1).mean()), 3)
    out["min_mass_from_step2"] = round(float(mass[:, :, 1:].min()), 4)
    ent = np.array([[tr.metrics.entropy_norm for tr in traces] for traces in runs])
    out["entropy_norm_by_step"] = {t: round(float(ent[:, :, t - 1].mean()), 3) for t in REPORT_STEPS if t <= steps}
    top = np.array([[tr.probs[-1].max() for tr in traces] for traces in runs])
    out["final_top_belief"] = round(float(top.mean()), 3)
    if scored:
        am = np.array([[tr.probs.argmax(1) == tr.correct for tr in traces] for traces in runs])  # [s, i, K]
        out["accuracy_by_step"] = {t: round(float(am[:, :, t - 1].mean()), 3) for t in REPORT_STEPS if t <= steps}
        out["accuracy"] = round(float(am[:, :, -1].mean()), 3)
        by_n: Dict[int, list] = {}
        for i, it in enumerate(items):
            by_n.setdefault(it.extra.get("swaps"), []).append(i)
        out["accuracy_by_swaps"] = {int(n): [round(float(am[:, ix, 1].mean()), 2), round(float(am[:, ix, -1].mean()), 2)]
                                    for n, ix in sorted(by_n.items())}
        first_right = np.array([[_settled_step(tr) for tr in traces] for traces in runs], dtype=float)
        out["settles_on_answer_by_swaps"] = {int(n): round(float(first_right[:, ix].mean()), 2)
                                             for n, ix in sorted(by_n.items())}
    m = [[tr.metrics for tr in traces] for traces in runs]
    conv = np.array([[x.converged for x in row] for row in m])
    expl = np.array([[x.exploration_end if x.converged else steps for x in row] for row in m], dtype=float)
    out["never_converged_share"] = round(float(1 - conv.mean()), 3)
    out["exploration_restricted_mean"] = round(float(expl.mean()), 2)
    out["exploration_restricted_mean_ci"] = [round(float(v), 2) for v in bootstrap_ci(expl.mean(0))[1:]]
    out["exploration_mean_converged"] = round(float(expl[conv].mean()), 2) if conv.any() else None
    bt = np.array([[x.backtracked for x in row] for row in m])  # [s, i]
    robust = bt.sum(0) * 2 > n_seeds
    out["backtrack_rate_per_seed"] = round(float(bt.mean()), 3)
    out["robust_backtrack_rate"] = round(float(robust.mean()), 3)
    out["robust_backtrack_items"] = [items[i].id for i in np.flatnonzero(robust)]
    out["verdict_flip_share"] = round(float((bt.any(0) & ~bt.all(0)).mean()), 3)
    if scored:
        ok = np.array([[bool(x.is_correct) for x in row] for row in m])
        out["accuracy_backtracked_runs"] = round(float(ok[bt].mean()), 3) if bt.any() else None
        out["accuracy_other_runs"] = round(float(ok[~bt].mean()), 3) if (~bt).any() else None
        if bt.any() and (~bt).any():
            rng = np.random.default_rng(0)
            diffs = []
            for _ in range(2000):  # cluster bootstrap over items (runs of one item stay together)
                ix = rng.integers(0, n_items, n_items)
                b, o = bt[:, ix], ok[:, ix]
                if b.any() and (~b).any():
                    diffs.append(o[b].mean() - o[~b].mean())
            lo, hi = np.percentile(diffs, [2.5, 97.5])
            out["accuracy_gain_points"] = round(float(ok[bt].mean() - ok[~bt].mean()), 3)
            out["accuracy_gain_ci"] = [round(float(lo), 3), round(float(hi), 3)]
        dest = [x.is_correct for row in m for x in row if x.backtracked]
        out["backtracks_ending_correct"] = round(float(np.mean(dest)), 3) if dest else None
    return out


def shortcut_check(items, runs: List[List[Trace]]) -> dict:
    """Step-1 argmax on a cup of the last swap, against the share of shown options that are last-swap cups."""
    hit, chance = [], []
    for traces in runs:
        for it, tr in zip(items, traces):
            last = it.question.split()[-2]
            cups_last = {CUPS[int(last[1]) - 1], CUPS[int(last[2]) - 1]}
            in_last = [o in cups_last for o in tr.options]
            hit.append(in_last[int(tr.probs[0].argmax())])
            chance.append(np.mean(in_last))
    return {"step1_argmax_in_last_swap": round(float(np.mean(hit)), 3),
            "chance": round(float(np.mean(chance)), 3)}


def _probe_scores(X: Dict[int, list], rows: np.ndarray, y: np.ndarray, groups: np.ndarray, steps) -> List[float]:
    accs = []
    for t in steps:
        x = np.array(X[t])[rows]
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        sc = cross_val_score(clf, x, y, groups=groups[rows], cv=GroupKFold(5))
        accs.append(round(float(sc.mean()), 3))
    return accs


def progression(items, runs: List[List[Trace]], n_swaps: int = 8, max_step: int = 12) -> dict:
    """For items with ``n_swaps`` swaps: at each step t, how many readouts are right, and for the wrong ones the mean
    most recent path index of their cup (the ball was there after k swaps; issue 15's measure) and the share of
    wrong readouts on a cup the ball never occupied.  A progression shows as a rising mean index."""
    out = {"n_swaps": n_swaps, "steps": list(range(1, max_step + 1)), "right": [], "wrong_mean_index": [],
           "wrong_never_visited": [], "wrong_n": []}
    sel = [i for i, it in enumerate(items) if it.extra.get("swaps") == n_swaps]
    for t in range(1, max_step + 1):
        right, idx, never = 0, [], 0
        for traces in runs:
            for i in sel:
                tr, it = traces[i], items[i]
                a = int(tr.probs[t - 1].argmax())
                if a == tr.correct:
                    right += 1
                    continue
                path = it.extra["path"][:-1]
                ks = [k for k, c in enumerate(path) if c == tr.options[a]]
                if ks:
                    idx.append(ks[-1])
                else:
                    never += 1
        total = len(sel) * len(runs)
        wrong = total - right
        out["right"].append(round(right / total, 3) if total else None)
        out["wrong_mean_index"].append(round(float(np.mean(idx)), 2) if idx else None)
        out["wrong_never_visited"].append(round(never / wrong, 3) if wrong else None)
        out["wrong_n"].append(wrong)
    return out


def linear_probe(items, runs: List[List[Trace]], probe_steps=(1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 30),
                 max_k: int = 8, max_short: int = 3, position: int = -1) -> dict:
    """Accuracy of decoding, from the state at prompt position ``position`` (-1: the last, '?'; -2: the last swap,
    which needs traces with ``hidden_all``) after step t, the ball's cup after k swaps (k = 0..max_k, items with at
    least k swaps) and the cup j swaps before the end (j = 0 is the answer), beside the majority-class rate.
    Standardised states, logistic regression, 5-fold cross-validation with each item's runs in one fold."""
    X = {t: [] for t in probe_steps}
    paths, groups = [], []
    for traces in runs:
        for i, (it, tr) in enumerate(zip(items, traces)):
            for t in probe_steps:
                h = tr.hidden_last[t - 1] if position == -1 else tr.hidden_all[t - 1, position]
                X[t].append(h.astype(np.float32))
            paths.append([CUPS.index(c) for c in it.extra["path"]])
            groups.append(i)
    groups = np.array(groups)
    out: dict = {"steps": list(probe_steps), "k": [], "accuracy": [], "majority": [],
                 "short": [], "short_accuracy": [], "short_majority": []}
    for k in range(max_k + 1):
        rows = np.array([len(p) > k for p in paths])
        y = np.array([p[k] for p in paths if len(p) > k])
        if rows.sum() < 50 or len(set(groups[rows])) < 5 or len(set(y)) < 2:
            continue
        out["k"].append(k)
        out["majority"].append(round(float(np.bincount(y).max() / len(y)), 3))
        out["accuracy"].append(_probe_scores(X, rows, y, groups, probe_steps))
    for j in range(max_short + 1):
        rows = np.array([len(p) > j for p in paths])
        y = np.array([p[len(p) - 1 - j] for p in paths if len(p) > j])
        out["short"].append(j)
        out["short_majority"].append(round(float(np.bincount(y).max() / len(y)), 3))
        out["short_accuracy"].append(_probe_scores(X, rows, y, groups, probe_steps))
    return out


def evaluate(bundle, splits: Dict[str, Sequence[BenchmarkItem]], seeds=SEEDS, steps: int = STEPS,
             probe: bool = True, log=print) -> dict:
    """Every target's numbers for a letter-readout cups model.  ``splits``: 'test', 'probe', 'hard' -> items."""
    res: dict = {"seeds": list(seeds), "steps": steps, "mass_min": MASS_MIN}
    test = splits["test"]
    runs = {}
    for variant in ("base", "easy", "nca"):
        log(f"tracing test/{variant}")
        runs[variant] = run(bundle, test, variant, seeds, steps, keep_all_states=probe and variant == "base")
        res[f"test_{variant}"] = summarize(test, runs[variant], steps)
    res["test_base_kinds"] = kinds_table(test, runs["base"])
    res["test_nca_kinds"] = kinds_table(test, runs["nca"])
    res["test_base_shortcut"] = shortcut_check(test, runs["base"])
    res["test_base_progression"] = progression(test, runs["base"])
    log("tracing test/base at init scale 0")
    zero = run(bundle, test, "base", seeds, steps, init_scale=0.0)
    res["test_base_init0"] = summarize(test, zero, steps)
    robust = set(res["test_base"]["robust_backtrack_items"])
    z = set(res["test_base_init0"]["robust_backtrack_items"])
    res["robust_backtracks_also_at_init0"] = round(len(robust & z) / len(robust), 3) if robust else None
    for name in ("probe", "hard"):
        if name in splits:
            log(f"tracing {name}/base")
            r = run(bundle, splits[name], "base", seeds, steps)
            res[f"{name}_base"] = summarize(splits[name], r, steps)
            res[f"{name}_base_shortcut"] = shortcut_check(splits[name], r)
            res[f"{name}_base_kinds"] = kinds_table(splits[name], r)
            if name == "hard":
                for variant in ("easy", "nca"):
                    res[f"hard_{variant}"] = summarize(splits[name], run(bundle, splits[name], variant, seeds, steps),
                                                       steps)
    if probe:
        log("linear probe")
        res["linear_probe"] = linear_probe(test, runs["base"])
        res["linear_probe_last_swap"] = linear_probe(test, runs["base"], position=-2)
        for traces in runs["base"]:
            for tr in traces:
                tr.hidden_all = None
    return res


def load_targets(path) -> dict:
    """A saved targets.json with its per-step and per-swap-count keys turned back into ints."""
    def fix(d):
        if isinstance(d, dict):
            return {(int(k) if isinstance(k, str) and k.isdigit() else k): fix(v) for k, v in d.items()}
        return d
    return fix(json.loads(Path(path).read_text()))


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def render_targets(res: dict) -> str:
    """The targets of issue 15 as a markdown table plus the supporting tables (for the card and the report)."""
    tb, te, tn = res["test_base"], res["test_easy"], res["test_nca"]
    lines = ["| # | target | measured | met |", "|---|---|---|---|"]
    masses = {k: res[k]["mass_ok_share"] for k in ("test_base", "test_easy", "test_nca", "probe_base", "hard_base",
                                                   "hard_easy", "hard_nca") if k in res}
    ok1 = min(masses.values()) >= 0.9
    lines.append(f"| 1 | option mass >= {res['mass_min']} at every step from step 2 in >= 90% of instances of every "
                 f"variant | " + ", ".join(f"{k.replace('_', ' ')} {_pct(v)}" for k, v in masses.items())
                 + f" | {'yes' if ok1 else 'no'} |")
    a30, a2 = tb["accuracy"], tb["accuracy_by_step"][2]
    ok2 = a30 >= 0.85 and a30 - a2 >= 0.30
    lines.append(f"| 2 | base accuracy >= 85% at 30 steps, >= 30 points lower at step 2 | {_pct(a30)} at 30, "
                 f"{_pct(a2)} at step 2 ({100 * (a30 - a2):.1f} points lower) | {'yes' if ok2 else 'no'} |")
    if "probe_base" in res:
        pa = res["probe_base"]["accuracy"]
        ok3 = abs(pa - a30) <= 0.10
        sc = res["probe_base_shortcut"]
        lines.append(f"| 3 | probe split (last swap never moves the ball) within 10 points of the main split | "
                     f"{_pct(pa)} vs {_pct(a30)} ({100 * (pa - a30):+.1f} points); step-1 argmax on a last-swap cup "
                     f"{_pct(res['test_base_shortcut']['step1_argmax_in_last_swap'])} on test (chance "
                     f"{_pct(res['test_base_shortcut']['chance'])}), {_pct(sc['step1_argmax_in_last_swap'])} on probe "
                     f"(chance {_pct(sc['chance'])}) | {'yes' if ok3 else 'no'} |")
    rb = tb["robust_backtrack_rate"]
    ok4 = rb >= 0.10
    lines.append(f"| 4 | >= 10% of base instances backtrack under a majority of {len(res['seeds'])} seeds (and at "
                 f"init scale 0) | {_pct(rb)} robust ({_pct(tb['backtrack_rate_per_seed'])} per seed, "
                 f"{_pct(tb['verdict_flip_share'])} of verdicts flip across seeds); init scale 0: "
                 f"{_pct(res['test_base_init0']['robust_backtrack_rate'])}, and "
                 f"{_pct(res['robust_backtracks_also_at_init0'])} of the robust instances also backtrack there | "
                 f"{'yes' if ok4 else 'no'} |")
    k = res["test_base_kinds"]
    lines.append(f"| 5 | distractors annotated; kinds committed to first / abandoned vs base rates; linear probe | "
                 f"see the tables below ({k['abandoned_n']} abandoned answers) | see below |")
    if "hard_base" in res:
        hb = res["hard_base"]
        ok6 = 0.40 <= hb["accuracy"] <= 0.90
        gain = (f"{100 * hb['accuracy_gain_points']:+.1f} points (95% CI {100 * hb['accuracy_gain_ci'][0]:+.1f} to "
                f"{100 * hb['accuracy_gain_ci'][1]:+.1f})" if hb.get("accuracy_gain_ci") else "n/a")
        lines.append(f"| 6a | hard split ({res.get('hard_swaps', '12-15')} swaps, longer than trained): base accuracy "
                     f"in 40-90% | {_pct(hb['accuracy'])}; backtracked runs {_pct(hb['accuracy_backtracked_runs'])} vs "
                     f"others {_pct(hb['accuracy_other_runs'])}: {gain}; robust backtracks {_pct(hb['robust_backtrack_rate'])}"
                     f"; exploration {hb['exploration_restricted_mean']} steps (restricted mean, 95% CI "
                     f"{hb['exploration_restricted_mean_ci']}) | {'yes' if ok6 else 'no'} |")
    lines.append(f"| 6b | NCA differs from base | final normalised entropy {tn['entropy_norm_by_step'][30]} vs "
                 f"{tb['entropy_norm_by_step'][30]}; final top belief {_pct(tn['final_top_belief'])} vs "
                 f"{_pct(tb['final_top_belief'])}; exploration {tn['exploration_restricted_mean']} vs "
                 f"{tb['exploration_restricted_mean']} steps; never converged {_pct(tn['never_converged_share'])} vs "
                 f"{_pct(tb['never_converged_share'])} | see text |")
    lines.append(f"| 6c | Easy explores less because of its options | exploration {te['exploration_restricted_mean']} "
                 f"(95% CI {te['exploration_restricted_mean_ci']}) vs base {tb['exploration_restricted_mean']} "
                 f"(95% CI {tb['exploration_restricted_mean_ci']}); easy accuracy at step 1 "
                 f"{_pct(te['accuracy_by_step'][1])} vs base {_pct(tb['accuracy_by_step'][1])}; option mass from "
                 f"step 2 >= {res['mass_min']} in {_pct(te['mass_ok_share'])} of easy instances | see text |")
    out = ["\n".join(lines), "", "What the search is (measured, test split, base):\n", story(res)]
    out.append("Accuracy by step (base, mean over seeds):\n")
    names = [n for n in ("test_base", "test_base_init0", "probe_base", "hard_base", "test_easy") if n in res]
    steps = list(tb["accuracy_by_step"])
    out.append("| split | " + " | ".join(f"step {t}" for t in steps) + " |")
    out.append("|---|" + "---|" * len(steps))
    for n in names:
        out.append(f"| {n.replace('_', ' ')} | " + " | ".join(_pct(res[n]["accuracy_by_step"][t]) for t in steps) + " |")
    out.append("\nDistractor kinds (test split, base; shares of first commitments, of wrong first commitments, of "
               "abandoned answers and of wrong final answers, beside each kind's share of the shown options):\n")
    out.append("| kind | shown (base rate) | first commitment | wrong first commitment | abandoned | wrong final |")
    out.append("|---|---|---|---|---|---|")
    for kind in KINDS:
        row = [k[c].get(kind, 0.0) for c in ("base_rate", "frontrunner", "wrong_frontrunner", "abandoned",
                                              "wrong_final")]
        if any(row):
            out.append(f"| {kind} | " + " | ".join(_pct(v) for v in row) + " |")
    pr = res.get("test_base_progression")
    if pr:
        out.append(f"\nProgression (test base, items with {pr['n_swaps']} swaps, all seeds): at each step, the share of "
                   "readouts that are right; for the wrong ones, the mean most recent index k of the ball's path "
                   "(their cup held the ball after k swaps) and the share on a cup the ball never occupied:\n")
        out.append("| | " + " | ".join(f"t={t}" for t in pr["steps"]) + " |")
        out.append("|---|" + "---|" * len(pr["steps"]))
        out.append("| right | " + " | ".join(_pct(v) for v in pr["right"]) + " |")
        out.append("| wrong: mean path index | " + " | ".join("-" if v is None else f"{v:.1f}"
                                                             for v in pr["wrong_mean_index"]) + " |")
        out.append("| wrong: never visited | " + " | ".join(_pct(v) for v in pr["wrong_never_visited"]) + " |")
    for key, where in (("linear_probe", "the last position (`?`, where the answer is read)"),
                       ("linear_probe_last_swap", "the last swap token (the end of the propagation front)")):
        lp = res.get(key)
        if not lp or not lp["k"]:
            continue
        out.append(f"\nLinear probe at {where}: accuracy (%) of decoding a cup of the ball's path from the state "
                   "after step t (standardised, logistic regression, 5-fold grouped by item; majority-class rate in "
                   "brackets):\n")
        out.append("| cup (majority) | " + " | ".join(f"t={t}" for t in lp["steps"]) + " |")
        out.append("|---|" + "---|" * len(lp["steps"]))
        for kk, maj, accs in zip(lp["k"], lp["majority"], lp["accuracy"]):
            out.append(f"| after {kk} swaps ({_pct(maj)}) | " + " | ".join(f"{100 * a:.0f}" for a in accs) + " |")
        for j, maj, accs in zip(lp["short"], lp["short_majority"], lp["short_accuracy"]):
            name = "the answer" if j == 0 else f"{j} short of the end"
            out.append(f"| {name} ({_pct(maj)}) | " + " | ".join(f"{100 * a:.0f}" for a in accs) + " |")
    return "\n".join(out) + "\n"


def story(res: dict) -> str:
    """The verified account of this model's search, written from the measurements (for the card)."""
    k = res["test_base_kinds"]
    wf, ab, br = k["wrong_frontrunner"], k["abandoned"], k["base_rate"]
    dist = {kk: v for kk, v in br.items() if kk != "answer"}
    tot = sum(dist.values()) or 1.0
    base_d = {kk: v / tot for kk, v in dist.items()}  # base rates among the shown distractors

    def earlier(d):
        return sum(d.get(x, 0.0) for x in ("1 short", "2 short", "3+ short"))

    tb = res["test_base"]
    settle = tb.get("settles_on_answer_by_swaps", {})
    lines = [
        f"- **What is committed to first, when it is wrong**: an earlier state of the ball in {_pct(earlier(wf))} of "
        f"wrong first commitments (earlier states are {_pct(earlier(base_d))} of the shown distractors), a cup named "
        f"only in the last swap in {_pct(wf.get('last swap', 0))} (base rate {_pct(base_d.get('last swap', 0))}), a cup "
        f"the ball never reached in {_pct(wf.get('never reached', 0))} (base rate "
        f"{_pct(base_d.get('never reached', 0))}).",
        f"- **What is abandoned** ({k['abandoned_n']} abandoned answers, test base, all seeds): an earlier state in "
        f"{_pct(earlier(ab))} (1 swap short {_pct(ab.get('1 short', 0))}, 2 short {_pct(ab.get('2 short', 0))}, 3 or "
        f"more short {_pct(ab.get('3+ short', 0))}); wrong final answers: {k['wrong_final'] or 'none'}.",
        "- **When it switches**: the first step from which the readout stays on the answer, by swap count (mean over "
        "runs): " + ", ".join(f"{n} swaps: {v}" for n, v in settle.items())
        + (f" (a linear fit gives {np.polyfit([int(n) for n in settle], list(settle.values()), 1)[0]:.2f} steps "
           "per swap)." if len(settle) > 1 else "."),
    ]
    pr = res.get("test_base_progression")
    if pr:
        idx = [v for v in pr["wrong_mean_index"][:8] if v is not None]
        lines.append(f"- **No step-by-step progression along the path**: on {pr['n_swaps']}-swap items the wrong "
                     f"readouts of steps 1-8 sit on cups the ball held after {', '.join(f'{v:.1f}' for v in idx)} "
                     f"swaps on average (no trend), and on a never-visited cup in "
                     f"{_pct(np.mean([v for v in pr['wrong_never_visited'][:8] if v is not None]))} of cases.")
    for key, where in (("linear_probe", "the `?` state"), ("linear_probe_last_swap", "the last swap token")):
        lp = res.get(key)
        if not lp or not lp.get("short"):
            continue
        ans = lp["short_accuracy"][0]
        best_k = max(max(a) - m for a, m in zip(lp["accuracy"], lp["majority"]))
        steps = lp["steps"]
        pick = [t for t in (2, 4, 6, 8, 12, 30) if t in steps]
        lines.append(f"- **Linear probe, {where}**: the answer cup is decoded at "
                     + ", ".join(f"{_pct(ans[steps.index(t)])} after step {t}" for t in pick)
                     + f" (majority rate {_pct(lp['short_majority'][0])}); the best 'cup after k swaps' is "
                     f"{100 * best_k:+.0f} points over its majority rate.")
    return "\n".join(lines) + "\n"
