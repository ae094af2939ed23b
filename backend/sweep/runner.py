"""The chunk runner: one loaded model computing chunks of instances into Arrow rows (in-process or in a Ray actor).

It knows nothing of results directories: a chunk goes in, a :class:`ChunkResult` (rows in the store's schema,
hidden states, timings) comes out.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import numpy as np
import pyarrow as pa
import torch

from ..items import BenchmarkItem
from ..models import PromptTemplate, load_bundle
from ..trace import default_batch_size, trace_items
from .spec import Instance, SweepSpec, load_items, template_hash
from .store import ROW_SCHEMA


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


def build_rows(traces, chunk: Sequence[Instance], bundle_name: str, checkpoint_hash: str, template: dict,
               init_scale: float) -> pa.Table:
    """One row per instance (in ``chunk`` order) from its Trace, in the store's :data:`ROW_SCHEMA`."""
    thash, tname = template_hash(template), template.get("name", "custom")
    rows = []
    for inst, tr in zip(chunk, traces):
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
        })
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
        trace_s = 0.0
        batches = padded = real = 0
        for start in range(0, len(order), bs):
            idx = order[start:start + bs]
            t1 = time.perf_counter()
            out = trace_items(self.bundle, [shown[i] for i in idx], spec.steps,
                              seeds=[chunk[i].init_seed for i in idx], init_scale=spec.init_scale,
                              template=self.template, batch_size=len(idx))
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
                           spec.init_scale)
        hidden = np.stack([tr.hidden_last for tr in traces]).astype(np.float16) if spec.hidden else None
        return ChunkResult(chunk[0].index, table, hidden, trace_s, time.perf_counter() - t0, batches, padded, real)
