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
from typing import Dict, List, Optional, Sequence

import numpy as np

from .errors import LoopLensError, UsageError
from .items import load_benchmark
from .models import load_bundle
from .models.runtime import configure_torch_threads, default_model
from .settings import LEARN_DIR, LETTERS
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


def _curated_facts(kind: str, trace) -> str:
    """The saved robustness (and annotation) of this exact example, as a sentence; '' if it is not curated."""
    d = load_curated(trace.model)
    for e in (d or {}).get("examples", []):
        if (e.kind, e.item_id, e.variant, e.permutation, e.seed) == (
                kind, trace.item_id, trace.variant or "base", trace.permutation, trace.seed):
            out = f" {e.note}" if e.note else ""
            if e.of_seeds:
                out += f" This holds under {e.holds} of {e.of_seeds} initial-state seeds."
            return out
    return ""


def explain(kind: str, trace) -> str:
    """A few sentences about what this example shows, with its own numbers (plus its saved robustness)."""
    m = trace.metrics
    L = LETTERS
    fa = f"{L[m.final_answer]} ({trace.options[m.final_answer]})"
    ex = f"step {m.exploration_end}" if m.converged else "no step"
    later = (m.converged and m.exploration_end < len(m.kl)
             and bool((m.kl[m.exploration_end - 1:] > m.params.get("kl_threshold", 0.01)).any()))
    moves = " (the belief still moves later, so this is not final)" if later else ""
    if kind == "exploration":
        tried = sorted({L[int(a)] for a in m.argmax[: (m.exploration_end or m.n_steps)]})
        text = (f"Before it settles, the model's favourite answer moves between {', '.join(tried)}: each recurrent "
                f"step refines the latent state and the coda reads a different belief. The step-to-step KL first "
                f"stays below the threshold for 3 steps at {ex}{moves}, which ends the exploration phase; the final "
                f"answer is {fa}.")
    elif kind == "commitment":
        c = m.commitments[-1] if m.commitments else None
        span = f"from step {c.start} to step {c.end}" if c else "for a while"
        text = (f"A commitment is a run of at least 3 steps with the same argmax; here the model holds "
                f"{L[c.option] if c else '?'} {span}. Once committed, more steps mostly sharpen the belief instead of "
                f"changing the answer, ending on {fa}.")
    elif kind == "convergence":
        text = (f"The belief stops moving: from {ex} on, 3 steps in a row each change it by less than KL 0.01"
                f"{moves}. Extra recurrence past this point is spent confirming {fa} "
                f"({float(trace.probs[-1].max()):.0%} belief at the last step).")
    elif kind == "backtrack":
        a, b = m.backtracks[0] if m.backtracks else (None, None)
        if a is None:
            return "This run has no backtrack under this seed. Try another seed in Explore."
        text = (f"The model commits to {L[a.option]} ({trace.options[a.option]}) for steps {a.start}-{a.end}, then "
                f"switches and commits to {L[b.option]} from step {b.start}: a backtrack, {L[a.option]} -> "
                f"{L[b.option]}. The final answer {fa} is "
                f"{'correct' if m.is_correct else 'not the correct one' if m.is_correct is not None else 'unscored'}.")
    elif kind == "nca":
        settle = ("the belief keeps moving: it never converges" if not m.converged
                  else f"the belief converges at step {m.exploration_end}")
        text = (f"None of the options is correct, and {settle} within {m.n_steps} steps. Its entropy is "
                f"{float(m.entropy[-1]):.2f} nats at the end (uniform over {trace.n_options} options is "
                f"{np.log(trace.n_options):.2f}); the top option holds {float(trace.probs[-1].max()):.0%}.")
    else:
        raise UsageError(f"unknown example kind {kind!r}")
    return text + _curated_facts(kind, trace)


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
        pool = [i for i in range(len(insts)) if holds(kind, shown[i].metrics) and i not in used]
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
