"""Interventions on the latent state at one recurrent step, traced beside their baseline.

An :class:`Intervention` acts on s_k, the state after step k (1 <= k < K), before that step's readout.  It is
applied through the one run loop every family shares, ``iterate_steps(..., state_hook=hook)``, so it works for
every model family the engine implements (it only uses ``step``'s output and ``initial_state``):

``noise``   s_k + sigma * |s_k[pos]| / sqrt(E) * z at every real prompt position, z ~ N(0, I) from a generator
            seeded by (``noise_seed``, the run's own initial-state seed): the added vector at a position has an
            expected norm of about sigma times that position's state norm.  Drawn on the CPU in float32 for the
            row's real (unpadded) positions only, so a run gets the same noise alone or inside a padded batch.
``reset``   s_k := ``model.initial_state`` with the run's own seed (default) or ``reset_seed``.  With the run's
            own seed, step k + j reproduces the baseline's step j exactly.
``freeze``  the state stays s_k from step k on: the hook stores s_k and returns it at every t > k, so every
            later step's update is discarded and the readouts repeat (the family's ``step`` still runs; its
            output is replaced).
``splice``  s_k := the state at step j (``splice_step``, default k) of another run of the same item: another
            variant, answer order or initial-state seed (``splice_from``), or the run itself (``splice_from``
            None: with j < k the run's own earlier state, e.g. from before a backtrack).  Which positions are
            spliced (``splice_positions``):

            - ``"shared"`` (default): the shared prompt prefix and the shared prompt suffix (longest common
              runs of identical tokens at the start and at the end; the suffix always includes the last
              position, the one the readout reads); every other position keeps the run's own state.  When the
              two prompts are identical (another seed, or the run itself) this is every position.
            - ``"last"``: the last position only.
            - ``"all"``: every position; refused with a message naming what ``"shared"`` would splice when the
              two prompts differ in length.

Exact invariants (tests/test_interventions.py): noise with sigma 0 equals the baseline; splicing a run's own
state equals the baseline; reset at k with the run's own seed gives at k + j the baseline's belief at j; freeze
gives constant beliefs after k.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .errors import UsageError
from .items import Item
from .counterfactual import change_summary, compare  # noqa: F401  (re-exported)
from .models import LoadedModel, PromptTemplate
from .settings import DEFAULT_STEPS, LETTERS
from .trace import Trace, check_steps, prepare, trace_items

KINDS = ("noise", "reset", "freeze", "splice")
SPLICE_FROM_KEYS = ("variant", "permutation", "seed")
SPLICE_POSITIONS = ("shared", "last", "all")
SCHEMA = "looplens.intervention/1"


# ---------------------------------------------------------------------------------------------- description
@dataclass(frozen=True)
class Intervention:
    """One intervention at step ``at``; serialises to JSON (:meth:`to_dict` / :meth:`from_dict`).

    ``splice_from``: None (the run itself) or one of ``{"variant": V}``, ``{"permutation": P}``,
    ``{"seed": S}``: the other run of the same item whose state at ``splice_step`` is spliced in.
    """

    kind: str
    at: int
    sigma: Optional[float] = None  # noise
    noise_seed: int = 0  # noise
    reset_seed: Optional[int] = None  # reset: None = the run's own initial-state seed
    splice_from: Optional[Dict[str, object]] = None  # splice
    splice_step: Optional[int] = None  # splice: None = ``at``
    splice_positions: str = "shared"  # splice

    def __post_init__(self):
        if self.kind not in KINDS:
            raise UsageError(f"unknown intervention {self.kind!r}: use one of {', '.join(KINDS)}")
        if isinstance(self.at, bool) or not isinstance(self.at, (int, np.integer)) or self.at < 1:
            raise UsageError(f"the intervention step (at) must be a whole number >= 1, got {self.at!r}")
        object.__setattr__(self, "at", int(self.at))
        given = {"sigma": self.sigma is not None, "reset_seed": self.reset_seed is not None,
                 "splice_from": self.splice_from is not None, "splice_step": self.splice_step is not None}
        allowed = {"noise": {"sigma"}, "reset": {"reset_seed"}, "freeze": set(),
                   "splice": {"splice_from", "splice_step"}}[self.kind]
        extra = [k for k, v in given.items() if v and k not in allowed]
        if extra:
            raise UsageError(f"{', '.join(extra)} does not apply to a {self.kind} intervention")
        if self.kind == "noise":
            if self.sigma is None:
                raise UsageError("a noise intervention needs sigma (noise scale relative to the state's norm)")
            s = float(self.sigma)
            if not math.isfinite(s) or s < 0:
                raise UsageError(f"sigma must be a finite number >= 0, got {self.sigma}")
            object.__setattr__(self, "sigma", s)
        if self.kind == "splice":
            if self.splice_positions not in SPLICE_POSITIONS:
                raise UsageError(f"splice positions must be one of {', '.join(SPLICE_POSITIONS)}, "
                                 f"got {self.splice_positions!r}")
            if self.splice_from is not None:
                sf = dict(self.splice_from)
                if len(sf) != 1 or next(iter(sf)) not in SPLICE_FROM_KEYS:
                    raise UsageError("splice_from must name one of variant=V, permutation=P or seed=S")
                key, val = next(iter(sf.items()))
                if key != "variant":
                    if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 0:
                        raise UsageError(f"splice_from {key} must be a whole number >= 0, got {val!r}")
                    sf[key] = int(val)
                object.__setattr__(self, "splice_from", sf)
            if self.splice_step is not None:
                if isinstance(self.splice_step, bool) or not isinstance(self.splice_step, (int, np.integer)) \
                        or self.splice_step < 1:
                    raise UsageError(f"splice step must be a whole number >= 1, got {self.splice_step!r}")
                object.__setattr__(self, "splice_step", int(self.splice_step))

    @property
    def source_step(self) -> int:
        """The step of the splice source's state (``splice_step``, default ``at``)."""
        return self.splice_step if self.splice_step is not None else self.at

    def check(self, steps: int) -> "Intervention":
        """Refuse steps outside the run: 1 <= at < K, 1 <= splice step <= K."""
        if not 1 <= self.at < steps:
            raise UsageError(f"the intervention step must be between 1 and {steps - 1} for a {steps}-step run "
                             f"(it acts on s_k before later steps), got {self.at}")
        if self.kind == "splice" and not 1 <= self.source_step <= steps:
            raise UsageError(f"the splice step must be between 1 and {steps}, got {self.source_step}")
        return self

    def to_dict(self) -> dict:
        d = {"schema": SCHEMA, "kind": self.kind, "at": self.at}
        if self.kind == "noise":
            d.update(sigma=self.sigma, noise_seed=self.noise_seed)
        elif self.kind == "reset":
            d["reset_seed"] = self.reset_seed
        elif self.kind == "splice":
            d.update(splice_from=self.splice_from, splice_step=self.source_step,
                     splice_positions=self.splice_positions)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict) -> "Intervention":
        if not isinstance(d, dict):
            raise UsageError("an intervention must be a JSON object")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(d) - known - {"schema"})
        if unknown:
            raise UsageError(f"unknown intervention field(s): {', '.join(unknown)}")
        if "kind" not in d or "at" not in d:
            raise UsageError("an intervention needs 'kind' and 'at'")
        kw = {k: v for k, v in d.items() if k in known}
        if kw.get("kind") != "noise":
            kw.pop("noise_seed", None)
        if kw.get("kind") != "splice":
            kw.pop("splice_positions", None)
        return cls(**kw)

    def label(self) -> str:
        """A short human-readable description, e.g. 'noise sigma=0.5 at step 7'."""
        if self.kind == "noise":
            what = f"noise sigma={self.sigma:g}"
        elif self.kind == "reset":
            what = "reset to s_0" + ("" if self.reset_seed is None else f" (seed {self.reset_seed})")
        elif self.kind == "freeze":
            what = "freeze"
        else:
            src = "this run" if not self.splice_from else ", ".join(f"{k} {v}" for k, v in self.splice_from.items())
            what = f"splice ({src}, step {self.source_step}, {self.splice_positions} positions)"
        return f"{what} at step {self.at}"


