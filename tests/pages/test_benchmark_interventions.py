"""Benchmark page: the exit-rule figure and an intervention study's point-of-no-return curve."""
import json
import shutil

from apptest_helpers import chart_by_title, no_exceptions

from backend.settings import RESULTS_DIR


def test_shipped_study_shows_exit_rules_and_the_ponr_curve(app, monkeypatch):
    from backend import report

    assert (RESULTS_DIR / "cups-mini" / "_interventions.json").is_file()  # the shipped study is cups-mini's
    monkeypatch.setattr(report, "shipped_reports", lambda root=None: {"cups-mini": RESULTS_DIR / "cups-mini"})
    at = app(page="benchmark")
    no_exceptions(at)
    assert not at.error, [e.value for e in at.error]
    ex = chart_by_title(at, "Exit rules")
    assert {d["name"] for d in ex["data"]} == {"Base", "Easy"}  # NCA has no accuracy
    ponr = chart_by_title(at, "Point of no return")
    assert len([d for d in ponr["data"] if d.get("mode") == "lines"]) == 9  # 3 variants x 3 sigmas


def test_a_damaged_study_is_a_message(app, tmp_path, monkeypatch):
    from backend import report

    d = tmp_path / "cups-mini"
    d.mkdir()
    shutil.copy(RESULTS_DIR / "cups-mini" / "report.json", d / "report.json")
    (d / "_interventions.json").write_text(json.dumps({"ponr": "nope"}))
    monkeypatch.setattr(report, "shipped_reports", lambda root=None: {"cups-mini": d})
    at = app(page="benchmark")
    no_exceptions(at)
    assert any("not an intervention study" in e.value for e in at.error)
    chart_by_title(at, "entropy")  # the rest of the page still works
