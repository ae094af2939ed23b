"""Tracing: run a looped model on multiple-choice questions and record its belief after every recurrent step.

:class:`Trace` is the one data object per traced run that every plot, metric and export reads; :class:`TraceSet`
is the one for a set of runs (seeds, answer orders, variants): stacked beliefs ``[N, K, n]``, grouping by
variant, belief and entropy bands (:class:`Band`, :class:`BeliefBand`) and the CSV/JSON exports.
:class:`TraceRequest` is one run as asked for (items, steps, seeds, init scale, template); its ``key`` names the
result, so a cache can find it.

One forward per batch: the prelude runs once, the core K times, and each step is read out as it is computed
(never a re-run per step).  Many instances (permutations, seeds, items) run as one left-padded batch with an
attention mask and give the same numbers as each run alone.
"""
from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union, overload

import numpy as np
import pandas as pd
import torch

from .errors import LoopLensError, PromptTooLongError, UsageError
from .fit import check_readable
from .items import Item
from .metrics import TrajectoryMetrics, analyze_trajectory, entropy
from .models import LoadedModel, PromptTemplate, resolve_option_tokens
from .stats import bootstrap_ci

from .settings import DEFAULT_STEPS, MAX_STEPS, MIN_STEPS  # noqa: F401  (re-exported)
TOP_K = 10
SCHEMA = "looplens.trace/1"
EXPORT_SCHEMA = "looplens.export/1"  # a set of runs exported as JSON
# Instances per forward: bounded by the activations of one batch (B x S x E floats, a few copies live at once).
ACTIVATION_BUDGET = 2**28  # elements, ~1 GiB in float32


class NumericalError(LoopLensError):
    """The model produced NaN/inf; ``partial`` holds the traces up to the last finite step."""

    def __init__(self, message: str, partial: List["Trace"]):
        super().__init__(message)
        self.partial = partial


def check_steps(steps) -> int:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
        raise UsageError(f"steps must be a whole number, got {steps!r}")
    if not MIN_STEPS <= int(steps) <= MAX_STEPS:
        raise UsageError(f"steps must be between {MIN_STEPS} and {MAX_STEPS}, got {steps}")
    return int(steps)


