"""Curated teaching examples for the Learn page (and the Explore page's default item).

A model's examples are found by scanning benchmark instances and picking, by their metrics, one that shows
each phenomenon: exploration, commitment, convergence, a backtrack, and a no-correct-answer item that never
settles.  ``python -m backend learn --model NAME`` traces the candidates under several seeds, keeps for each
kind an instance where it holds under a majority of them, and saves the picks with their robustness (and, for a
backtrack, what the abandoned answer is) to ``data/learn/<model>.json``; :func:`explain` adds those facts to its
text.  Without the file the Learn page scans on first use (cached).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .errors import LoopLensError, UsageError
from .items import load_benchmark
from .models import load_bundle
from .models.runtime import configure_torch_threads, default_model
from .settings import DEFAULT_STEPS, KL_THRESHOLD, KL_WINDOW, LEARN_DIR, LETTERS, RUN_LENGTH
from .trace import trace_items
from .uploads import benchmark_files

KINDS = ("exploration", "commitment", "convergence", "backtrack", "nca")
TITLES = {
    "exploration": "Exploration: several answers are tried",
    "commitment": "Commitment: the argmax locks in",
    "convergence": "Convergence: the belief stops moving",
    "backtrack": "A backtrack: a committed answer is abandoned",
    "nca": "No correct answer: none of the options is right",
}


@dataclass
class Example:
    kind: str
    item_id: str
    variant: str
    permutation: int
    seed: int
    holds: int = 0  # seeds (of ``of_seeds``) under which the example shows its phenomenon
    of_seeds: int = 0
    note: Optional[str] = None  # what the abandoned answer is (from the benchmark's annotations), if known

    def to_dict(self) -> dict:
        return asdict(self)


def curated_path(model_name: str) -> Path:
    return LEARN_DIR / f"{Path(str(model_name)).name}.json"


def load_curated(model_name: Optional[str]) -> Optional[dict]:
    """The saved examples of a model (None when there is no readable file)."""
    if not model_name:
        return None
    p = curated_path(model_name)
    if not p.is_file():
        return None
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
        d["examples"] = [Example(**e) for e in d.get("examples", [])]
        return d
    except (json.JSONDecodeError, TypeError, KeyError, UnicodeDecodeError):
        return None


@dataclass(frozen=True)
class PageSettings:
    """How the Learn page runs a model's examples (its own settings, not the sidebar's)."""

    steps: int
    init_scale: float
    run_length: int
    kl_threshold: float
    kl_window: int
    seeds: Tuple[int, ...]  # the curated examples' seeds (the scan's seed without a curated file)
    curated: bool

    def note(self) -> str:
        """One line for the sidebar: what Learn uses instead of the run controls."""
        seeds = ", ".join(str(s) for s in sorted(set(self.seeds)))
        src = "curated examples" if self.curated else "examples (found by a scan)"
        return (f"Learn runs its {src} with their own settings: {self.steps} steps, seed {seeds}, init scale "
                f"{self.init_scale:g}, commitment run length {self.run_length}. The run controls are on Explore, "
                "Compare and Models.")


SCAN_SEED = 0


def page_settings(model_name: Optional[str]) -> PageSettings:
    """The settings the Learn page runs ``model_name``'s examples with: the curated file's steps and seeds, else
    the defaults (and seed 0) of the scan."""
    d = load_curated(model_name)
    if d and d["examples"]:
        return PageSettings(int(d.get("steps", DEFAULT_STEPS)), 1.0, RUN_LENGTH, KL_THRESHOLD, KL_WINDOW,
                            tuple(int(e.seed) for e in d["examples"]), True)
    return PageSettings(DEFAULT_STEPS, 1.0, RUN_LENGTH, KL_THRESHOLD, KL_WINDOW, (SCAN_SEED,), False)


def interesting_item_id(model_name: Optional[str], ids: Sequence[str]) -> Optional[str]:
    """The item of the model's curated backtrack example (else its exploration example), if among ``ids``."""
    d = load_curated(model_name)
    if not d:
        return None
    by_kind = {e.kind: e for e in d["examples"]}
    for kind in ("backtrack", "exploration", "commitment"):
        e = by_kind.get(kind)
        if e is not None and e.item_id in ids and e.variant == "base":
            return e.item_id
    return None


