"""Start-up: the sidebar describes the model without loading it, and the server's warm-up traces exactly the
run a fresh Explore session opens on (so the first chart is drawn from memory)."""
from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from apptest_helpers import APP, no_exceptions
from model_builders import make_bundle_dir
from pages import common


def _count_loads(monkeypatch) -> list:
    loads = []
    real = common.load_bundle
    monkeypatch.setattr(common, "load_bundle", lambda *a, **k: loads.append(a) or real(*a, **k))
    return loads


def test_benchmark_page_shows_the_model_summary_without_loading_the_model(tmp_path, monkeypatch):
    d = make_bundle_dir(tmp_path / "fresh-model")  # a new path: nothing cached for it in this process
    monkeypatch.setenv("LOOPLENS_DEFAULT_MODEL", str(d))
    loads = _count_loads(monkeypatch)
    at = AppTest.from_file(APP, default_timeout=180)
    at.switch_page("pages/benchmark.py").run()
    no_exceptions(at)
    assert at.title[0].value.startswith("Benchmark")
    summary = [c.value for c in at.sidebar.caption if "trained depth" in c.value]
    assert summary and "Huginn" in summary[0] and "8 steps" in summary[0], [c.value for c in at.sidebar.caption]
    assert loads == [], "the Benchmark page (and the sidebar) loaded the model"
    # no run control is drawn on Benchmark (it reads saved results), but the steps still follow the model's
    # trained depth for the pages that run it
    assert at.session_state["steps"] == 8


def test_warm_up_traces_the_run_explore_opens_on(tmp_path, monkeypatch):
    d = make_bundle_dir(tmp_path / "warm-model")
    monkeypatch.setenv("LOOPLENS_DEFAULT_MODEL", str(d))
    monkeypatch.setenv("LOOPLENS_TORCH_THREADS", "1")
    times = common.warm_up()
    assert "error" not in times, times
    loads = _count_loads(monkeypatch)
    runs = []
    real_run = common.TraceRequest.run
    monkeypatch.setattr(common.TraceRequest, "run", lambda self, *a, **k: runs.append(self) or real_run(self, *a, **k))
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    no_exceptions(at)
    assert at.get("plotly_chart"), "Explore drew no chart"
    assert loads == [], "the model was loaded again after the warm-up"
    assert runs == [], ("Explore's first view was traced again: pages.common.default_view_request no longer "
                        f"matches Explore's defaults ({len(runs)} run(s) of {runs[0].items[0].id if runs else ''})")


def test_warm_up_without_a_usable_model_still_starts(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOPLENS_DEFAULT_MODEL", str(tmp_path / "missing"))
    times = common.warm_up()
    assert "not found" in times["error"] and "total" in times
