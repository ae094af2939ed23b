"""Sweeps: layout, resume after a kill, corrupt parts, shards, the Ray engine, the CLI."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backend.errors import LoopLensError, UsageError
from backend.sweep import (HIDDEN_DIR, KEY_COLUMNS, MANIFEST, SweepSpec, enumerate_instances, instance_seed,
                           list_parts, load_hidden, load_items, parse_shard, run_sweep, shard_instances)

REPO = Path(__file__).resolve().parents[2]
DOMAINS = ["factual", "definition", "logic", "arithmetic", "misleading"]


def write_benchmark(path: Path, n: int = 4) -> Path:
    lines = []
    for i in range(n):
        d = {"id": f"q{i}", "domain": DOMAINS[i % 5], "question": f"Which city is number {i} in the list?",
             "answer": f"Paris {i}", "distractors": ["London", "Berlin", "Madrid"],
             "easy_distractors": ["a banana", "the colour blue", "seven"]}
        if i % 2 == 0:  # odd items have no NCA variant
            d["nca_distractor"] = "Rome"
        lines.append(json.dumps(d))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture()
def bench(tmp_path):
    return write_benchmark(tmp_path / "bench.jsonl")


def spec_for(tiny_dir, bench, out, **kw) -> SweepSpec:
    base = dict(model=str(tiny_dir), benchmark=str(bench), out=str(out), permutations=3, seeds=1, steps=6,
                chunk_size=5, threads=1, embedding_model=None, device="cpu")
    base.update(kw)
    return SweepSpec(**base)


def rows(out) -> pd.DataFrame:
    df = pd.read_parquet(out)
    return df.sort_values(list(KEY_COLUMNS)).reset_index(drop=True)


def assert_same_rows(a: pd.DataFrame, b: pd.DataFrame):
    assert len(a) == len(b)
    assert a[list(KEY_COLUMNS)].equals(b[list(KEY_COLUMNS)])
    for c in ("init_seed", "final_answer", "order", "options"):
        assert [list(x) if hasattr(x, "__len__") and not isinstance(x, str) else x for x in a[c]] == \
               [list(x) if hasattr(x, "__len__") and not isinstance(x, str) else x for x in b[c]], c
    ba = np.stack([np.stack(x) for x in a["belief"]])
    bb = np.stack([np.stack(x) for x in b["belief"]])
    np.testing.assert_allclose(ba, bb, atol=1e-5)


@pytest.fixture(scope="module")
def reference(tiny_dir, tmp_path_factory):
    """One uninterrupted, unsharded run to compare against."""
    d = tmp_path_factory.mktemp("ref")
    bench = write_benchmark(d / "bench.jsonl")
    out = d / "out"
    spec = spec_for(tiny_dir, bench, out)
    s = run_sweep(spec, progress=False, log=lambda m: None)
    return spec, out, s


# ---------------------------------------------------------------------------------------------- planning
def test_enumeration_and_seeds_are_deterministic(bench):
    spec = SweepSpec(model="x", benchmark=str(bench), out="x", permutations=3, seeds=2)
    items = load_items(spec)
    inst = enumerate_instances(items, spec)
    # 4 items x (base, easy) x 3 x 2 + 2 items with nca x 3 x 2
    assert len(inst) == 4 * 2 * 6 + 2 * 6
    assert [x.index for x in inst] == list(range(len(inst)))
    assert len({x.key for x in inst}) == len(inst)
    assert inst[0].init_seed == instance_seed(0, "q0", "base", 0, 0)
    assert len({x.init_seed for x in inst}) == len(inst)
    assert enumerate_instances(items, spec) == inst
    shards = [shard_instances(inst, (i, 3)) for i in range(3)]
    assert sorted(x.index for s in shards for x in s) == list(range(len(inst)))
    assert not set(x.key for x in shards[0]) & set(x.key for x in shards[1])
    assert len(enumerate_instances(load_items(SweepSpec(model="x", benchmark=str(bench), out="x", limit=1,
                                                         permutations=1)), spec)) == 3 * 3 * 2


def test_parse_shard():
    assert parse_shard(None) == (0, 1)
    assert parse_shard("2/4") == (2, 4)
    for bad in ("4/4", "-1/2", "a/b", "1", "0/0"):
        with pytest.raises(UsageError):
            parse_shard(bad)


# ---------------------------------------------------------------------------------------------- layout
def test_layout_manifest_hidden(reference, tiny_dir):
    spec, out, s = reference
    assert s.computed == s.total == 4 * 2 * 3 + 2 * 3
    df = pd.read_parquet(out)  # one table; manifest, hidden states, run records are not picked up
    assert len(df) == s.total
    assert not df.duplicated(list(KEY_COLUMNS)).any()
    for c in ("item_id", "variant", "permutation", "seed", "model", "checkpoint_hash", "steps", "template",
              "belief", "raw_mass", "entropy", "kl", "backtracked", "exploration_end", "is_correct"):
        assert c in df.columns, c
    assert set(df["steps"]) == {6}
    assert np.stack(df["belief"].iloc[0]).shape == (6, 4)
    assert (df.loc[df.variant == "nca", "correct"].isna()).all()
    man = json.loads((out / MANIFEST).read_text())
    assert man["parameters"]["permutations"] == 3 and man["parameters"]["steps"] == 6
    assert man["identity"]["checkpoint_hash"] == df["checkpoint_hash"].iloc[0]
    assert "torch" in man["versions"] and "pyarrow" in man["versions"]
    keys, hidden = load_hidden(out)
    assert hidden.dtype == np.float16 and hidden.shape[:2] == (len(df), 6)
    assert len(keys) == len(df)
    runs = list((out / "_runs").glob("*.json"))
    assert runs and json.loads(runs[0].read_text())["summary"]["computed"] == s.total


def test_rows_match_a_direct_trace(reference, tiny_bundle):
    from backend.items import load_benchmark
    from backend.trace import trace_items

    spec, out, _ = reference
    df = rows(out)
    r = df[(df.item_id == "q2") & (df.variant == "nca") & (df.permutation == 2)].iloc[0]
    item = load_benchmark(spec.benchmark).get("q2").instance("nca", 2)
    (tr,) = trace_items(tiny_bundle, [item], 6, seeds=int(r["init_seed"]))
    np.testing.assert_allclose(np.stack(r["belief"]), tr.probs, atol=1e-5)
    assert list(r["options"]) == list(tr.options)
    assert r["backtracked"] == tr.metrics.backtracked


# ---------------------------------------------------------------------------------------------- resume
def _cli(args, kill_after_parts=None, **kw):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "backend"] if kill_after_parts is None else \
        [sys.executable, str(Path(__file__).parent / "kill_after_parts.py"), str(kill_after_parts)]
    return subprocess.run([*cmd, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600, **kw)


def stop_after(n):
    """An ``after_part`` callback that stops the sweep after ``n`` parts."""
    seen = []

    def after_part(path):
        seen.append(path)
        return len(seen) < n
    return after_part


def _sweep_args(tiny_dir, bench, out, *extra):
    return ["sweep", "--model", str(tiny_dir), "--benchmark", str(bench), "--out", str(out), "--permutations", "3",
            "--seeds", "1", "--steps", "6", "--chunk-size", "5", "--threads", "1", "--no-similarity", "--no-progress",
            "--device", "cpu", *extra]


def test_kill_and_resume_loses_and_duplicates_nothing(reference, tiny_dir, tmp_path):
    spec, ref_out, _ = reference
    out = tmp_path / "out"
    # A hard kill (SIGKILL) right after the 2nd part is written.
    r = _cli(_sweep_args(tiny_dir, spec.benchmark, out), kill_after_parts=2)
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert len(list_parts(out)) == 2
    # A kill during a write leaves a temporary file and a truncated part: both must be handled.
    parts = list_parts(out)
    (out / f".{parts[0].name}.999.tmp").write_bytes(b"PAR1 half-written")
    data = parts[1].read_bytes()
    parts[1].write_bytes(data[: len(data) // 2])
    r = _cli(_sweep_args(tiny_dir, spec.benchmark, out))
    assert r.returncode == 0, r.stderr
    assert "recomputing" in r.stderr
    assert "30 instances, 5 already done, 25 to run" in r.stderr
    got = rows(out)
    assert not got.duplicated(list(KEY_COLUMNS)).any()
    assert_same_rows(got, rows(ref_out))
    assert not list(out.glob(".*.tmp"))
    # A rerun of a finished sweep does nothing.
    r = _cli(_sweep_args(tiny_dir, spec.benchmark, out))
    assert r.returncode == 0 and "0 to run" in r.stderr
    assert_same_rows(rows(out), rows(ref_out))


def test_real_interrupt_then_resume(reference, tiny_dir, tmp_path):
    """Kill the process at an arbitrary moment (as soon as its first part exists) and resume."""
    spec, ref_out, _ = reference
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    p = subprocess.Popen([sys.executable, "-m", "backend", *_sweep_args(tiny_dir, spec.benchmark, out,
                                                                        "--chunk-size", "2")],
                         cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while time.time() - t0 < 120 and p.poll() is None and not list_parts(out):
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait()
    r = _cli(_sweep_args(tiny_dir, spec.benchmark, out, "--chunk-size", "2"))
    assert r.returncode == 0, r.stderr
    got = rows(out)
    assert not got.duplicated(list(KEY_COLUMNS)).any()
    assert_same_rows(got, rows(ref_out))


def test_corrupt_hidden_file_is_recomputed(reference, tiny_bundle, tiny_dir, tmp_path):
    spec, ref_out, _ = reference
    out = tmp_path / "out"
    sp = spec_for(tiny_dir, spec.benchmark, out)
    run_sweep(sp, bundle=tiny_bundle, progress=False, log=lambda m: None, after_part=stop_after(2))
    h = sorted((out / HIDDEN_DIR).glob("*.npy"))[0]
    b = bytearray(h.read_bytes())
    b[-3] ^= 0xFF  # same size, different content
    h.write_bytes(bytes(b))
    msgs = []
    s = run_sweep(sp, bundle=tiny_bundle, progress=False, log=msgs.append)
    assert any("checksum" in m for m in msgs)
    assert s.computed == s.total - 5
    assert_same_rows(rows(out), rows(ref_out))


def test_resume_with_other_parameters_is_refused(reference, tiny_bundle, tiny_dir, tmp_path):
    spec, ref_out, _ = reference
    out = tmp_path / "out"
    run_sweep(spec_for(tiny_dir, spec.benchmark, out), bundle=tiny_bundle, progress=False, log=lambda m: None,
              after_part=stop_after(1))
    with pytest.raises(LoopLensError, match="different parameters.*steps"):
        run_sweep(spec_for(tiny_dir, spec.benchmark, out, steps=7), bundle=tiny_bundle, progress=False,
                  log=lambda m: None)
    with pytest.raises(LoopLensError, match="different parameters"):
        run_sweep(spec_for(tiny_dir, spec.benchmark, out, base_seed=1), bundle=tiny_bundle, progress=False,
                  log=lambda m: None)
    # Widening the scope (more permutations) continues the same sweep.
    s = run_sweep(spec_for(tiny_dir, spec.benchmark, out, permutations=4), bundle=tiny_bundle, progress=False,
                  log=lambda m: None)
    assert s.already == 5 and s.computed == s.total - 5
    got = rows(out)
    assert_same_rows(got[got.permutation < 3].reset_index(drop=True), rows(ref_out))


# ---------------------------------------------------------------------------------------------- shards
def test_shards_union_equals_unsharded(reference, tiny_bundle, tiny_dir, tmp_path):
    spec, ref_out, _ = reference
    together = tmp_path / "together"
    for i in range(3):  # shards into one directory (as on a shared filesystem) ...
        run_sweep(spec_for(tiny_dir, spec.benchmark, together), (i, 3), bundle=tiny_bundle, progress=False,
                  log=lambda m: None)
    assert_same_rows(rows(together), rows(ref_out))
    apart = []
    for i in range(2):  # ... and into separate directories (as on separate machines), then concatenated
        o = tmp_path / f"shard{i}"
        s = run_sweep(spec_for(tiny_dir, spec.benchmark, o), (i, 2), bundle=tiny_bundle, progress=False,
                      log=lambda m: None)
        apart.append(pd.read_parquet(o))
        assert set(pd.read_parquet(o)["instance"] % 2) == {i}
    union = pd.concat(apart).sort_values(list(KEY_COLUMNS)).reset_index(drop=True)
    assert_same_rows(union, rows(ref_out))


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_errors_are_one_line(tiny_dir, bench, tmp_path):
    from backend.cli import main

    out = tmp_path / "o"
    assert main(_sweep_args(tiny_dir, bench, out, "--shard", "3/3")) == 2
    assert main(_sweep_args(tiny_dir, bench, out, "--variants", "base,hard")) == 2
    assert main(_sweep_args(tiny_dir, tmp_path / "missing.jsonl", out)) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\n')
    assert main(_sweep_args(tiny_dir, bad, out)) == 2


def test_cli_sweep_and_report(tiny_dir, bench, tmp_path, capsys):
    from backend.cli import main

    out = tmp_path / "o"
    assert main(_sweep_args(tiny_dir, bench, out, "--limit", "2", "--variants", "base,easy")) == 0
    df = pd.read_parquet(out)
    assert len(df) == 2 * 2 * 3 and set(df["variant"]) == {"base", "easy"}
    capsys.readouterr()
    assert main(["report", str(out), "--format", "json", "--n-boot", "50"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["meta"]["instances"] == 12


def test_ray_missing_message(monkeypatch, tiny_dir, bench, tmp_path):
    import builtins

    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("no ray")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(LoopLensError, match="requirements-ray.txt"):
        run_sweep(spec_for(tiny_dir, bench, tmp_path / "o"), engine="ray", progress=False, log=lambda m: None)


# ---------------------------------------------------------------------------------------------- Ray
def test_ray_engine_equals_local(reference, tiny_dir, tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (pip install -r requirements-ray.txt)")
    import ray

    spec, ref_out, _ = reference
    out = tmp_path / "ray"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=128 * 2**20,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}})
    try:
        assert ray.cluster_resources().get("CPU") == 2
        s = run_sweep(spec_for(tiny_dir, spec.benchmark, out), engine="ray", progress=False, log=lambda m: None)
    finally:
        ray.shutdown()
    assert s.computed == s.total
    assert_same_rows(rows(out), rows(ref_out))
    run = json.loads(sorted((out / "_runs").glob("*.json"))[-1].read_text())
    assert run["engine"] == "ray"