def scan_instances(bench_items, n_items: int = 40, permutations: int = 2) -> list:
    """Instances to scan: base (a few answer orders) and nca (order 0) of the first ``n_items`` items."""
    out = []
    for it in list(bench_items)[:n_items]:
        for p in range(permutations):
            out.append(it.instance("base", p))
        if "nca" in it.available_variants():
            out.append(it.instance("nca", 0))
    return out


def select_examples(traces: Sequence) -> Dict[str, int]:
    """Pick the index of the trace that best shows each phenomenon (a kind is missing if none fits)."""
    out: Dict[str, int] = {}
    idx = list(range(len(traces)))
    base = [i for i in idx if (traces[i].variant or "base") != "nca"]
    nca = [i for i in idx if traces[i].variant == "nca"]

    def m(i):
        return traces[i].metrics

    bt = [i for i in base if m(i).backtracked]
    if bt:
        out["backtrack"] = max(bt, key=lambda i: (bool(m(i).is_correct), len(m(i).backtracks) == 1,
                                                   -abs((m(i).backtracks[0][1].start if m(i).backtracks else 0) - 10)))
    expl = [i for i in base if m(i).converged and i not in out.values()]
    if expl:
        out["exploration"] = max(expl, key=lambda i: (len({int(a) for a in m(i).argmax[: m(i).exploration_end]}),
                                                      m(i).exploration_end))
    com = [i for i in base if m(i).commitments and i not in out.values()
           and m(i).commitments[-1].end == m(i).n_steps]
    if com:
        out["commitment"] = min(com, key=lambda i: (not m(i).is_correct, len(m(i).commitments),
                                                    m(i).commitments[-1].start))
    conv = [i for i in base if m(i).converged and i not in out.values()]
    if conv:
        out["convergence"] = min(conv, key=lambda i: (not m(i).is_correct, -float(traces[i].probs[-1].max()),
                                                      m(i).exploration_end))
    if nca:
        never = [i for i in nca if not m(i).converged]
        pool = never or nca
        out["nca"] = max(pool, key=lambda i: float(m(i).entropy[-5:].mean()))
    return out


def _curated_facts(kind: str, trace, with_note: bool = True) -> str:
    """The saved robustness (and annotation) of this exact example, as a sentence; '' if it is not curated, or was
    curated on another checkpoint, or its note names another option than this trace abandons."""
    d = load_curated(trace.model)
    if not d or d.get("checkpoint_hash") not in (None, trace.checkpoint_hash):
        return ""
    for e in d.get("examples", []):
        if (e.kind, e.item_id, e.variant, e.permutation, e.seed) == (
                kind, trace.item_id, trace.variant or "base", trace.permutation, trace.seed):
            out = ""
            bt = trace.metrics.backtracks
            if with_note and e.note and bt and option_text(trace, bt[0][0].option) in e.note:
                out = f" {e.note}"
            if e.of_seeds:
                out += f" This holds under {e.holds} of {e.of_seeds} initial-state seeds."
            return out
    return ""


def option_text(trace, i: int) -> str:
    """An option as the page quotes it: its letter and its text, e.g. ``B (c2)``."""
    return f"{LETTERS[int(i)]} ({trace.options[int(i)]})"


KL_SHOWN_FLOOR = 1e-4  # step KLs below this are quoted as "below 0.0001" (rounding noise, even negative)


def kl_text(kl: float) -> str:
    """A step KL as quoted in the text: 3 significant digits, or "below 0.0001"."""
    return f"below {KL_SHOWN_FLOOR:g}" if kl < KL_SHOWN_FLOOR else f"{kl:.3g}"


def _verdict(m) -> str:
    return "correct" if m.is_correct else "not the correct one" if m.is_correct is not None else "unscored"


def _rules(m) -> Tuple[float, int, int]:
    """(KL threshold, KL window, commitment run length) the metrics were computed with."""
    p = m.params
    return float(p.get("kl_threshold", KL_THRESHOLD)), int(p.get("kl_window", KL_WINDOW)), \
        int(p.get("run_length", RUN_LENGTH))


