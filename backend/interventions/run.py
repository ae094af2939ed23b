"""Tracing with an intervention (:func:`trace_intervened`), beside its baseline (:func:`trace_with_baseline`),
as a page's run request (:class:`InterventionRequest`), and the CLI's text (:func:`format_result`)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..counterfactual import change_summary, compare
from ..errors import UsageError
from ..items import Item
from ..models import LoadedModel, PromptTemplate
from ..settings import DEFAULT_STEPS, LETTERS
from ..trace import Trace, check_steps, prepare, trace_items
from .hooks import capture_states, make_hook
from .positions import SplicePlan, splice_plan
from .spec import Intervention


class _IntervenedModel:
    """The bundle's model seen through an intervention: ``iterate_steps`` installs the hook for each batch.

    Rows are recognised by (prompt token ids, seed); splice sources are looked up the same way.  Every other
    attribute is the wrapped model's, so the tracer runs unchanged (batching, padding, readouts)."""

    def __init__(self, model, intervention: Intervention,
                 splice: Optional[Dict[Tuple[Tuple[int, ...], int], Tuple[Optional[torch.Tensor], SplicePlan]]] = None):
        self._model = model
        self._iv = intervention
        self._splice = splice or {}

    def __getattr__(self, name):
        return getattr(self._model, name)

    def iterate_steps(self, input_ids, num_steps, *, init_scale=1.0, seed=None, attention_mask=None, **kw):
        B, S = input_ids.shape
        seeds = [seed] * B if seed is None or isinstance(seed, int) else list(seed)
        sources = plans = None
        if self._iv.kind == "splice":
            lengths = [S] * B if attention_mask is None else [int(x) for x in attention_mask.sum(-1).tolist()]
            sources, plans = [], []
            for i in range(B):
                key = (tuple(int(x) for x in input_ids[i, S - lengths[i]:].tolist()), int(seeds[i] or 0))
                if key not in self._splice:
                    raise ValueError("no splice source was prepared for a row of this batch")
                src, plan = self._splice[key]
                sources.append(src)
                plans.append(plan)
        hook = make_hook(self._model, self._iv, seeds, init_scale=init_scale, splice_sources=sources,
                         splice_plans=plans)
        return self._model.iterate_steps(input_ids, num_steps, init_scale=init_scale, seed=seed,
                                         attention_mask=attention_mask, state_hook=hook, **kw)


def source_item(item: Item, splice_from: Optional[dict], benchmark_item=None) -> Tuple[Item, bool]:
    """The splice source's item for ``item`` and whether it also takes another seed (returned separately)."""
    if not splice_from:
        return item, False
    key, val = next(iter(splice_from.items()))
    if key == "seed":
        return item, True
    if key == "permutation":
        base = item
        if benchmark_item is not None and item.variant:
            return benchmark_item.instance(item.variant, int(val)), False
        if item.permutation:
            raise UsageError("splicing from another answer order of a permuted free-form question needs its "
                             "benchmark item")
        return base.permuted(int(val)), False
    if key == "variant":
        if benchmark_item is None:
            raise UsageError("splicing from another variant needs a benchmark item (--benchmark/--item)")
        return benchmark_item.instance(str(val), item.permutation), False
    raise UsageError(f"unknown splice source {key!r}")


def trace_intervened(
    bundle: LoadedModel,
    items: Sequence[Item],
    intervention: Intervention,
    steps: int = DEFAULT_STEPS,
    *,
    seeds=None,
    init_scale: float = 1.0,
    template: Optional[PromptTemplate] = None,
    sources: Optional[Sequence[Item]] = None,
    source_seeds: Optional[Sequence[Optional[int]]] = None,
    **trace_kwargs,
) -> List[Trace]:
    """Trace ``items`` with ``intervention`` applied (one pass per batch, like :func:`trace_items`).

    ``seeds`` as in :func:`trace_items` but resolved to ints (an intervention run needs a recorded seed).
    For a splice, ``sources[i]`` is item i's source item (default: the item itself) and ``source_seeds[i]`` its
    seed (default: the run's own seed)."""
    steps = check_steps(steps)
    intervention.check(steps)
    items = list(items)
    if not items:
        return []
    template = template or bundle.template
    seed_list = _seed_list(len(items), seeds, init_scale)
    splice = None
    if intervention.kind == "splice":
        splice = _prepare_splice(bundle, items, intervention, seed_list, init_scale, template, sources,
                                 source_seeds)
    hooked = replace(bundle, model=_IntervenedModel(bundle.model, intervention, splice))
    return trace_items(hooked, items, steps, seeds=seed_list, init_scale=init_scale, template=template,
                       **trace_kwargs)