# ---------------------------------------------------------------------------------------------- positions
@dataclass(frozen=True)
class SplicePlan:
    """Which target positions receive which source positions (indices into the real, unpadded prompts)."""

    target: Tuple[int, ...]
    source: Tuple[int, ...]
    target_len: int
    source_len: int
    prefix: int  # shared prefix length (positions 0..prefix-1)
    suffix: int  # shared suffix length (the last ``suffix`` positions, >= 1: the last position always)

    def describe(self) -> str:
        if self.target_len == self.source_len and len(self.target) == self.target_len:
            return f"all {self.target_len} positions"
        parts = []
        if self.prefix:
            parts.append(f"the shared prefix (positions 0-{self.prefix - 1})")
        n = self.target_len
        if self.suffix > 1:
            parts.append(f"the shared suffix (positions {n - self.suffix}-{n - 1} of {n}, the last included)")
        else:
            parts.append(f"the last position ({n - 1})")
        return " and ".join(parts)

    def to_dict(self) -> dict:
        return {"positions": list(self.target), "source_positions": list(self.source), "prefix": self.prefix,
                "suffix": self.suffix, "target_len": self.target_len, "source_len": self.source_len,
                "description": self.describe()}


def splice_plan(target_ids: Sequence[int], source_ids: Sequence[int], mode: str = "shared") -> SplicePlan:
    """The positions spliced from a source prompt into a target prompt (see the module docstring)."""
    t, s = list(target_ids), list(source_ids)
    n, m = len(t), len(s)
    if n == 0 or m == 0:
        raise UsageError("cannot splice an empty prompt")
    p = 0
    while p < min(n, m) and t[p] == s[p]:
        p += 1
    q = 0
    while q < min(n, m) - p and t[n - 1 - q] == s[m - 1 - q]:
        q += 1
    q = max(q, 1)  # the last position always
    if p >= min(n, m) and n == m:
        q = 0  # identical prompts: the prefix is everything
    shared = SplicePlan(
        target=tuple(list(range(min(p, n - q))) + list(range(n - q, n))),
        source=tuple(list(range(min(p, n - q))) + list(range(m - q, m))),
        target_len=n, source_len=m, prefix=min(p, n - q), suffix=q)
    if mode == "shared":
        return shared
    if mode == "last":
        return SplicePlan((n - 1,), (m - 1,), n, m, 0, 1)
    if mode == "all":
        if n != m:
            raise UsageError(
                f"cannot splice all positions: the prompts have {n} and {m} tokens. Use splice positions 'shared' "
                f"(it would splice {shared.describe()}) or 'last'")
        return SplicePlan(tuple(range(n)), tuple(range(n)), n, m, n, 0)
    raise UsageError(f"splice positions must be one of {', '.join(SPLICE_POSITIONS)}, got {mode!r}")