def _in_order(options: Sequence[int]) -> List[int]:
    """Distinct options in the order they first appear."""
    out: List[int] = []
    for o in options:
        if int(o) not in out:
            out.append(int(o))
    return out


def _later(m) -> str:
    """A sentence when exploration end is not final (the argmax or the belief moves again later), else ''."""
    thr, _, _ = _rules(m)
    if m.later_argmax_change is not None:
        return (f" Exploration end is not final here: the top answer changes again at step "
                f"{m.later_argmax_change}.")
    if m.later_kl_step is not None:
        return (f" Exploration end is not final here: the belief moves by more than KL {thr:g} again after "
                f"step {m.later_kl_step}.")
    return ""


def explain(kind: str, trace, item=None) -> str:
    """A few sentences about what this example shows, every step, option and number read from ``trace`` (and its
    metrics' own thresholds), plus the saved robustness of a curated example.  With the benchmark ``item``, a
    backtrack's abandoned answer is described from the item's annotations (cups: which earlier state it is)."""
    m = trace.metrics
    L = LETTERS
    K = m.n_steps
    thr, win, rl = _rules(m)
    probs = np.asarray(trace.probs, dtype=float)
    fa = option_text(trace, m.final_answer)
    p_final = float(probs[-1, m.final_answer])
    if kind == "exploration":
        end = m.exploration_end if m.converged else K
        tried = _in_order(m.argmax[:end])
        changes = int((np.diff(m.argmax[:end]) != 0).sum())
        names = ", ".join(option_text(trace, o) for o in tried)
        head = (f"In steps 1-{end} the model's top answer moves between {names} ({changes} changes): each recurrent "
                f"step refines the latent state and the coda reads a different belief.")
        if m.converged:
            text = (f"{head} From step {m.exploration_end} on, the next {win} step-to-step changes of the belief are "
                    f"each at most KL {thr:g}, which ends the exploration phase.{_later(m)} The final answer is {fa} "
                    f"({p_final:.0%} at step {K}).")
        else:
            text = (f"{head} The belief never settles within {K} steps (no {win} step-to-step changes in a row "
                    f"of at most KL {thr:g}); the last top answer is {fa} ({p_final:.0%}).")
    elif kind == "commitment":
        if not m.commitments:
            return (f"This run has no commitment: no answer stays on top for {rl} steps in a row within {K} steps. "
                    "Try another seed in Explore.")
        c = m.commitments[-1]
        p0, p1 = float(probs[c.start - 1, c.option]), float(probs[c.end - 1, c.option])
        text = (f"A commitment is a run of at least {rl} steps with the same top answer; here the model holds "
                f"{option_text(trace, c.option)} from step {c.start} to step {c.end} ({c.length} steps). Once "
                f"committed, more steps sharpen the belief instead of changing the answer: {L[c.option]} goes from "
                f"{p0:.0%} at step {c.start} to {p1:.0%} at step {c.end}.")
    elif kind == "convergence":
        if not m.converged:
            return (f"The belief never converges in this run: no {win} step-to-step changes in a row are at most "
                    f"KL {thr:g} within {K} steps. Try more steps in Explore.")
        text = (f"The belief stops moving: from step {m.exploration_end} on, {win} steps in a row each change it by at "
                f"most KL {thr:g}.{_later(m)} The remaining steps up to step {K} are spent confirming {fa}: "
                f"{p_final:.0%} belief at step {K}, {_verdict(m)}.")
    elif kind == "backtrack":
        if not m.backtracks:
            return "This run has no backtrack under this seed. Try another seed in Explore."
        a, b = m.backtracks[0]
        more = len(m.backtracks) - 1
        text = (f"The model commits to {option_text(trace, a.option)} for steps {a.start}-{a.end} ({a.length} steps, "
                f"at least {rl}), then switches and commits to {option_text(trace, b.option)} from step {b.start}: "
                f"a backtrack, {L[a.option]} -> {L[b.option]}."
                + (f" It changes its committed answer {more} more time{'s' if more > 1 else ''} after that." if more
                   else "")
                + f" The final answer {fa} ({p_final:.0%} at step {K}) is {_verdict(m)}.")
        what = option_note(item, trace, a.option) if item is not None else None
        if what:
            text += f" The abandoned answer {option_text(trace, a.option)} is {what}."
    elif kind == "nca":
        settle = ("the belief keeps moving: it never converges" if not m.converged
                  else f"the belief converges at step {m.exploration_end}")
        top = int(probs[-1].argmax())
        text = (f"None of the options is correct, and {settle} within {K} steps. Its entropy is "
                f"{float(m.entropy[-1]):.2f} nats at step {K} (uniform over {trace.n_options} options is "
                f"{np.log(trace.n_options):.2f}); the top option {option_text(trace, top)} holds "
                f"{float(probs[-1, top]):.0%}"
                + (": an almost even split, the model picks none of them." if float(m.entropy_norm[-1]) > 0.95
                   else "."))
    else:
        raise UsageError(f"unknown example kind {kind!r}")
    return text + _curated_facts(kind, trace, with_note=item is None)