def _seed_list(n: int, seeds, init_scale: float) -> List[int]:
    if seeds is None:
        if init_scale == 0.0:
            return [0] * n
        rng = np.random.default_rng()
        return [int(x) for x in rng.integers(0, 2**31 - 1, size=n)]
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        return [int(seeds)] * n
    seeds = list(seeds)
    if len(seeds) != n:
        raise UsageError(f"got {len(seeds)} seeds for {n} instances")
    return [0 if s is None else int(s) for s in seeds]


def _prepare_splice(bundle, items, iv: Intervention, seed_list, init_scale, template, sources, source_seeds):
    n = len(items)
    sources = list(sources) if sources is not None else [None] * n
    source_seeds = list(source_seeds) if source_seeds is not None else [None] * n
    if len(sources) != n or len(source_seeds) != n:
        raise UsageError(f"got {len(sources)} splice sources and {len(source_seeds)} source seeds for {n} items")
    j = iv.source_step
    table: Dict[Tuple[Tuple[int, ...], int], Tuple[Optional[torch.Tensor], SplicePlan]] = {}
    need: List[int] = []  # rows whose source state comes from a separate capture pass
    tgt_ids, src_ids, src_seed = [], [], []
    for i, it in enumerate(items):
        tp = prepare(bundle, it, template, seed_list[i])
        src = sources[i] or it
        sp = tp if src is it else prepare(bundle, src, template, seed_list[i])
        ss = seed_list[i] if source_seeds[i] is None else int(source_seeds[i])
        tgt_ids.append(tp.ids)
        src_ids.append(sp.ids)
        src_seed.append(ss)
        own = list(sp.ids) == list(tp.ids) and ss == seed_list[i]
        if not (own and j <= iv.at):
            need.append(i)
    captured: Dict[int, torch.Tensor] = {}
    if need:
        bs = 64
        for start in range(0, len(need), bs):
            rows = need[start:start + bs]
            states = capture_states(bundle.model, [src_ids[i] for i in rows], j, [src_seed[i] for i in rows],
                                    init_scale)
            captured.update(zip(rows, states))
    for i in range(n):
        plan = splice_plan(tgt_ids[i], src_ids[i], iv.splice_positions)
        key = (tuple(tgt_ids[i]), seed_list[i])
        entry = (captured.get(i), plan)
        if key in table and (table[key][1] != plan or (table[key][0] is None) != (entry[0] is None)):
            raise UsageError("two instances with the same prompt and seed have different splice sources: trace "
                             "them separately")
        table[key] = entry
    return table


@dataclass
class InterventionResult:
    """An intervened run, its baseline (same item, seed, steps) and what changed."""

    intervention: Intervention
    intervened: Trace
    baseline: Trace
    comparison: dict
    splice: Optional[dict] = None  # the splice plan (positions) for a splice

    def to_dict(self) -> dict:
        d = self.intervened.to_dict()
        d["baseline_probs"] = self.baseline.probs.tolist()
        d["baseline_metrics"] = self.baseline.metrics.summary()
        d["intervention"] = self.intervention.to_dict()
        if self.splice is not None:
            d["intervention"]["spliced"] = self.splice
        d["comparison"] = self.comparison
        m = self.intervened.metrics
        d.update({"final_answer": m.final_answer, "exploration_end": m.exploration_end, "backtracked": m.backtracked})
        return d


