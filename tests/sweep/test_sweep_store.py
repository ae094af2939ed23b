"""The results store: one schema, the old on-disk format still loads, other versions are refused by name."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backend.errors import LoopLensError
from backend.sweep import KEY_COLUMNS, ROW_SCHEMA, load_hidden, load_results, read_manifest
from backend.sweep.store import OPTIONAL_FIELDS, ROW_FIELDS

OLD = Path(__file__).resolve().parents[1] / "fixtures" / "sweep-v1"
OLD_MODEL = OLD.parent / "sweep-v1-model"  # the checkpoint that wrote it


def test_one_declared_schema():
    assert ROW_FIELDS == tuple(ROW_SCHEMA.names)
    assert set(KEY_COLUMNS) <= set(ROW_FIELDS)
    df = pd.read_parquet(OLD)
    # parts written before the package match it, less the columns added since (exit gate, interventions) ...
    assert list(df.columns) == [c for c in ROW_SCHEMA.names if c not in OPTIONAL_FIELDS]
    # ... which load_results supplies as nulls, so every reader sees the one schema
    loaded = load_results(OLD, warn=lambda s: pytest.fail(s))
    assert list(loaded.columns) == list(ROW_SCHEMA.names)
    assert loaded["exit_prob"].isna().all() and loaded["intervention"].isna().all()


def test_directory_written_before_the_package_loads():
    """tests/fixtures/sweep-v1 was written by backend/sweep.py before it became a package (part-<first>.parquet
    names): it loads, with its hidden states, and reports."""
    from backend.report import compute_report

    df = load_results(OLD, warn=lambda s: pytest.fail(s))
    assert len(df) == 8 and set(df["variant"]) == {"base", "nca"}
    assert df.attrs["manifest"]["schema"] == "looplens.sweep/1"
    keys, hidden = load_hidden(OLD)
    assert len(keys) == 8 and hidden.shape[:2] == (8, 4) and hidden.dtype == np.float16
    rep = compute_report(df, n_boot=20)
    assert rep["meta"]["instances"] == 8


def test_other_format_version_is_refused_in_one_line(tmp_path):
    d = tmp_path / "old"
    shutil.copytree(OLD, d)
    man = json.loads((d / "_manifest.json").read_text())
    man["schema"] = "looplens.sweep/0"
    (d / "_manifest.json").write_text(json.dumps(man))
    with pytest.raises(LoopLensError, match=r"format 'looplens.sweep/0'.*reads 'looplens.sweep/1'") as e:
        read_manifest(d)
    assert "\n" not in str(e.value)
    with pytest.raises(LoopLensError, match="looplens.sweep/0"):
        load_results(d)


def test_directory_written_before_the_package_is_not_resumed_under_the_new_answer_orders(tmp_path):
    """A directory written before the balanced answer orders (issue 10) still loads (above), but widening it would
    mix two meanings of "permutation k": the resume is refused in one line naming why, and nothing is written."""
    from backend.sweep import SweepSpec, run_sweep

    bench = tmp_path / "bench.jsonl"  # the fixture's benchmark, byte for byte
    bench.write_text("\n".join(json.dumps({
        "id": f"q{i}", "domain": "factual", "question": f"Which city is number {i}?", "answer": f"Paris {i}",
        "distractors": ["London", "Berlin", "Madrid"], "easy_distractors": ["a banana", "blue", "seven"],
        "nca_distractor": "Rome"}) for i in range(2)) + "\n")
    d = tmp_path / "old"
    shutil.copytree(OLD, d)
    before = sorted(p.name for p in d.rglob("*"))
    with pytest.raises(LoopLensError) as exc:
        run_sweep(SweepSpec(model=str(OLD_MODEL), benchmark=str(bench), out=str(d), variants=("base", "nca"),
                            permutations=3, steps=4, chunk_size=3, threads=1, embedding_model=None, device="cpu"),
                  progress=False, log=lambda m: None)
    msg = str(exc.value)
    assert "answer_orders" in msg and "new --out" in msg and "\n" not in msg
    assert sorted(p.name for p in d.rglob("*")) == before  # nothing written, nothing deleted
    assert len(load_results(d)) == 8  # and it still loads