def step_story(trace, step: int) -> Tuple[str, str]:
    """What happens at ``step`` (1-based) of ``trace``, as a presenter says it: (headline, details).

    Only what is known after ``step`` steps is used (the metrics of the run cut at that step), so a commitment is
    announced when it has lasted the run length and exploration end when its KL window is complete, exactly when
    the chart cut at that step shows them."""
    K = int(trace.steps if trace.steps else len(trace.probs))
    t = int(step)
    if not 1 <= t <= K:
        raise UsageError(f"step must be between 1 and {K}, got {step}")
    probs = np.asarray(trace.probs, dtype=float)
    now = trace.truncated(t).analyze(**trace.metrics.params)
    before = trace.truncated(t - 1).analyze(**trace.metrics.params) if t > 1 else None
    thr, win, rl = _rules(now)
    top = int(now.argmax[-1])
    p_top = float(probs[t - 1, top])
    events: List[str] = []
    if t == 1:
        events.append(f"the first readout, after one pass of the core block: the top answer is "
                      f"{option_text(trace, top)}")
    elif int(now.argmax[-2]) != top:
        events.append(f"the top answer changed from {option_text(trace, now.argmax[-2])} to "
                      f"{option_text(trace, top)}")
    if now.runs[-1].length == rl:  # the run on top has just lasted the run length
        c = now.commitments[-1]
        events.append(f"{option_text(trace, c.option)} has been on top for {rl} steps (since step {c.start}): a "
                      "commitment")
    if len(now.backtracks) > (len(before.backtracks) if before is not None else 0):
        a, b = now.backtracks[-1]
        events.append(f"backtrack: the commitment to {LETTERS[a.option]} (steps {a.start}-{a.end}) is abandoned for "
                      f"{LETTERS[b.option]}, {LETTERS[a.option]} -> {LETTERS[b.option]}")
    if now.exploration_end is not None and (before is None or before.exploration_end is None):
        events.append(f"exploration ended at step {now.exploration_end}: the {win} changes since then are each at "
                      f"most KL {thr:g}")
    if not events:
        events.append(f"the top answer stays {option_text(trace, top)}")
    headline = f"Step {t} of {K}: " + "; ".join(events) + "."
    details = [f"{LETTERS[top]} holds {p_top:.0%} of the belief"]
    if t > 1:
        details.append(f"the belief moved by KL {kl_text(float(now.kl[-1]))} since step {t - 1}")
    if now.low_mass is not None and bool(now.low_mass[-1]):
        details.append(f"but the option letters hold only {float(now.mass[-1]):.1%} of the next-token probability, "
                       f"below {now.mass_threshold:g}: the model is not answering yet, this belief is noise")
    text = "; ".join(details) + "."
    if t == K:
        m = trace.metrics
        text += f" This is the last step: the final answer is {option_text(trace, m.final_answer)}, {_verdict(m)}."
    return headline, text[0].upper() + text[1:]


def holds(kind: str, metrics) -> bool:
    """Whether a run shows what an example of ``kind`` is chosen for (used to count the seeds it holds under)."""
    m = metrics
    if kind == "backtrack":
        return bool(m.backtracked)
    if kind == "exploration":
        return m.converged and len({int(a) for a in m.argmax[: m.exploration_end]}) >= 2
    if kind == "commitment":
        return bool(m.commitments) and m.commitments[-1].end == m.n_steps
    if kind == "convergence":
        return m.converged and bool(m.is_correct)
    if kind == "nca":
        return not m.converged or float(m.entropy_norm[-1]) > 0.5
    raise UsageError(f"unknown example kind {kind!r}")