def trace_with_baseline(
    bundle: LoadedModel,
    item: Item,
    intervention: Intervention,
    steps: int = DEFAULT_STEPS,
    *,
    seed: Optional[int] = None,
    init_scale: float = 1.0,
    template: Optional[PromptTemplate] = None,
    source: Optional[Item] = None,
    source_seed: Optional[int] = None,
    benchmark_item=None,
    baseline: Optional[Trace] = None,
    **trace_kwargs,
) -> InterventionResult:
    """Trace one item with the intervention and without it (same seed and steps) and compare the two.

    The splice source is ``source`` / ``source_seed`` when given, else resolved from ``intervention.splice_from``
    (a variant needs ``benchmark_item``).  ``baseline``: the item's run without intervention when already traced
    (it must have the same prompt, seed, init scale and steps), so that only the intervened run is computed."""
    steps = check_steps(steps)
    intervention.check(steps)
    template = template or bundle.template
    (seed,) = _seed_list(1, seed, init_scale) if seed is None else [int(seed)]
    plan = None
    if intervention.kind == "splice" and source is None:
        source, other_seed = source_item(item, intervention.splice_from, benchmark_item)
        if other_seed:
            source_seed = int(intervention.splice_from["seed"])
    if intervention.kind == "splice":
        tp = prepare(bundle, item, template, seed)
        sp = prepare(bundle, source, template, seed)
        plan = splice_plan(tp.ids, sp.ids, intervention.splice_positions).to_dict()
    if baseline is not None:
        tp = prepare(bundle, item, template, seed)
        if (list(baseline.prompt_ids) != list(tp.ids) or baseline.seed != seed or baseline.steps != steps
                or float(baseline.init_scale) != float(init_scale)):
            raise UsageError("the given baseline is another run (prompt, seed, init scale or steps differ)")
        base = baseline
    else:
        (base,) = trace_items(bundle, [item], steps, seeds=seed, init_scale=init_scale, template=template,
                              **trace_kwargs)
    (inter,) = trace_intervened(bundle, [item], intervention, steps, seeds=[seed], init_scale=init_scale,
                                template=template, sources=None if source is None else [source],
                                source_seeds=None if source_seed is None else [source_seed], **trace_kwargs)
    return InterventionResult(intervention, inter, base, compare(inter.probs, base.probs, intervention.at,
                                                                 base.correct), plan)


@dataclass(frozen=True)
class InterventionRequest:
    """One intervened run as a page asks for it (the shape of :class:`backend.trace.TraceRequest`: ``items``,
    ``steps``, ``key(bundle)``, ``run(bundle, on_step)``), so the pages' run cache serves it too."""

    item: Item
    intervention: Intervention
    steps: int = DEFAULT_STEPS
    seed: int = 0
    init_scale: float = 1.0
    template: Optional[PromptTemplate] = None
    benchmark_item: object = None  # a BenchmarkItem (another variant as the splice source)
    baseline: Optional[Trace] = None

    @property
    def items(self) -> Tuple[Item, ...]:
        return (self.item,)

    def key(self, bundle) -> str:
        bi = None if self.benchmark_item is None else self.benchmark_item.to_dict()
        payload = json.dumps(["intervention", str(bundle.path), bundle.checkpoint_hash, self.item.to_dict(),
                              self.intervention.to_dict(), int(self.steps), int(self.seed), float(self.init_scale),
                              None if self.template is None else self.template.to_json(), bi], default=str)
        return hashlib.sha256(payload.encode()).hexdigest()

    def run(self, bundle, on_step=None) -> InterventionResult:
        return trace_with_baseline(bundle, self.item, self.intervention, self.steps, seed=self.seed,
                                   init_scale=self.init_scale, template=self.template,
                                   benchmark_item=self.benchmark_item, baseline=self.baseline, on_step=on_step)


def format_result(res: "InterventionResult") -> str:
    """The text the CLI prints for an intervened run: both runs' argmax and belief per step, then what changed."""
    b, p = res.baseline, res.intervened
    mb, mi = b.metrics, p.metrics
    lines = [f"model {b.model} ({b.checkpoint_hash}), {b.steps} steps, seed {b.seed}, init scale {b.init_scale}",
             f"intervention: {res.intervention.label()}"]
    if res.splice is not None:
        lines.append(f"spliced: {res.splice['description']}")
    lines.append(f"Q: {b.question}")
    lines += [f"  {LETTERS[i]}) {o}{'  (correct)' if b.correct == i else ''}" for i, o in enumerate(b.options)]
    lines.append("step  baseline  intervened  " + "  ".join(f"{LETTERS[i]:>6}" for i in range(b.n_options))
                 + "  (intervened belief)")
    for t in range(b.steps):
        mark = " <" if t + 1 == res.intervention.at else "  "
        row = "  ".join(f"{x:6.3f}" for x in p.probs[t])
        lines.append(f"{t + 1:4d}{mark}  {LETTERS[mb.argmax[t]]:>7}  {LETTERS[mi.argmax[t]]:>10}  {row}")
    lines.append(change_summary(res.comparison))
    return "\n".join(lines)