@dataclass
class Trace:
    """Everything recorded for one instance (item x variant x permutation x seed) over K recurrent steps."""

    model: str
    checkpoint_hash: str
    question: str
    options: List[str]  # in the order shown to the model
    correct: Optional[int]  # index in that order, or None (no correct option)
    steps: int
    seed: Optional[int]
    init_scale: float
    template: dict
    prompt: str
    prompt_ids: List[int]
    option_token_ids: List[List[int]]
    raw_mass: np.ndarray  # [K, n] probability of each option's tokens in the full-vocabulary softmax
    probs: np.ndarray  # [K, n] belief: raw_mass renormalised over the options
    top_ids: np.ndarray  # [K, top_k] most probable tokens of the full distribution
    top_probs: np.ndarray  # [K, top_k]
    top_tokens: List[List[str]]  # decoded top_ids
    hidden_last: np.ndarray  # [K, E] float16, latent state s_t at the last position
    hidden_all: Optional[np.ndarray] = None  # [K, S, E] float16, every prompt position (on request)
    item_id: Optional[str] = None
    domain: Optional[str] = None
    variant: Optional[str] = None
    permutation: int = 0
    order: List[int] = field(default_factory=list)  # shown option i = original option order[i]
    option_labels: List[str] = field(default_factory=list)
    # [K] the model's own probability of exiting at each step (Ouro's exit gate; sums to 1 over a full run), or
    # None for a family without an exit gate
    exit_probs: Optional[np.ndarray] = None
    _metrics: Optional[TrajectoryMetrics] = field(default=None, repr=False, compare=False)

    @property
    def n_options(self) -> int:
        return len(self.options)

    @property
    def letter_mass(self) -> np.ndarray:
        """Total mass of all option tokens per step (low = the step is not yet 'answering')."""
        return self.raw_mass.sum(axis=1)

    @property
    def metrics(self) -> TrajectoryMetrics:
        """Metrics with the default thresholds (cached); call :meth:`analyze` for other thresholds."""
        if self._metrics is None:
            self._metrics = analyze_trajectory(self.probs, self.correct, mass=self.letter_mass)
        return self._metrics

    def analyze(self, **params) -> TrajectoryMetrics:
        return analyze_trajectory(self.probs, self.correct, mass=self.letter_mass, **params)

    def with_metrics(self, **params) -> "Trace":
        """The same run whose :attr:`metrics` use ``params`` (e.g. ``run_length``): for views that read
        ``trace.metrics`` under a setting the user chose (the run itself is shared, never changed)."""
        return Trace(**{**self._fields(), "_metrics": self.analyze(**params)})

    def truncated(self, steps: int) -> "Trace":
        """The same run seen up to ``steps`` (for live display while a run is under way)."""
        k = steps
        return Trace(**{**self._fields(), "steps": k, "raw_mass": self.raw_mass[:k], "probs": self.probs[:k],
                        "top_ids": self.top_ids[:k], "top_probs": self.top_probs[:k],
                        "top_tokens": self.top_tokens[:k], "hidden_last": self.hidden_last[:k],
                        "hidden_all": None if self.hidden_all is None else self.hidden_all[:k],
                        "exit_probs": None if self.exit_probs is None else self.exit_probs[:k]})

    def _fields(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "_metrics"}

    # ------------------------------------------------------------------ export
    def to_dict(self, include_hidden: bool = False) -> dict:
        d = {"schema": SCHEMA}
        for k, v in self._fields().items():
            if k in ("hidden_last", "hidden_all"):
                continue
            d[k] = v.tolist() if isinstance(v, np.ndarray) else v
        d["letter_mass"] = self.letter_mass.tolist()
        d["metrics"] = self.metrics.summary()
        d["metrics"]["entropy"] = self.metrics.entropy.tolist()
        d["metrics"]["kl"] = self.metrics.kl.tolist()
        if include_hidden:
            d["hidden_last"] = self.hidden_last.astype(np.float32).tolist()
        return d

    def to_json(self, include_hidden: bool = False) -> str:
        return json.dumps(self.to_dict(include_hidden))

    @classmethod
    def from_dict(cls, d: dict) -> "Trace":
        if d.get("schema") != SCHEMA:
            raise UsageError(f"not a LoopLens trace (schema {d.get('schema')!r}, expected {SCHEMA!r})")
        kw = {k: d[k] for k in cls.__dataclass_fields__ if k in d and k not in ("_metrics",)}
        for k in ("raw_mass", "probs", "top_probs"):
            kw[k] = np.asarray(kw[k], dtype=np.float64)
        kw["top_ids"] = np.asarray(kw["top_ids"], dtype=np.int64)
        if kw.get("exit_probs") is not None:
            kw["exit_probs"] = np.asarray(kw["exit_probs"], dtype=np.float64)
        hl = d.get("hidden_last")
        kw["hidden_last"] = np.asarray(hl, dtype=np.float16) if hl is not None else np.zeros((kw["steps"], 0), np.float16)
        kw["hidden_all"] = None
        return cls(**kw)

    def to_frame(self):
        """One row per (step, option): belief, raw mass, argmax, plus run parameters (for CSV export)."""
        m = self.metrics
        rows = []
        for t in range(self.steps):
            for i, opt in enumerate(self.options):
                rows.append({
                    "step": t + 1, "option_index": i, "letter": "ABCDEFGHIJ"[i], "option": opt,
                    "belief": float(self.probs[t, i]), "raw_mass": float(self.raw_mass[t, i]),
                    "is_argmax": int(m.argmax[t]) == i, "is_correct_option": self.correct == i,
                    "entropy": float(m.entropy[t]), "kl_to_prev": float(m.kl[t - 1]) if t > 0 else np.nan,
                })
        df = pd.DataFrame(rows)
        if self.exit_probs is not None:  # the model's own probability of exiting at that step (Ouro)
            df["exit_prob"] = np.repeat(np.asarray(self.exit_probs, dtype=np.float64), self.n_options)
        for k in ("model", "checkpoint_hash", "item_id", "variant", "permutation", "seed", "init_scale", "steps"):
            df[k] = getattr(self, k)
        df["question"] = self.question
        return df


def convergence_map(hidden_all: np.ndarray) -> np.ndarray:
    """Relative distance of each position's state to its final state per step: [K, S] (the Huginn authors' view)."""
    h = np.asarray(hidden_all, dtype=np.float32)
    final = h[-1]
    return np.linalg.norm(h - final[None], axis=-1) / (np.linalg.norm(final, axis=-1)[None] + 1e-6)


