"""``python -m backend report``: bad arguments and damaged inputs get one line (issue 14)."""
from __future__ import annotations

from pathlib import Path

import pytest

from backend.cli import main
from backend.errors import LoopLensError
from backend.report import load_report

RESULTS = Path(__file__).resolve().parents[1] / "fixtures" / "sweep-v1"


def run(capsys, args):
    capsys.readouterr()
    rc = main(args)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def error_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("args,needle", [
    (["--seed", "-1"], "--seed must be between 0"),
    (["--seed", str(2**64)], "--seed must be between 0"),
    (["--n-boot", "0"], "--n-boot must be between 1"),
    (["--n-boot", str(10**9)], "--n-boot must be between 1"),
    (["--out", ""], "--out is empty"),
])
def test_bad_report_arguments(capsys, args, needle):
    rc, _, err = run(capsys, ["report", str(RESULTS), *args])
    assert rc == 2 and needle in error_line(err)


def test_report_out_an_existing_directory(capsys, tmp_path):
    rc, _, err = run(capsys, ["report", str(RESULTS), "--out", str(tmp_path), "--n-boot", "10"])
    assert rc == 2 and "is a directory" in error_line(err)
    f = tmp_path / "r.md"
    assert main(["report", str(RESULTS), "--out", str(f), "--n-boot", "10"]) == 0
    assert f.read_text().startswith("# LoopLens sweep report")
    (tmp_path / "file").write_text("x")
    rc, _, err = run(capsys, ["report", str(RESULTS), "--save", str(tmp_path / "file"), "--n-boot", "10"])
    assert rc == 2 and "is a file" in error_line(err)


@pytest.mark.parametrize("content", ['{"schema": "looplens.report/1", "meta": 5}', "null", "[1]",
                                     '{"schema": "looplens.report/1"}', "[" * 100000])
def test_a_damaged_saved_report_is_refused_in_one_line(tmp_path, content):
    (tmp_path / "report.json").write_text(content)
    with pytest.raises(LoopLensError, match="report") as e:
        load_report(tmp_path)
    assert "\n" not in str(e.value)


def test_a_saved_report_loads(tmp_path):
    d = tmp_path / "saved"
    assert main(["report", str(RESULTS), "--save", str(d), "--n-boot", "10"]) == 0
    assert load_report(d)["meta"]["instances"] == 8
