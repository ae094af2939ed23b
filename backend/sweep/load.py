"""Reading a results directory back: the public loading API (the report, the Benchmark page, notebooks).

:func:`load_results` (rows as a DataFrame, nullable columns typed), :func:`load_hidden` (hidden states with
their keys), :func:`has_results`.  Damaged directories are refused with one line naming the file.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Iterable, Optional, Union

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from ..errors import LoopLensError, UsageError
from ..similarity import load_similarity
from .store import (KEY_COLUMNS, OPTIONAL_FIELDS, SIMILARITY_FILE, check_layout, check_part, hidden_path, part_paths,
                    read_manifest)

NULLABLE_INT = ("correct", "correct_original", "exploration_end", "destination", "frontrunner", "iv_at",
                "baseline_final_answer", "baseline_exploration_end", "diverged_at", "rejoin_step", "steps_to_rejoin",
                "new_backtracks", "lost_backtracks")
NULLABLE_BOOL = ("is_correct", "baseline_is_correct", "baseline_backtracked", "final_changed")


def has_results(directory: Union[str, Path]) -> bool:
    """True when the directory holds per-instance Parquet rows (not only a saved report)."""
    try:
        return bool(part_paths(Path(directory)))
    except LoopLensError:
        return True  # there is something: loading it says what is wrong


def normalise_types(df: pd.DataFrame) -> pd.DataFrame:
    """Nullable integer columns as pandas ``Int64``, ``is_correct`` as ``boolean``, missing domains named."""
    df = df.copy()
    for c in NULLABLE_INT:
        if c in df.columns:
            df[c] = pd.array(df[c].to_numpy(dtype=object, na_value=None), dtype="Int64") if df[c].dtype == object \
                else df[c].astype("Float64").round().astype("Int64")
    for c in NULLABLE_BOOL:
        if c in df.columns:
            df[c] = df[c].astype("boolean")
    if "domain" in df.columns:
        df["domain"] = df["domain"].fillna("(none)").astype(str)
    return df


def _warn_stderr(s: str) -> None:
    print(f"warning: {s}", file=sys.stderr)


def load_results(path: Union[str, Path], dedupe: bool = True, warn: Optional[Callable[[str], None]] = None
                 ) -> pd.DataFrame:
    """A sweep's rows as one DataFrame (valid parts only; an instance found twice is kept once).

    ``path``: a sweep directory (``part-*.parquet``) or one Parquet file.  ``df.attrs`` gets ``manifest`` and
    ``similarity`` (the directory's ``_similarity.json``) when present.  Nullable integer columns become
    pandas ``Int64``, ``is_correct`` becomes ``boolean``.  Damaged directories are refused in one line.
    """
    p = Path(path)
    warn = warn or _warn_stderr
    if p.is_file():
        try:
            df = pd.read_parquet(p)
        except Exception as exc:
            raise LoopLensError(f"{p} is not a readable Parquet file ({str(exc).splitlines()[0][:120]})") from None
        manifest, simpath = None, p.parent / SIMILARITY_FILE
    elif p.is_dir():
        check_layout(p)
        manifest = read_manifest(p)
        frames = []
        for part in part_paths(p):
            c = check_part(part, None, verify_hidden=False)
            if not c.ok:
                warn(f"{part.name}: {c.reason}: left out (rerun the sweep to recompute it)")
                continue
            frames.append(pq.read_table(part).to_pandas())
        if not frames:
            raise LoopLensError(f"{p} holds no sweep results (no readable part-*.parquet)")
        df = pd.concat(frames, ignore_index=True)
        simpath = p / SIMILARITY_FILE
    else:
        raise UsageError(f"no results at {p}: give a sweep directory or a Parquet file")
    missing = [c for c in KEY_COLUMNS if c not in df.columns]
    if missing:
        raise LoopLensError(f"{p} is not a sweep result (missing column(s) {', '.join(missing)})")
    for c in OPTIONAL_FIELDS:  # parts written before these columns existed: null
        if c not in df.columns:
            df[c] = None
        elif df[c].dtype == object:  # lists (or strings) mixed with NaN where some parts lack the column
            df[c] = df[c].map(lambda x: None if isinstance(x, float) and x != x else x)
    if dedupe:
        dup = df.duplicated(list(KEY_COLUMNS), keep="first")
        if dup.any():
            warn(f"{int(dup.sum())} duplicate instance row(s) dropped")
            df = df[~dup].reset_index(drop=True)
    df = normalise_types(df)
    df.attrs["manifest"] = manifest
    if simpath.is_file():
        try:
            df.attrs["similarity"] = load_similarity(simpath)
        except UsageError as exc:
            warn(str(exc))
    return df


def load_hidden(out, parts: Optional[Iterable[str]] = None):
    """Last-position hidden states: (keys DataFrame [item_id, variant, permutation, seed], float16 array
    [rows, steps, E]).  Reads ``_hidden/<part>.npy`` next to the valid parts (optionally only ``parts``)."""
    out = Path(out)
    wanted = set(parts) if parts is not None else None
    keys, arrs = [], []
    for p in part_paths(out):
        if wanted is not None and p.name not in wanted:
            continue
        hp = hidden_path(p)
        if not hp.is_file():
            continue
        try:
            t = pq.read_table(p, columns=list(KEY_COLUMNS))
            h = np.load(hp, mmap_mode="r", allow_pickle=False)
        except Exception:
            continue
        if h.shape[0] != t.num_rows:
            continue
        keys.append(t.to_pandas())
        arrs.append(np.asarray(h))
    if not keys:
        return pd.DataFrame(columns=list(KEY_COLUMNS)), np.zeros((0, 0, 0), np.float16)
    return pd.concat(keys, ignore_index=True), np.concatenate(arrs)