# ---------------------------------------------------------------------------------------------- hooks
def _row_lengths(prompt, B: int, S: int) -> List[int]:
    am = getattr(prompt, "attention_mask", None)
    return [S] * B if am is None else [int(x) for x in am.sum(-1).tolist()]


def noise_generator_seed(noise_seed: int, run_seed: Optional[int]) -> int:
    """The seed of one run's noise: derived from the intervention's noise seed and the run's own seed."""
    return int(np.random.SeedSequence([int(noise_seed), int(run_seed or 0)]).generate_state(1)[0])


def add_relative_noise(state: torch.Tensor, lengths: Sequence[int], sigma: float,
                       seeds: Sequence[int]) -> torch.Tensor:
    """state + sigma * |state[pos]| / sqrt(E) * z on each row's real positions (z from a per-row generator)."""
    B, S, E = state.shape
    out = state.clone()
    for i, n in enumerate(lengths):
        g = torch.Generator().manual_seed(int(seeds[i]))
        z = torch.randn(int(n), E, generator=g, dtype=torch.float32).to(state.device)
        real = state[i, S - n:].float()
        scale = sigma * real.norm(dim=-1, keepdim=True) / math.sqrt(E)
        out[i, S - n:] = (real + scale * z).to(state.dtype)
    return out