# ---------------------------------------------------------------------------------------------- a set of runs
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _neutralise_formula(v):
    return "'" + v if isinstance(v, str) and v.startswith(_FORMULA_START) else v

@dataclass(frozen=True)
class Band:
    """A statistic per step over a set of runs with its bootstrap interval: ``mean``, ``lo``, ``hi`` (same shape)
    and ``n``, the number of runs.  Unpacks as ``mean, lo, hi``."""

    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    n: int

    def __iter__(self):
        return iter((self.mean, self.lo, self.hi))


@dataclass(frozen=True)
class BeliefBand(Band):
    """Mean belief per step and option ``[K, n]`` in the item's original option order, with its interval."""

    options: Tuple[str, ...]  # in the original order
    correct: Optional[int]  # index in the original order, or None


class TraceSet(Sequence):
    """Several runs read together (seeds, answer orders, variants of one item): an immutable sequence of
    :class:`Trace` with the statistics the set-of-runs views need."""

    def __init__(self, traces: Sequence[Trace] = ()):
        self.traces: Tuple[Trace, ...] = tuple(traces)

    @overload
    def __getitem__(self, i: int) -> Trace: ...

    @overload
    def __getitem__(self, i: slice) -> "TraceSet": ...

    def __getitem__(self, i):
        return TraceSet(self.traces[i]) if isinstance(i, slice) else self.traces[i]

    def __len__(self) -> int:
        return len(self.traces)

    def __iter__(self) -> Iterator[Trace]:
        return iter(self.traces)

    def __repr__(self) -> str:
        return f"TraceSet({len(self)} runs)"

    def _stack(self, arrays: List[np.ndarray]) -> np.ndarray:
        if not arrays:
            raise UsageError("an empty set of runs has no beliefs to stack")
        if len({a.shape for a in arrays}) > 1:
            raise UsageError("the runs differ in steps or number of options: stack runs of one question and length")
        return np.stack(arrays).astype(np.float64, copy=False)

    @property
    def probs(self) -> np.ndarray:
        """Beliefs ``[N, K, n]`` in the order each run showed its options."""
        return self._stack([np.asarray(t.probs) for t in self.traces])

    @property
    def original_order_probs(self) -> np.ndarray:
        """Beliefs ``[N, K, n]`` with columns in the item's original option order (permutations undone)."""
        out = []
        for t in self.traces:
            p = np.asarray(t.probs)
            order = list(t.order) or list(range(p.shape[1]))
            q = np.empty_like(p)
            q[:, order] = p
            out.append(q)
        return self._stack(out)

    def by_variant(self) -> Dict[str, "TraceSet"]:
        """The runs grouped by variant (``base`` for a run without one), in order of first appearance."""
        groups: Dict[str, List[Trace]] = {}
        for t in self.traces:
            groups.setdefault(t.variant or "base", []).append(t)
        return {v: TraceSet(ts) for v, ts in groups.items()}

    def belief_band(self, n_boot: int = 2000, ci: float = 0.95, seed: int = 0) -> BeliefBand:
        """Mean belief per step and original option over the runs, with a percentile bootstrap interval."""
        mean, lo, hi = bootstrap_ci(self.original_order_probs, n_boot=n_boot, ci=ci, seed=seed)
        t0 = self.traces[0]
        order = list(t0.order) or list(range(t0.n_options))
        options: List[str] = [""] * t0.n_options
        for i, j in enumerate(order):
            options[j] = t0.options[i]
        correct = None if t0.correct is None else order[t0.correct]
        return BeliefBand(mean=mean, lo=lo, hi=hi, n=len(self), options=tuple(options), correct=correct)

    def entropy_band(self, n_boot: int = 2000, ci: float = 0.95, seed: int = 0, normalise: bool = False) -> Band:
        """Mean per-step entropy of the belief over the runs, with a percentile bootstrap interval (``[K]`` each)."""
        ps = self.probs
        H = np.stack([entropy(p) for p in ps])
        if normalise:
            H = H / np.log(ps.shape[2])
        mean, lo, hi = bootstrap_ci(H, n_boot=n_boot, ci=ci, seed=seed)
        return Band(mean=mean, lo=lo, hi=hi, n=len(self))

    # ------------------------------------------------------------------ export
    def to_json(self, parameters: Optional[dict] = None) -> str:
        """Every run (all parameters, seed, beliefs, masses, metrics) as one JSON document."""
        return json.dumps({"schema": EXPORT_SCHEMA, "parameters": parameters or {},
                           "traces": [t.to_dict() for t in self.traces]}, indent=1)

    def to_frame(self, parameters: Optional[dict] = None) -> pd.DataFrame:
        """One row per (run, step, option) with every run parameter and the seed in columns."""
        frames = []
        for j, t in enumerate(self.traces):
            df = t.to_frame()
            df.insert(0, "run", j)
            df["template"] = json.dumps(t.template)
            for k, v in (parameters or {}).items():
                df[k] = v if np.isscalar(v) or v is None else json.dumps(v)
            frames.append(df)
        return pd.concat(frames, ignore_index=True)

    def to_csv(self, parameters: Optional[dict] = None) -> str:
        """:meth:`to_frame` as CSV, safe to open in a spreadsheet: a text cell starting with ``= + - @`` (or a tab
        or carriage return) gets a leading ``'`` so it is shown as text, never run as a formula."""
        df = self.to_frame(parameters)
        for col in df.columns:
            if df[col].dtype == object or pd.api.types.is_string_dtype(df[col]):
                df[col] = df[col].map(_neutralise_formula)
        return df.to_csv(index=False)


