"""Curated teaching examples for the Learn page (and the Explore page's default item).

A model's examples are found by scanning benchmark instances and picking, by their metrics, one that shows
each phenomenon: exploration, commitment, convergence, a backtrack, and a no-correct-answer item that never
settles.  They can be saved to ``data/learn/<model>.json`` (``python -m backend.learn --model NAME``) so the
app does not need to scan; without the file the Learn page scans on first use (cached).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from .errors import LoopLensError, UsageError

REPO_ROOT = Path(__file__).resolve().parents[1]
LEARN_DIR = REPO_ROOT / "data" / "learn"
from .settings import LETTERS  # noqa: E402
KINDS = ("exploration", "commitment", "convergence", "backtrack", "nca")
TITLES = {
    "exploration": "Exploration: several answers are tried",
    "commitment": "Commitment: the argmax locks in",
    "convergence": "Convergence: the belief stops moving",
    "backtrack": "A backtrack: a committed answer is abandoned",
    "nca": "No correct answer: it never settles",
}


@dataclass
class Example:
    kind: str
    item_id: str
    variant: str
    permutation: int
    seed: int

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


def explain(kind: str, trace) -> str:
    """Two sentences about what this example shows, with its own numbers."""
    m = trace.metrics
    L = LETTERS
    fa = f"{L[m.final_answer]} ({trace.options[m.final_answer]})"
    ex = f"step {m.exploration_end}" if m.converged else "no step"
    if kind == "exploration":
        tried = sorted({L[int(a)] for a in m.argmax[: (m.exploration_end or m.n_steps)]})
        return (f"Before it settles, the model's favourite answer moves between {', '.join(tried)}: each recurrent "
                f"step refines the latent state and the coda reads a different belief. The step-to-step KL drops "
                f"below the threshold for good at {ex}, which ends the exploration phase and leaves {fa}.")
    if kind == "commitment":
        c = m.commitments[-1] if m.commitments else None
        span = f"from step {c.start} to step {c.end}" if c else "for a while"
        return (f"A commitment is a run of at least 3 steps with the same argmax; here the model holds "
                f"{L[c.option] if c else '?'} {span}. Once committed, more steps mostly sharpen the belief instead of "
                f"changing the answer, ending on {fa}.")
    if kind == "convergence":
        return (f"The belief stops moving: after {ex} every step changes it by less than KL 0.01, for at least "
                f"3 steps in a row. Extra recurrence past this point is spent confirming {fa} "
                f"({float(trace.probs[-1].max()):.0%} belief at the last step).")
    if kind == "backtrack":
        a, b = m.backtracks[0] if m.backtracks else (None, None)
        if a is None:
            return "This run has no backtrack under this seed. Try another seed in Explore."
        return (f"The model commits to {L[a.option]} ({trace.options[a.option]}) for steps {a.start}-{a.end}, then "
                f"switches and commits to {L[b.option]} from step {b.start}: a backtrack, {L[a.option]} -> "
                f"{L[b.option]}. The final answer {fa} is "
                f"{'correct' if m.is_correct else 'not the correct one' if m.is_correct is not None else 'unscored'}"
                f"; the paper finds abandoned answers are usually the distractor most similar to the question.")
    if kind == "nca":
        return (f"None of the options is correct, and the belief keeps moving: {('it never converges' if not m.converged else f'it only converges at step {m.exploration_end}')}"
                f" within {m.n_steps} steps. Its entropy stays at {float(m.entropy[-1]):.2f} nats at the end "
                f"(uniform over {trace.n_options} options is {np.log(trace.n_options):.2f}).")
    raise UsageError(f"unknown example kind {kind!r}")


def find_examples(bundle, bench_items, steps: int = 30, seed: int = 0, n_items: int = 40,
                  permutations: int = 2) -> List[Example]:
    from .trace import trace_items

    insts = scan_instances(bench_items, n_items, permutations)
    if not insts:
        raise UsageError("no benchmark items to scan for examples")
    traces = trace_items(bundle, insts, steps, seeds=seed)
    picks = select_examples(traces)
    return [Example(k, traces[i].item_id, traces[i].variant or "base", traces[i].permutation, seed)
            for k, i in sorted(picks.items(), key=lambda kv: KINDS.index(kv[0]))]


def main(argv=None) -> int:
    from .models.runtime import configure_torch_threads, default_model
    from .uploads import benchmark_files
    from .items import load_benchmark
    from .models import load_bundle

    ap = argparse.ArgumentParser(prog="python -m backend.learn",
                                 description="find and save the Learn page's curated examples for a model")
    ap.add_argument("--model", default=None)
    ap.add_argument("--benchmark", default=None)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--items", type=int, default=60)
    a = ap.parse_args(argv)
    try:
        configure_torch_threads()
        model = a.model or default_model()
        if not model:
            raise UsageError("no model: pass --model")
        bundle = load_bundle(model)
        bpath = a.benchmark or next(iter(benchmark_files(bundle.name)), None)
        if bpath is None:
            raise UsageError("no benchmark: pass --benchmark")
        bench = load_benchmark(bpath)
        ex = find_examples(bundle, bench.items, a.steps, a.seed, a.items)
        LEARN_DIR.mkdir(parents=True, exist_ok=True)
        out = curated_path(bundle.name)
        out.write_text(json.dumps({"model": bundle.name, "checkpoint_hash": bundle.checkpoint_hash,
                                   "benchmark": Path(bpath).name, "steps": a.steps,
                                   "examples": [e.to_dict() for e in ex]}, indent=1))
        print(f"wrote {out}: {', '.join(e.kind + '=' + e.item_id for e in ex)}")
        return 0
    except LoopLensError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
