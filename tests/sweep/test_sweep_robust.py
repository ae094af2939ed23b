"""Sweeps under hostile or unlucky use (issue 14): changed arguments, concurrent writers, damaged, read-only and
full directories, --out, unbounded sizes.  Each test failed on the code before its fix."""
from __future__ import annotations

import builtins
import errno
import io
import json
import os
import shutil
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pandas as pd
import pytest

from backend.cli import main
from backend.errors import UsageError
from backend.sweep import KEY_COLUMNS, SweepSpec, load_results, run_sweep, store, validate_spec
from test_sweep import REPO, _sweep_args, assert_same_rows, rows, spec_for, write_benchmark


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return write_benchmark(tmp_path_factory.mktemp("bench") / "bench.jsonl")


@pytest.fixture(scope="module")
def finished(tiny_dir, bench, tmp_path_factory):
    """A finished small sweep (4 items x base,easy x 1 permutation: 8 instances, 2 parts)."""
    out = tmp_path_factory.mktemp("finished") / "out"
    assert main(_sweep_args(tiny_dir, bench, out, "--variants", "base,easy", "--permutations", "1",
                            "--chunk-size", "4")) == 0
    return out


def copy_of(finished, tmp_path) -> Path:
    d = tmp_path / "copy"
    shutil.copytree(finished, d)
    return d


def run_cli(capsys, args):
    capsys.readouterr()
    rc = main(args)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def one_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ---------------------------------------------------------------------------------------------- changed arguments
@pytest.mark.parametrize("first,second", [
    (["--variants", "easy"], ["--variants", "base,easy"]),
    (["--permutations", "1"], ["--permutations", "2"]),
    (["--limit", "1"], ["--limit", "3", "--permutations", "2"]),
])
def test_rerun_with_changed_arguments_continues_the_union(tiny_dir, bench, tmp_path, capsys, first, second):
    out = tmp_path / "out"
    base = ["--permutations", "1"] if "--permutations" not in first else []
    rc, _, _ = run_cli(capsys, _sweep_args(tiny_dir, bench, out, *base, *first))
    assert rc == 0
    before = rows(out)
    base2 = ["--permutations", "1"] if "--permutations" not in second else []
    rc, stdout, _ = run_cli(capsys, _sweep_args(tiny_dir, bench, out, *base2, *second))
    after = rows(out)
    n = int(stdout.split("instances finished")[0].split()[-1].split("/")[1])
    assert rc == 0 and f"{n}/{n} instances finished" in stdout
    assert len(after) == n, "the final count must be what is on disk"
    assert not after.duplicated(list(KEY_COLUMNS)).any()
    kept = after.merge(before, on=list(KEY_COLUMNS), suffixes=("", "_old"))
    assert len(kept) == len(before)  # nothing finished was lost or recomputed
    # the union equals one fresh run with the second arguments
    fresh = tmp_path / "fresh"
    assert main(_sweep_args(tiny_dir, bench, fresh, *base2, *second)) == 0
    assert_same_rows(after, rows(fresh))


# ---------------------------------------------------------------------------------------------- concurrent writers
def test_a_second_sweep_of_a_running_shard_is_refused(finished, tiny_dir, bench, tmp_path, capsys):
    out = copy_of(finished, tmp_path)
    lock = store.shard_lock(out, (0, 1))  # as a running sweep holds it
    try:
        rc, _, err = run_cli(capsys, _sweep_args(tiny_dir, bench, out, "--variants", "base,easy,nca",
                                                  "--permutations", "1", "--chunk-size", "4"))
    finally:
        lock.release()
    line = one_line(err)
    assert rc == 1 and "another sweep (pid" in line and "shard 0/1" in line


def _popen_sweep(tiny_dir, bench, out, *extra):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "backend", *_sweep_args(tiny_dir, bench, out, *extra)], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_temporary_files_of_a_running_writer_are_left_alone(finished, tiny_dir, bench, tmp_path):
    out = copy_of(finished, tmp_path)
    lock = store.write_lock(out)
    lock.acquire(wait=True)  # a writer in the middle of writing a part of shard 1/2 ...
    tmp = out / ".part-00000001-cafe0001.parquet.tmp"
    tmp.write_bytes(b"PAR1 being written")
    p = _popen_sweep(tiny_dir, bench, out, "--shard", "1/2", "--permutations", "2", "--variants", "base,easy")
    try:
        t0 = time.time()  # ... while a second sweep of that shard starts
        while time.time() - t0 < 120 and p.poll() is None and not (out / "_locks" / "shard-1-of-2.lock").exists():
            time.sleep(0.05)
        time.sleep(0.5)
        assert tmp.exists(), "a starting sweep deleted another writer's temporary file"
    finally:
        tmp.unlink(missing_ok=True)  # the writer finishes
        lock.release()
        _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert not rows(out).duplicated(list(KEY_COLUMNS)).any()