# ---------------------------------------------------------------------------------------------- tracing
@dataclass
class _Prepared:
    item: Item
    prompt: str
    ids: List[int]
    option_tokens: List[List[int]]
    labels: List[str]
    seed: Optional[int]


def _resolve_seeds(n: int, seeds, init_scale: float) -> List[Optional[int]]:
    if seeds is None:
        if init_scale == 0.0:
            return [None] * n
        return [secrets.randbelow(2**31 - 1) for _ in range(n)]
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        return [int(seeds)] * n
    seeds = list(seeds)
    if len(seeds) != n:
        raise UsageError(f"got {len(seeds)} seeds for {n} instances")
    return [None if s is None else int(s) for s in seeds]


def prepare(bundle: LoadedModel, item: Item, template: PromptTemplate, seed: Optional[int]) -> _Prepared:
    # words the model does not know would be read as its unknown token: a meaningless trace, refused by name
    # before any model work (trace_items prepares every item first; the app shows this message, no progress)
    check_readable(bundle.tokenizer, item.question, item.options, bundle.path.name)
    prompt = template.render(item.question, item.options)
    ids = bundle.tokenizer.encode(prompt, add_special_tokens=False)
    if not ids:
        raise UsageError("the prompt encodes to no tokens")
    limit = bundle.model.config.block_size
    if len(ids) > limit:
        raise PromptTooLongError(
            f"the prompt has {len(ids)} tokens but {bundle.name} reads at most {limit}: shorten the question or options"
        )
    ot = resolve_option_tokens(bundle.tokenizer, template, item.options)
    return _Prepared(item, prompt, ids, ot.ids, ot.labels, seed)