def splice_rows(state: torch.Tensor, lengths: Sequence[int], sources: Sequence[torch.Tensor],
                plans: Sequence[SplicePlan]) -> torch.Tensor:
    """Copy each row's planned source positions into its state (real positions, left padding)."""
    B, S, E = state.shape
    out = state.clone()
    for i, (n, src, plan) in enumerate(zip(lengths, sources, plans)):
        if plan.target_len != n or src.shape[0] != plan.source_len:
            raise ValueError(f"row {i}: the splice plan does not fit ({plan.target_len}/{n} target, "
                             f"{plan.source_len}/{src.shape[0]} source positions)")
        tgt = torch.tensor(plan.target, dtype=torch.long, device=state.device) + (S - n)
        srcpos = torch.tensor(plan.source, dtype=torch.long, device=src.device)
        out[i, tgt] = src[srcpos].to(device=state.device, dtype=state.dtype)
    return out


def make_hook(model, intervention: Intervention, seeds: Sequence[Optional[int]], *, init_scale: float = 1.0,
              splice_sources: Optional[Sequence[Optional[torch.Tensor]]] = None,
              splice_plans: Optional[Sequence[SplicePlan]] = None):
    """A ``state_hook(t, state, prompt)`` for ``model.iterate_steps`` applying ``intervention`` to every row.

    ``seeds``: each row's initial-state seed (reset's default; part of the noise seed).  For a splice,
    ``splice_sources[i]`` is row i's source state [source_len, E] (real positions) or None to take the run's own
    state at ``splice_step`` during this pass (only for splice_step <= at), and ``splice_plans[i]`` its plan.
    """
    iv = intervention
    k = iv.at
    seeds = [0 if s is None else int(s) for s in seeds]
    memo: Dict[str, object] = {}

    def hook(t: int, state: torch.Tensor, prompt) -> Optional[torch.Tensor]:
        B, S, _ = state.shape
        if len(seeds) != B:
            raise ValueError(f"the hook was built for {len(seeds)} rows, the batch has {B}")
        if iv.kind == "freeze":
            if t == k:
                memo["frozen"] = state.clone()
            return memo["frozen"] if t > k else None
        if iv.kind == "splice" and splice_sources is not None and t == iv.source_step and t <= k:
            # the run's own earlier state, for rows without an external source
            memo["own"] = state.clone()
        if t != k:
            return None
        lengths = _row_lengths(prompt, B, S)
        if iv.kind == "noise":
            return add_relative_noise(state, lengths, iv.sigma,
                                      [noise_generator_seed(iv.noise_seed, s) for s in seeds])
        if iv.kind == "reset":
            rs = seeds if iv.reset_seed is None else [int(iv.reset_seed)] * B
            return model.initial_state(prompt, init_scale, rs)
        if iv.kind == "splice":
            if splice_sources is None or splice_plans is None:
                raise ValueError("a splice hook needs splice_sources and splice_plans")
            own = memo.get("own")
            srcs = []
            for i, src in enumerate(splice_sources):
                if src is None:
                    if own is None:
                        raise ValueError("the run's own state at a later step must be captured beforehand")
                    src = own[i, S - lengths[i]:]
                srcs.append(src)
            return splice_rows(state, lengths, srcs, splice_plans)
        return None

    return hook


def _pad(id_lists: Sequence[Sequence[int]]) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    B, S = len(id_lists), max(len(x) for x in id_lists)
    ids = torch.zeros((B, S), dtype=torch.long)
    mask = torch.zeros((B, S), dtype=torch.bool)
    for i, x in enumerate(id_lists):
        ids[i, S - len(x):] = torch.tensor(list(x))
        mask[i, S - len(x):] = True
    return ids, (None if bool(mask.all()) else mask)


def capture_states(model, id_lists: Sequence[Sequence[int]], step: int, seeds: Sequence[Optional[int]],
                   init_scale: float = 1.0) -> List[torch.Tensor]:
    """Each prompt's full-precision state after ``step`` steps (real positions only): one forward, no readout."""
    ids, mask = _pad(id_lists)
    seeds = [0 if s is None else int(s) for s in seeds]
    (last,) = list(model.iterate_steps(ids, step, init_scale=init_scale, seed=seeds, attention_mask=mask,
                                       readout_every_step=False))
    S = ids.shape[1]
    return [last.state[i, S - len(x):].clone() for i, x in enumerate(id_lists)]