def test_concurrent_sweeps_with_other_chunks_and_shards_store_each_instance_once(tiny_dir, bench, tmp_path):
    out = tmp_path / "out"
    ref = tmp_path / "ref"
    assert main(_sweep_args(tiny_dir, bench, ref, "--permutations", "2")) == 0
    a = _popen_sweep(tiny_dir, bench, out, "--permutations", "2", "--chunk-size", "2")
    time.sleep(0.5)
    b = _popen_sweep(tiny_dir, bench, out, "--permutations", "2", "--chunk-size", "3", "--shard", "0/2")
    (_, ea), (_, eb) = a.communicate(timeout=600), b.communicate(timeout=600)
    assert a.returncode == 0, ea
    assert b.returncode == 0, eb
    df = pd.read_parquet(out)  # what a user reads: every instance exactly once
    assert not df.duplicated(list(KEY_COLUMNS)).any()
    assert_same_rows(rows(out), rows(ref))


# ---------------------------------------------------------------------------------------------- damaged directories
DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("name,content,mentions", [
    ("_manifest.json", "null", "_manifest.json"),
    ("_manifest.json", "[1, 2]", "_manifest.json"),
    ("_manifest.json", '"a string"', "_manifest.json"),
    ("_manifest.json", DEEP, "_manifest.json"),
    ("_manifest.json", '{"schema": "looplens.sweep/1", "fingerprint": 5}', "fingerprint"),
    ("_manifest.json", '{"schema": "looplens.sweep/1", "fingerprint": "x", "identity": [1]}', "identity"),
    ("_manifest.json", '{"schema": ["looplens.sweep/1"], "fingerprint": "x"}', "format"),
    ("part-99999999.parquet/", None, "part-99999999.parquet"),
    ("_runs", "", "_runs"),
    ("_hidden", "", "_hidden"),
])
@pytest.mark.parametrize("command", ["sweep", "report"])
def test_damaged_directory_gets_one_line(finished, tiny_dir, bench, tmp_path, capsys, name, content, mentions,
                                         command):
    out = copy_of(finished, tmp_path)
    target = out / name.rstrip("/")
    if target.is_dir():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()
    if name.endswith("/"):
        target.mkdir()
    else:
        target.write_text(content)
    args = (_sweep_args(tiny_dir, bench, out, "--variants", "base,easy", "--permutations", "1", "--chunk-size",
                        "4") if command == "sweep" else ["report", str(out), "--n-boot", "10"])
    rc, _, err = run_cli(capsys, args)
    line = one_line(err)
    assert rc == 1 and mentions in line, line


# ---------------------------------------------------------------------------------------------- read-only, full disk
@pytest.fixture()
def read_only(monkeypatch):
    """Every write under the given directory fails with EROFS (as on a read-only mount; tests run as root, so
    file modes would not stop a write)."""
    roots = []

    def under(path) -> bool:
        try:
            p = os.path.abspath(os.fspath(path))
        except TypeError:
            return False
        return any(p == r or p.startswith(r + os.sep) for r in roots)

    def refuse(path):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir

    def fake_open(file, mode="r", *a, **k):
        if any(c in mode for c in "wax+") and under(file):
            refuse(file)
        return real_open(file, mode, *a, **k)

    def fake_os_open(path, flags, *a, **k):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and under(path):
            refuse(path)
        return real_os_open(path, flags, *a, **k)

    def guard(real, n=1):
        def f(*args, **kw):
            if any(under(x) for x in args[:n]):
                if real is real_mkdir and os.path.exists(args[0]):
                    raise FileExistsError(errno.EEXIST, "File exists", str(args[0]))
                refuse(args[0])
            return real(*args, **kw)
        return f

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)
    monkeypatch.setattr(os, "open", fake_os_open)
    for name, n in (("mkdir", 1), ("replace", 2), ("rename", 2), ("link", 2), ("unlink", 1), ("rmdir", 1)):
        monkeypatch.setattr(os, name, guard(getattr(os, name), n))
    return lambda d: roots.append(os.path.abspath(d))


def test_finished_sweep_rerun_on_a_read_only_directory_succeeds(finished, tiny_dir, bench, tmp_path, capsys,
                                                                 read_only):
    out = copy_of(finished, tmp_path)
    before = sorted(p.name for p in out.rglob("*"))
    read_only(out)
    rc, stdout, err = run_cli(capsys, _sweep_args(tiny_dir, bench, out, "--variants", "base,easy",
                                                  "--permutations", "1", "--chunk-size", "4"))
    assert rc == 0, err
    assert "8/8 instances finished" in stdout and "Traceback" not in err
    assert sorted(p.name for p in out.rglob("*")) == before