def default_batch_size(bundle: LoadedModel, seq_len: int) -> int:
    cfg = bundle.model.config
    per_row = seq_len * max(cfg.n_embd * 8, cfg.intermediate_size * 4)
    return int(max(1, min(256, ACTIVATION_BUDGET // max(per_row, 1))))


def trace_items(
    bundle: LoadedModel,
    items: Sequence[Item],
    steps: int = DEFAULT_STEPS,
    *,
    seeds: Union[None, int, Sequence[Optional[int]]] = None,
    init_scale: float = 1.0,
    template: Optional[PromptTemplate] = None,
    top_k: int = TOP_K,
    keep_all_states: bool = False,
    batch_size: Optional[int] = None,
    on_step: Optional[Callable[[int, List["Trace"]], None]] = None,
) -> List[Trace]:
    """Trace every item for ``steps`` recurrent steps; returns one :class:`Trace` per item, in order.

    ``seeds``: None (a fresh recorded seed per instance when ``init_scale > 0``), one int for all, or one per
    item.  ``on_step(t, traces_so_far)`` is called after each step of each batch (live display, progress).
    """
    steps = check_steps(steps)
    if not np.isfinite(init_scale) or init_scale < 0:
        raise UsageError(f"init_scale must be a finite number >= 0, got {init_scale}")
    items = list(items)
    if not items:
        return []
    template = template or bundle.template
    seed_list = _resolve_seeds(len(items), seeds, init_scale)
    prepared = [prepare(bundle, it, template, s) for it, s in zip(items, seed_list)]
    maxlen = max(len(p.ids) for p in prepared)
    bs = batch_size or default_batch_size(bundle, maxlen)
    out: List[Trace] = []
    for start in range(0, len(prepared), bs):
        chunk = prepared[start:start + bs]
        done = list(out)

        def report(t, partial, done=done):
            on_step(t, done + partial)

        out.extend(_trace_batch(bundle, chunk, steps, init_scale, template, top_k, keep_all_states,
                                report if on_step is not None else None))
    return out


def _trace_batch(bundle, chunk: List[_Prepared], steps, init_scale, template, top_k, keep_all_states, report):
    model = bundle.model
    tok = bundle.tokenizer
    B = len(chunk)
    S = max(len(p.ids) for p in chunk)
    pad_id = 0
    ids = torch.full((B, S), pad_id, dtype=torch.long)
    mask = torch.zeros((B, S), dtype=torch.bool)
    for i, p in enumerate(chunk):
        ids[i, S - len(p.ids):] = torch.tensor(p.ids)
        mask[i, S - len(p.ids):] = True
    padded = not bool(mask.all())
    n_opts = [len(p.option_tokens) for p in chunk]
    E = model.config.n_embd
    raw = [np.zeros((steps, n), np.float64) for n in n_opts]
    belief = [np.zeros((steps, n), np.float64) for n in n_opts]
    k = min(top_k, model.config.vocab_size)
    top_ids = np.zeros((B, steps, k), np.int64)
    top_p = np.zeros((B, steps, k), np.float64)
    hidden_last = np.zeros((B, steps, E), np.float16)
    hidden_all = [np.zeros((steps, len(p.ids), E), np.float16) for p in chunk] if keep_all_states else None
    exit_probs: Optional[np.ndarray] = None  # [B, steps], allocated when the model reports an exit gate
    # Gather index for the option tokens of every row: [B, options, spellings], with a mask for the padding.
    n_max = max(n_opts)
    m_max = max(len(toks) for p in chunk for toks in p.option_tokens)
    opt_idx = torch.zeros((B, n_max, m_max), dtype=torch.long)
    opt_mask = torch.zeros((B, n_max, m_max), dtype=torch.float64)
    for i, p in enumerate(chunk):
        for j, toks in enumerate(p.option_tokens):
            opt_idx[i, j, :len(toks)] = torch.tensor(toks)
            opt_mask[i, j, :len(toks)] = 1.0
    opt_idx = opt_idx.to(model.device)
    opt_mask = opt_mask.to(model.device)
    seeds = [p.seed if p.seed is not None else 0 for p in chunk]
    last_t = 0
    decoded: Dict[int, str] = {}

    def decode_rows(rows) -> List[List[str]]:
        new = sorted({int(t) for t in np.unique(rows)} - decoded.keys())
        if new:
            decoded.update(zip(new, tok.batch_decode([[t] for t in new])))
        return [[decoded[int(t)] for t in row] for row in rows]

    def build(upto: int) -> List[Trace]:
        res = []
        for i, p in enumerate(chunk):
            it = p.item
            res.append(Trace(
                model=bundle.name, checkpoint_hash=bundle.checkpoint_hash, question=it.question,
                options=list(it.options), correct=it.correct, steps=upto, seed=p.seed, init_scale=float(init_scale),
                template=template.to_dict(), prompt=p.prompt, prompt_ids=list(p.ids),
                option_token_ids=[list(x) for x in p.option_tokens], raw_mass=raw[i][:upto], probs=belief[i][:upto],
                top_ids=top_ids[i, :upto], top_probs=top_p[i, :upto],
                top_tokens=decode_rows(top_ids[i, :upto]),
                hidden_last=hidden_last[i, :upto],
                hidden_all=None if hidden_all is None else hidden_all[i][:upto],
                item_id=it.id, domain=it.domain, variant=it.variant, permutation=it.permutation,
                order=list(it.order), option_labels=list(p.labels),
                exit_probs=None if exit_probs is None else exit_probs[i, :upto].copy(),
            ))
        return res

    for out in model.iterate_steps(ids, steps, init_scale=init_scale, seed=seeds,
                                   attention_mask=mask if padded else None):
        t = out.step
        lp = out.logprobs  # [B, V] float32
        if not torch.isfinite(lp).all():
            bad = [chunk[i].item.id or f"#{i}" for i in range(B) if not torch.isfinite(lp[i]).all()]
            raise NumericalError(
                f"the model produced NaN/inf at step {t} (instances {', '.join(map(str, bad[:5]))}); the steps "
                f"before it are kept. Try float32, a smaller init scale, or fewer steps.",
                build(last_t),
            )
        probs = lp.exp()
        tp, ti = probs.topk(k, dim=-1)
        top_ids[:, t - 1] = ti.cpu().numpy()
        top_p[:, t - 1] = tp.double().cpu().numpy()
        gathered = probs.gather(1, opt_idx.view(B, -1)).view(B, n_max, m_max).double()
        masses_all = (gathered * opt_mask).sum(-1).cpu().numpy()  # [B, n_max]
        for i, n in enumerate(n_opts):
            masses = masses_all[i, :n]
            raw[i][t - 1] = masses
            total = masses.sum()
            belief[i][t - 1] = masses / total if total > 0 else np.full(n, 1.0 / n)
        if out.exit_prob is not None:
            if exit_probs is None:
                exit_probs = np.zeros((B, steps), np.float64)
            exit_probs[:, t - 1] = out.exit_prob.double().cpu().numpy()
        st = out.state
        hidden_last[:, t - 1] = st[:, -1].to(torch.float16).cpu().numpy()
        if hidden_all is not None:
            for i, p in enumerate(chunk):
                hidden_all[i][t - 1] = st[i, S - len(p.ids):].to(torch.float16).cpu().numpy()
        last_t = t
        if report is not None:
            report(t, build(t))
    return build(steps)


def trace_question(
    bundle: LoadedModel,
    question: str,
    options: Sequence[str],
    correct: Optional[int] = None,
    steps: int = DEFAULT_STEPS,
    **kwargs,
) -> Trace:
    """Trace one free-form question (validated: 2-10 distinct non-empty options, correct index in range)."""
    item = Item(question, tuple(options), correct)
    return trace_items(bundle, [item], steps, **kwargs)[0]


# ---------------------------------------------------------------------------------------------- a run as asked for
def _item_key(item: Item) -> tuple:
    return (item.question, tuple(item.options), item.correct, item.id, item.domain, item.variant, item.permutation,
            tuple(item.order))


@dataclass(frozen=True)
class TraceRequest:
    """One run as a page asks for it: every input of :func:`trace_items` except the model.

    ``key(bundle)`` is a stable name for its result on that model (same inputs, same checkpoint -> same key), so
    a cache can answer a repeated request without running the model.
    """

    items: Tuple[Item, ...]
    steps: int = DEFAULT_STEPS
    seeds: Union[None, int, Tuple[Optional[int], ...]] = None
    init_scale: float = 1.0
    template: Optional[PromptTemplate] = None  # None: the model's own
    keep_all_states: bool = False

    def __post_init__(self):
        object.__setattr__(self, "items", tuple(self.items))
        if isinstance(self.seeds, (list, tuple)):
            object.__setattr__(self, "seeds", tuple(self.seeds))

    def key(self, bundle) -> str:
        """sha256 of the model's path and checkpoint hash and every input (``bundle``: path, checkpoint_hash)."""
        payload = json.dumps([str(bundle.path), bundle.checkpoint_hash, [_item_key(i) for i in self.items],
                              int(self.steps), list(self.seeds) if isinstance(self.seeds, tuple) else self.seeds,
                              float(self.init_scale), None if self.template is None else self.template.to_json(),
                              bool(self.keep_all_states)], default=str)
        return hashlib.sha256(payload.encode()).hexdigest()

    def run(self, bundle: LoadedModel, on_step: Optional[Callable[[int, List[Trace]], None]] = None) -> TraceSet:
        return TraceSet(trace_items(bundle, self.items, self.steps, seeds=self.seeds, init_scale=self.init_scale,
                                    template=self.template, keep_all_states=self.keep_all_states, on_step=on_step))