def option_note(item, trace, option: int) -> Optional[str]:
    """What a shown option is, from the benchmark item's ``distractor_notes`` (cups items), if annotated."""
    notes = (item.extra or {}).get("distractor_notes") if item is not None else None
    text = trace.options[option]
    if trace.correct == option:
        return "the correct answer"
    note = notes.get(text) if notes else None
    if not note:
        return None
    if "after" in note and "of" in note:
        return f"where the ball was after {note['after']} of {note['of']} swaps (an earlier state of the task)"
    return note.get("text")


def find_examples(bundle, bench_items, steps: int = 30, seeds: Sequence[int] = (0, 1, 2, 3, 4), n_items: int = 40,
                  permutations: int = 2) -> List[Example]:
    """Trace the scanned instances under every seed; pick each kind among the instances where it holds under the
    most seeds (seed ``seeds[0]`` is the one shown, and must show it), one instance per kind."""
    insts = scan_instances(bench_items, n_items, permutations)
    if not insts:
        raise UsageError("no benchmark items to scan for examples")
    seeds = list(seeds)
    runs = [trace_items(bundle, insts, steps, seeds=s) for s in seeds]
    shown = runs[0]
    by_id = {it.id: it for it in bench_items}
    out, used = [], set()
    for kind in ("backtrack", "nca", "exploration", "commitment", "convergence"):  # scarcest first
        count = [sum(holds(kind, r[i].metrics) for r in runs) for i in range(len(insts))]
        # only the variant an example of this kind is chosen from (select_examples: nca for nca, else base)
        pool = [i for i in range(len(insts)) if holds(kind, shown[i].metrics) and i not in used
                and ((insts[i].variant or "base") == "nca") == (kind == "nca")]
        if not pool:
            continue
        best = max(count[i] for i in pool)
        pool = [i for i in pool if count[i] == best]  # the most robust candidates, then the clearest of them
        pick = select_examples([shown[i] for i in pool]).get(kind)
        if pick is None:
            continue
        i = pool[pick]
        used.add(i)
        tr = shown[i]
        note = None
        if kind == "backtrack" and tr.metrics.backtracks:
            a = tr.metrics.backtracks[0][0].option
            what = option_note(by_id.get(tr.item_id), tr, a)
            note = f"The abandoned answer {LETTERS[a]} ({tr.options[a]}) is {what}." if what else None
        out.append(Example(kind, tr.item_id, tr.variant or "base", tr.permutation, seeds[0], count[i], len(seeds),
                           note))
    out.sort(key=lambda e: KINDS.index(e.kind))
    return out


def main(model: Optional[str] = None, benchmark: Optional[str] = None, steps: int = 30, n_seeds: int = 5,
         n_items: int = 60) -> int:
    """``python -m backend learn``: find and save a model's Learn-page examples (data/learn/<model>.json)."""
    configure_torch_threads()
    model = model or default_model()
    if not model:
        raise UsageError("no model: pass --model")
    if n_seeds < 1:
        raise UsageError(f"--seeds must be >= 1, got {n_seeds}")
    bundle = load_bundle(model)
    bpath = benchmark or next(iter(benchmark_files(bundle.name)), None)
    if bpath is None:
        raise UsageError("no benchmark: pass --benchmark")
    bench = load_benchmark(bpath)
    if not bench.items:
        raise LoopLensError(f"{bpath}: no usable items")
    ex = find_examples(bundle, bench.items, steps, list(range(n_seeds)), n_items)
    LEARN_DIR.mkdir(parents=True, exist_ok=True)
    out = curated_path(bundle.name)
    out.write_text(json.dumps({"model": bundle.name, "checkpoint_hash": bundle.checkpoint_hash,
                               "benchmark": Path(bpath).name, "steps": steps,
                               "examples": [e.to_dict() for e in ex]}, indent=1))
    print(f"wrote {out}: " + ", ".join(f"{e.kind}={e.item_id} ({e.holds}/{e.of_seeds} seeds)" for e in ex))
    return 0
