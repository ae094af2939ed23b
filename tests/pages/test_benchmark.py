import json

import pytest

from apptest_helpers import chart_by_title, no_exceptions


def test_benchmark_without_results_explains_how_to_make_them(app, monkeypatch):
    from backend import report

    monkeypatch.setattr(report, "shipped_reports", lambda root=None: {})
    at = app(page="benchmark")
    no_exceptions(at)
    assert any("python -m backend sweep" in m.value for m in at.markdown)


def test_benchmark_bad_directory_is_a_message(app, tmp_path, monkeypatch):
    from backend import report

    monkeypatch.setattr(report, "shipped_reports", lambda root=None: {})
    at = app(page="benchmark")
    at.text_input(key="bench_results_dir").set_value(str(tmp_path / "missing")).run()
    no_exceptions(at)
    assert any("does not exist" in e.value for e in at.error)
    at.text_input(key="bench_results_dir").set_value(str(tmp_path)).run()
    assert any("no sweep results" in e.value for e in at.error)


@pytest.fixture(scope="module")
def sweep_dir(tiny_dir, tmp_path_factory):
    from backend.settings import BENCHMARKS_DIR
    from backend.sweep import SweepSpec, run_sweep

    bench = sorted(BENCHMARKS_DIR.glob("*.jsonl"))
    if not bench:
        pytest.skip("no benchmark file")
    out = tmp_path_factory.mktemp("sweep")
    spec = SweepSpec(model=str(tiny_dir), benchmark=str(bench[0]), out=str(out), permutations=2, seeds=2, limit=4,
                     steps=12, embedding_model=None, hidden=False, device="cpu")
    run_sweep(spec, progress=False) if "progress" in run_sweep.__code__.co_varnames else run_sweep(spec)
    return out


def test_benchmark_page_on_a_sweep_directory(app, sweep_dir, monkeypatch):
    from backend import report

    monkeypatch.setattr(report, "shipped_reports", lambda root=None: {})
    at = app(page="benchmark")
    at.text_input(key="bench_results_dir").set_value(str(sweep_dir)).run()
    no_exceptions(at)
    assert not at.error, [e.value for e in at.error]
    ent = chart_by_title(at, "Entropy by variant")
    assert [d["name"] for d in ent["data"] if d.get("showlegend") is not False] == ["Base", "Easy",
                                                                                   "No correct answer"]
    rank = chart_by_title(at, "similarity rank")
    assert any(s.get("name") == "chance" for s in rank["layout"]["shapes"])
    chart_by_title(at, "Base vs Easy")
    chart_by_title(at, "Backtracking")
    assert any("Base instances with at least one backtrack" in m.value for m in at.markdown)
    # issue 10: titled by model and benchmark, reference values beside, the reporting rules' numbers shown
    assert not any("reproduced" in m.value.replace("not reproduced", "") for m in at.markdown)
    assert any("reference values from Huginn-0125" in m.value for m in at.markdown)
    assert any(" on " in h.value for h in at.subheader)
    table = at.dataframe[0].value
    assert {"low_mass_share", "robust_backtrack_rate", "verdict_flip_share", "exploration_restricted_mean",
            "never_converged_share", "accuracy_gain_within_item"} <= set(table["field"])
    assert any(f.startswith("backtrack_rate_by_run_length.") for f in table["field"])
    assert table.loc[table["field"] == "robust_backtrack_rate", "base"].iloc[0] != "n/a"  # 2 seeds: measured


@pytest.mark.parametrize("content,msg", [
    ({"schema": "looplens.report/1", "meta": 5}, "'meta'"),
    ({"schema": "looplens.report/1", "meta": {}, "headline": []}, "report"),
    ({"schema": "looplens.report/1", "meta": {}, "headline": [], "groups": [1], "exploration": {},
      "entropy_curves": [], "exploration_hist": {}, "destinations": [], "seed_noise": {}, "position_bias": {}},
     "not objects"),
    ({"schema": "looplens.report/1", "meta": {"ci": "x"}, "headline": [{"key": 3}], "groups": [],
      "exploration": {"per_item": 7}, "entropy_curves": [{"variant": "base"}], "exploration_hist": {"base": {}},
      "destinations": [], "seed_noise": {}, "position_bias": {}}, "Report"),
])
def test_report_json_of_the_wrong_shape_is_a_message(app, tmp_path, monkeypatch, content, msg):
    from backend import report

    monkeypatch.setattr(report, "shipped_reports", lambda root=None: {})
    f = tmp_path / "report.json"
    f.write_text(json.dumps(content))
    at = app(page="benchmark")
    at.text_input(key="bench_results_dir").set_value(str(f)).run()
    no_exceptions(at)
    assert any(msg in e.value.replace("\\", "") for e in at.error), [e.value for e in at.error]