# ---------------------------------------------------------------------------------------------- tracing
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


# ---------------------------------------------------------------------------------------------- command line
def parse_splice_from(text: Optional[str]) -> Optional[Dict[str, object]]:
    """``variant=V``, ``permutation=P`` or ``seed=S`` -> a splice source (None stays None)."""
    if text is None:
        return None
    key, sep, val = str(text).partition("=")
    key, val = key.strip(), val.strip()
    if not sep or key not in SPLICE_FROM_KEYS or not val:
        raise UsageError(f"--splice-from must be variant=V, permutation=P or seed=S, got {text!r}")
    if key == "variant":
        return {key: val}
    try:
        return {key: int(val)}
    except ValueError:
        raise UsageError(f"--splice-from {key} must be a whole number, got {val!r}") from None


def add_cli_arguments(p, sweep: bool = False) -> None:
    """The intervention options of ``python -m backend trace`` (and, the same grammar, of ``sweep``: every
    instance is run with the intervention and beside its baseline; ``--splice-from seed=S`` is then the seed
    index S of the same instance)."""
    g = p.add_argument_group(
        "intervention (run every instance with an intervention beside its baseline; rows get intervention columns)"
        if sweep else "intervention (trace the run with an intervention beside its baseline)")
    g.add_argument("--intervene", choices=KINDS, default=None,
                   help="act on the latent state at step --at: noise, reset (to an initial state), freeze, splice")
    g.add_argument("--at", type=int, default=None, help="the step k of the intervention, 1 <= k < steps")
    g.add_argument("--sigma", type=float, default=None, help="noise scale relative to the state's norm per position")
    g.add_argument("--noise-seed", type=int, default=None, help="seed of the noise (default 0)")
    g.add_argument("--reset-seed", type=int, default=None,
                   help="reset to the initial state of this seed (default: the run's own)")
    g.add_argument("--splice-from", default=None, metavar="variant=V|permutation=P|seed=S",
                   help="splice the state of another run of the same item (default: this run)")
    g.add_argument("--splice-step", type=int, default=None, help="the source run's step (default: --at)")
    g.add_argument("--splice-positions", choices=SPLICE_POSITIONS, default=None,
                   help="shared (prompt prefix + suffix, default), last, or all positions")


def intervention_from_args(a) -> Optional[Intervention]:
    """The intervention the trace options ask for, or None; a bad combination is a one-line UsageError."""
    opts = {"--at": a.at, "--sigma": a.sigma, "--noise-seed": a.noise_seed, "--reset-seed": a.reset_seed,
            "--splice-from": a.splice_from, "--splice-step": a.splice_step,
            "--splice-positions": a.splice_positions}
    given = [k for k, v in opts.items() if v is not None]
    if a.intervene is None:
        if given:
            raise UsageError(f"{', '.join(given)} {'needs' if len(given) == 1 else 'need'} --intervene "
                             "noise|reset|freeze|splice")
        return None
    if a.at is None:
        raise UsageError(f"--intervene {a.intervene} needs --at K (the step of the intervention)")
    allowed = {"noise": {"--sigma", "--noise-seed"}, "reset": {"--reset-seed"}, "freeze": set(),
               "splice": {"--splice-from", "--splice-step", "--splice-positions"}}[a.intervene]
    extra = [k for k in given if k != "--at" and k not in allowed]
    if extra:
        raise UsageError(f"{', '.join(extra)} {'does' if len(extra) == 1 else 'do'} not apply to --intervene "
                             f"{a.intervene}")
    kw: Dict[str, object] = {}
    if a.intervene == "noise":
        if a.sigma is None:
            raise UsageError("--intervene noise needs --sigma X (noise scale relative to the state's norm)")
        kw.update(sigma=a.sigma, noise_seed=a.noise_seed or 0)
    elif a.intervene == "reset":
        kw["reset_seed"] = a.reset_seed
    elif a.intervene == "splice":
        kw.update(splice_from=parse_splice_from(a.splice_from), splice_step=a.splice_step,
                  splice_positions=a.splice_positions or "shared")
    return Intervention(a.intervene, a.at, **kw)
