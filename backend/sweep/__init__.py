"""Sweeps: trace every (item x variant x permutation x seed) instance of a benchmark, resumably, as Parquet.

``python -m backend sweep --model M --benchmark FILE --out DIR [--limit N] [--variants base,easy,nca]
[--permutations N (default: all distinct orders)] [--seeds 3] [--steps 30] [--shard i/n] [--engine local|ray]``

The package, one concern per module (imports go one way: store <- load; store <- spec <- runner <- local / ray_engine):

* :mod:`.spec` -- the parameters (:class:`SweepSpec`), instances keyed by ``(item_id, variant, permutation,
  seed)`` and enumerated lazily, shards, the fingerprint of what makes rows comparable;
* :mod:`.store` -- the results directory: its one Arrow schema, writing / checking / scanning parts, the
  manifest, locks;
* :mod:`.load` -- the public loading API (:func:`load_results`, :func:`load_hidden`);
* :mod:`.runner` -- :class:`ChunkRunner`: one loaded model turning chunks of instances into rows;
* :mod:`.local` -- :func:`run_sweep`: plan, skip what is on disk, compute, write (the local engine);
* :mod:`.ray_engine` -- the same chunks on Ray actors (optional dependency; imports only the runner).

``seed`` is the seed *index* (0..seeds-1); the initial state's actual RNG seed is ``init_seed``, derived from
(base seed, item id, variant, permutation, seed index) by sha256, so reruns, shards and engines agree.

The names below are loaded on first use, so ``from backend.sweep import load_results`` (the report, the
Benchmark page) does not import torch.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "spec": ("SweepSpec", "Instance", "instance_seed", "parse_shard", "parse_variants", "validate_spec",
             "load_items", "iter_instances", "enumerate_instances", "count_instances", "shard_instances",
             "identity", "fingerprint", "DEFAULT_CHUNK"),
    "store": ("SCHEMA", "ROW_SCHEMA", "KEY_COLUMNS", "MANIFEST", "HIDDEN_DIR", "RUNS_DIR", "SIMILARITY_FILE",
              "list_parts", "check_part", "read_manifest"),
    "load": ("load_results", "load_hidden", "has_results", "normalise_types"),
    "runner": ("ChunkRunner", "ChunkResult", "build_rows", "resolve_device"),
    "local": ("run_sweep", "SweepSummary", "bundle_info"),
}
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name):
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{mod}"), name)
