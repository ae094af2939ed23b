"""The chunk runner: one loaded model computing chunks of instances into Arrow rows (in-process or in a Ray actor).

It knows nothing of results directories: a chunk goes in, a :class:`ChunkResult` (rows in the store's schema,
hidden states, timings) comes out.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import numpy as np
import pyarrow as pa
import torch

from ..counterfactual import compare
from ..errors import UsageError
from ..interventions import Intervention, splice_plan, trace_intervened
from ..items import BenchmarkItem
from ..models import PromptTemplate, load_bundle
from ..trace import default_batch_size, prepare, trace_items
from .spec import Instance, SweepSpec, instance_seed, load_items, spec_intervention, template_hash
from .store import INTERVENTION_FIELDS, ROW_SCHEMA


def resolve_device(device: Optional[str]) -> str:
    """``auto``: CUDA when this process sees a GPU, else the CPU."""
    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


@dataclass
class ChunkResult:
    first: int  # enumeration index of the chunk's first instance: the start of the part's name
    table: pa.Table  # rows in instance order, ROW_SCHEMA
    hidden: Optional[np.ndarray]  # float16 [rows, steps, E]
    trace_seconds: float  # time spent inside trace_items
    compute_seconds: float  # trace_items + building the rows
    batches: int = 0
    padded_tokens: int = 0
    real_tokens: int = 0


def _f32(a) -> list:
    return np.asarray(a, dtype=np.float32).tolist()


def intervention_columns(iv: Optional[Intervention], baseline=None, comparison: Optional[dict] = None,
                         spliced: Optional[str] = None) -> dict:
    """The intervention columns of one row (all None without an intervention): the intervention, its baseline's
    argmax / final answer / verdicts, and what changed (:func:`backend.counterfactual.compare`)."""
    if iv is None:
        return {c: None for c in INTERVENTION_FIELDS}
    mb, c = baseline.metrics, comparison
    d = iv.to_dict()
    if spliced is not None:
        d["spliced"] = spliced
    return {
        "intervention": json.dumps(d, sort_keys=True), "iv_kind": iv.kind, "iv_at": iv.at,
        "iv_sigma": iv.sigma, "iv_positions": spliced,
        "baseline_argmax": [int(a) for a in mb.argmax], "baseline_final_answer": mb.final_answer,
        "baseline_is_correct": mb.is_correct, "baseline_backtracked": mb.backtracked,
        "baseline_exploration_end": mb.exploration_end, "final_changed": c["final_changed"],
        "diverged_at": c["diverged_at"], "rejoin_step": c["rejoin_step"],
        "steps_to_rejoin": None if c["rejoin_step"] is None else c["rejoin_step"] - iv.at,
        "new_backtracks": len(c["new_backtracks"]), "lost_backtracks": len(c["lost_backtracks"]),
        "max_tv": c["max_tv"], "final_tv": c["final_tv"],
    }


def build_rows(traces, chunk: Sequence[Instance], bundle_name: str, checkpoint_hash: str, template: dict,
               init_scale: float, intervention: Optional[Intervention] = None, baselines=None,
               spliced: Optional[Sequence[Optional[str]]] = None) -> pa.Table:
    """One row per instance (in ``chunk`` order) from its Trace, in the store's :data:`ROW_SCHEMA`.

    With ``intervention``, ``traces`` are the intervened runs and ``baselines`` their baselines (same order);
    ``spliced``: per row, which positions a splice replaced."""
    thash, tname = template_hash(template), template.get("name", "custom")
    rows = []
    for r, (inst, tr) in enumerate(zip(chunk, traces)):
        m = tr.metrics
        order = list(tr.order)
        n = tr.n_options
        rows.append({
            "item_id": inst.item_id, "domain": tr.domain, "variant": inst.variant,
            "permutation": inst.permutation, "seed": inst.seed, "init_seed": inst.init_seed,
            "instance": inst.index, "model": bundle_name, "checkpoint_hash": checkpoint_hash,
            "steps": int(tr.steps), "template": tname, "template_hash": thash, "init_scale": float(init_scale),
            "question": tr.question, "n_options": n, "options": list(tr.options), "order": order,
            "correct": tr.correct, "correct_original": None if tr.correct is None else int(order[tr.correct]),
            "belief": _f32(tr.probs), "raw_mass": _f32(tr.raw_mass),
            "letter_mass": _f32(tr.letter_mass), "entropy": _f32(m.entropy),
            "kl": _f32(m.kl), "argmax": [int(a) for a in m.argmax],
            "final_answer": m.final_answer, "final_answer_original": int(order[m.final_answer]),
            "final_option": tr.options[m.final_answer], "is_correct": m.is_correct,
            "exploration_end": m.exploration_end, "converged": m.converged, "backtracked": m.backtracked,
            "n_backtracks": len(m.backtracks), "abandoned": list(m.abandoned),
            "abandoned_original": [int(order[a]) for a in m.abandoned],
            "abandoned_options": [tr.options[a] for a in m.abandoned],
            "destination": m.destination, "frontrunner": m.frontrunner,
            "n_commitments": len(m.commitments),
            "final_entropy": float(m.entropy[-1]), "final_entropy_norm": float(m.entropy[-1] / np.log(n)),
            "mean_entropy": float(m.entropy.mean()), "final_letter_mass": float(tr.letter_mass[-1]),
            "final_belief_max": float(tr.probs[-1].max()),
            "exit_prob": None if tr.exit_probs is None else _f32(tr.exit_probs),
        })
        if intervention is None:
            rows[-1].update(intervention_columns(None))
        else:
            b = baselines[r]
            rows[-1].update(intervention_columns(intervention, b, compare(tr.probs, b.probs, intervention.at,
                                                                          b.correct),
                                                 None if spliced is None else spliced[r]))
    return pa.Table.from_pylist(rows, schema=ROW_SCHEMA)


class ChunkRunner:
    """Holds one loaded model and computes chunks of instances (used in-process and inside Ray actors)."""

    def __init__(self, spec: SweepSpec, bundle=None, items=None):
        self.spec = spec
        if spec.threads:
            torch.set_num_threads(spec.threads)
        self.bundle = bundle if bundle is not None else load_bundle(spec.model, device=resolve_device(spec.device),
                                                                    dtype=spec.dtype)
        self.template = PromptTemplate.from_dict(spec.template) if spec.template else self.bundle.template
        self.items = {it.id: it for it in (items if items is not None else load_items(spec))}
        self.intervention = spec_intervention(spec)

    def splice_source(self, inst: Instance, shown):
        """A splice's source for one instance: (source item, source seed, the positions spliced), or None
        when the intervention is not a splice.  ``seed=S`` in a sweep names the seed *index* S of the same
        item, variant and order (its initial-state seed is derived like every instance's)."""
        iv = self.intervention
        if iv is None or iv.kind != "splice":
            return None
        src, seed = shown, inst.init_seed
        if iv.splice_from:
            key, val = next(iter(iv.splice_from.items()))
            bi = self.items[inst.item_id]
            if key == "seed":
                seed = instance_seed(self.spec.base_seed, inst.item_id, inst.variant, inst.permutation, int(val))
            elif key == "permutation":
                src = bi.instance(inst.variant, int(val), self.spec.perm_seed)
            else:
                if str(val) not in bi.available_variants():
                    raise UsageError(f"item {inst.item_id} has no {val} variant to splice from: sweep only "
                                     f"variants whose items have it, or use another --splice-from")
                src = bi.instance(str(val), inst.permutation, self.spec.perm_seed)
        plan = splice_plan(prepare(self.bundle, shown, self.template, seed).ids,
                           prepare(self.bundle, src, self.template, seed).ids, iv.splice_positions)
        return src, seed, plan.describe()

    @classmethod
    def from_dicts(cls, spec_dict: dict, item_dicts: List[dict], device: str) -> "ChunkRunner":
        """A runner from plain data (what a Ray actor receives)."""
        spec = SweepSpec.from_dict(spec_dict)
        spec.device = device
        return cls(spec, items=[BenchmarkItem.from_dict(d) for d in item_dicts])

    def compute_tuples(self, chunk: Sequence[tuple]) -> ChunkResult:
        """:meth:`compute` for instances given as plain tuples (index, item_id, variant, permutation, seed,
        init_seed)."""
        return self.compute([Instance(*x) for x in chunk])

    def batch_size(self, maxlen: int) -> int:
        return self.spec.batch_size or default_batch_size(self.bundle, maxlen)

    def compute(self, chunk: Sequence[Instance], on_batch: Optional[Callable[[int], None]] = None) -> ChunkResult:
        t0 = time.perf_counter()
        spec = self.spec
        shown = [self.items[x.item_id].instance(x.variant, x.permutation, spec.perm_seed) for x in chunk]
        # Group prompts of similar length into a batch (less padding); results go back in chunk order.
        lengths = [len(self.template.render(it.question, it.options)) for it in shown]
        order = sorted(range(len(chunk)), key=lambda i: (lengths[i], i))
        longest = shown[order[-1]]
        maxlen = len(self.bundle.tokenizer.encode(self.template.render(longest.question, longest.options),
                                                  add_special_tokens=False))
        bs = self.batch_size(maxlen)
        traces = [None] * len(chunk)
        baselines = [None] * len(chunk)  # an intervention sweep: the runs without the intervention
        spliced: List[Optional[str]] = [None] * len(chunk)
        trace_s = 0.0
        batches = padded = real = 0
        for start in range(0, len(order), bs):
            idx = order[start:start + bs]
            t1 = time.perf_counter()
            seeds = [chunk[i].init_seed for i in idx]
            out = trace_items(self.bundle, [shown[i] for i in idx], spec.steps, seeds=seeds,
                              init_scale=spec.init_scale, template=self.template, batch_size=len(idx))
            if self.intervention is not None:
                srcs = [self.splice_source(chunk[i], shown[i]) for i in idx]
                inter = trace_intervened(
                    self.bundle, [shown[i] for i in idx], self.intervention, spec.steps, seeds=seeds,
                    init_scale=spec.init_scale, template=self.template, batch_size=len(idx),
                    sources=[s[0] for s in srcs] if srcs and srcs[0] is not None else None,
                    source_seeds=[s[1] for s in srcs] if srcs and srcs[0] is not None else None)
                for i, b, s in zip(idx, out, srcs):
                    baselines[i] = b
                    if s is not None:
                        spliced[i] = s[2]
                out = inter
            trace_s += time.perf_counter() - t1
            lens = [len(tr.prompt_ids) for tr in out]
            padded += max(lens) * len(lens)
            real += sum(lens)
            batches += 1
            for i, tr in zip(idx, out):
                traces[i] = tr
            if on_batch is not None:
                on_batch(len(idx))
        table = build_rows(traces, chunk, self.bundle.name, self.bundle.checkpoint_hash, self.template.to_dict(),
                           spec.init_scale, self.intervention, baselines,
                           spliced if self.intervention is not None and self.intervention.kind == "splice" else None)
        hidden = np.stack([tr.hidden_last for tr in traces]).astype(np.float16) if spec.hidden else None
        return ChunkResult(chunk[0].index, table, hidden, trace_s, time.perf_counter() - t0, batches, padded, real)