def test_unfinished_sweep_on_a_read_only_directory_gets_one_line(finished, tiny_dir, bench, tmp_path, capsys,
                                                                  read_only):
    out = copy_of(finished, tmp_path)
    read_only(out)
    rc, _, err = run_cli(capsys, _sweep_args(tiny_dir, bench, out, "--variants", "base,easy",
                                             "--permutations", "2", "--chunk-size", "4"))
    assert rc == 1 and "read-only" in one_line(err)


def test_full_disk_gets_one_line_and_keeps_what_was_written(tiny_dir, bench, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    real = store.pq.write_table
    calls = []

    def write_table(table, where, *a, **k):
        calls.append(where)
        if len(calls) > 2:
            with open(where, "wb") as fh:  # a partial file, then the disk is full
                fh.write(b"PAR1")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(table, where, *a, **k)

    monkeypatch.setattr(store.pq, "write_table", write_table)
    rc, _, err = run_cli(capsys, _sweep_args(tiny_dir, bench, out))
    line = one_line(err)
    assert rc == 1 and "disk is full" in line and "rerun" in line
    kept = load_results(out, warn=lambda s: pytest.fail(s))
    assert len(kept) == 10  # the two parts written before
    assert not list(out.glob(".*.tmp")) and not list((out / "_hidden").glob(".*.tmp"))
    monkeypatch.setattr(store.pq, "write_table", real)
    rc, stdout, _ = run_cli(capsys, _sweep_args(tiny_dir, bench, out))  # free space, rerun: it continues
    assert rc == 0 and "30/30 instances finished" in stdout


# ---------------------------------------------------------------------------------------------- --out
def test_out_refuses_a_directory_that_is_not_a_results_directory(tiny_dir, bench, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    own = mine / "part-0.parquet"
    pd.DataFrame({"x": [1, 2]}).to_parquet(own)
    data = own.read_bytes()
    rc, _, err = run_cli(capsys, _sweep_args(tiny_dir, bench, mine))
    assert rc == 2 and "not a LoopLens results directory" in one_line(err)
    assert own.read_bytes() == data and sorted(p.name for p in mine.iterdir()) == ["part-0.parquet"]
    rc, _, err = run_cli(capsys, _sweep_args(tiny_dir, bench, ""))
    assert rc == 2 and "--out is empty" in one_line(err)


def test_files_the_sweep_did_not_write_are_never_deleted(finished, tiny_dir, bench, tmp_path, capsys):
    out = copy_of(finished, tmp_path)
    foreign = out / "part-zz-notes.parquet"
    pd.DataFrame({"x": [1]}).to_parquet(foreign)
    parts = store.list_parts(out)
    damaged = next(p for p in parts if p != foreign)
    damaged.write_bytes(damaged.read_bytes()[:100])  # one of ours, damaged
    rc, _, err = run_cli(capsys, _sweep_args(tiny_dir, bench, out, "--variants", "base,easy", "--permutations",
                                             "1", "--chunk-size", "4"))
    assert rc == 0, err
    assert foreign.is_file() and "left as it is" in err
    assert [p.name for p in (out / "_damaged").iterdir() if p.suffix == ".parquet"][0].endswith(damaged.name)
    assert len(load_results(out, warn=lambda s: None)) == 8


# ---------------------------------------------------------------------------------------------- unbounded sizes
def test_a_billion_seeds_do_not_grow_memory(tiny_dir, tiny_bundle, bench, tmp_path):
    spec = spec_for(tiny_dir, bench, tmp_path / "out", limit=1, variants=("base",), permutations=1, seeds=10**6)
    tracemalloc.start()
    try:
        s = run_sweep(spec, (0, 10**6), bundle=tiny_bundle, progress=False, log=lambda m: None)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (s.total, s.done) == (1, 1)
    assert peak < 32 * 2**20, f"planning a one-instance shard took {peak / 2**20:.0f} MiB"
    validate_spec(SweepSpec(model="m", benchmark="b", out="o", seeds=10**9, permutations=10**9))  # can exist


@pytest.mark.parametrize("field", ["seeds", "permutations"])
def test_counts_that_cannot_be_stored_are_refused(field):
    with pytest.raises(UsageError, match=f"--{field} must be a whole number between 1 and"):
        validate_spec(SweepSpec(model="m", benchmark="b", out="o", **{field: 2**31}))


def test_a_50_mb_benchmark_line_is_refused_before_tokenising(tiny_dir, tmp_path, capsys):
    big = tmp_path / "big.jsonl"
    d = {"id": "q", "domain": "factual", "question": "x" * (50 * 2**20), "answer": "a",
         "distractors": ["b", "c", "d"]}
    big.write_text(json.dumps(d) + "\n")
    rc, _, err = run_cli(capsys, _sweep_args(tiny_dir, big, tmp_path / "out"))
    assert rc == 2 and "line 1: the line is 52,428,8" in one_line(err)  # refused while reading, untokenised
    assert not (tmp_path / "out").exists()
