import json
import re
from pathlib import Path

import pytest

from apptest_helpers import EVIL, assert_rendered_as_text, chart_by_title, no_exceptions
from backend.report.text import pct

SHIPPED = Path(__file__).resolve().parents[2] / "data" / "results" / "cups-letters" / "report.json"


def tables(at) -> list:
    """The page's static tables with the Markdown escapes of their text removed (what the reader sees)."""
    out = []
    for t in at.table:
        df = t.value.copy()
        df.columns = [str(c).replace("\\", "") for c in df.columns]
        out.append(df.map(lambda x: str(x).replace("\\", "")))
    return out


def table_with(at, column: str):
    found = [t for t in tables(at) if column in t.columns]
    assert found, f"no table with a column {column!r}: {[list(t.columns) for t in tables(at)]}"
    return found[0]


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
    table = table_with(at, "field")
    assert {"low_mass_share", "robust_backtrack_rate", "verdict_flip_share", "exploration_restricted_mean",
            "never_converged_share", "accuracy_gain_within_item"} <= set(table["field"])
    assert any(f.startswith("backtrack_rate_by_run_length.") for f in table["field"])
    assert table.loc[table["field"] == "robust_backtrack_rate", "Base"].iloc[0] != "n/a"  # 2 seeds: measured


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


def test_benchmark_page_is_designed_headline_cards_figures_tables(app, monkeypatch):
    """issue 13: headline numbers with intervals and what they rest on, the reference values labelled as such, then
    the figures, then the tables (no repeated rows); the full report only as a download and collapsed, no second
    H1, no Python dict in the caption."""
    from backend import report

    monkeypatch.setattr(report, "shipped_reports", lambda root=None: {"cups-letters": SHIPPED.parent})
    at = app(page="benchmark")
    no_exceptions(at)
    assert not at.error, [e.value for e in at.error]
    metrics = {m.label.replace("\\", ""): m for m in at.metric}
    assert {"Accuracy · Base", "Backtracks · Base", "Exploration · Base"} <= set(metrics)
    bt = metrics["Backtracks · Base"]
    h = next(r for r in json.loads(SHIPPED.read_text())["headline"] if r["key"] == "backtrack_rate_base")
    assert bt.value == pct(h["value"]) and f"95% CI {pct(h['lo'])} to {pct(h['hi'])}" in bt.proto.delta.replace(
        "\\", "")
    helptext = bt.proto.help.replace("\\", "")
    assert "bootstrap over items" in helptext and "mass below 0.01" in helptext
    assert "140 items" in helptext and "3 seed(s)" in helptext
    assert any("Huginn-0125, reference: 32%" in c.value.replace("\\", "") for c in at.caption)
    assert any("not a replication of the paper" in i.value.replace("\\", "") for i in at.info)
    caption = next(c.value for c in at.caption if "instances" in c.value and "benchmark" in c.value)
    assert "{" not in caption and "Base 10,080" in caption.replace("\\", "")  # variants as text, not a dict
    # one H1 (the page's title): the report's Markdown is demoted inside its collapsed expander
    assert len(at.title) == 1
    assert not [m.value[:80] for m in at.main.get("markdown") if re.search(r"(?m)^#{1,3}\s", m.value)]
    exp = next(e for e in at.expander if "full report" in e.label.lower())
    assert exp.proto.expanded is False
    assert any("report.md" in b.proto.label for b in at.get("download_button"))
    # horizontal bars: labels read on one line each
    bars = chart_by_title(at, "Backtracking")
    assert bars["data"][0]["orientation"] == "h"
    # tables: a single domain's rows that repeat "all" are gone; one column per variant, named as in the charts
    per_variant = table_with(at, "statistic")
    assert list(per_variant.columns) == ["statistic", "Base", "Easy", "No correct answer"]
    assert len(per_variant) == len(per_variant.drop_duplicates())
    key = table_with(at, "field")
    assert len(key) == len(key.drop_duplicates()) and "Base" in key.columns
    assert not set(per_variant["statistic"]) & set(key["number"])  # a number is in one table, not in both
    assert "accuracy" in set(per_variant["statistic"])
    # order: headline numbers, figures, tables, then the exit-rule panel
    heads = [m.value for m in at.main.get("markdown") if m.value.startswith("#####")]
    assert heads[:5] == ["##### Headline numbers", "##### Figures", "##### Findings beside the reference values",
                         "##### Per variant", "##### What the numbers rest on"]
    assert heads[5] == "##### Exit rules and interventions"


def _hostile_report(tmp_path) -> Path:
    rep = json.loads(SHIPPED.read_text())
    m = rep["meta"]
    for k in ("title", "model", "benchmark", "template", "checkpoint_hash", "generated"):
        m[k] = f"{EVIL} {k}"
    m["variants"] = {**m["variants"], EVIL: 5}
    for r in rep["headline"]:
        r["finding"], r["paper"], r["note"] = f"{EVIL} f", f"{EVIL} p", f"{EVIL} n"
    for r in rep["exploration"]["per_item"][:3]:
        r["item_id"] = EVIL
    for d in rep["destinations"]:
        d["destination"] = EVIL
    base_all = next(g for g in rep["groups"] if g["variant"] == "base" and g["domain"] == "all")
    rep["groups"].append({**base_all, "variant": EVIL, "domain": "all"})
    rep["groups"].append({**base_all, "variant": "base", "domain": EVIL})
    rep["variants"][EVIL] = base_all
    rep["exploration_hist"][EVIL] = rep["exploration_hist"]["base"]
    f = tmp_path / "report.json"
    f.write_text(json.dumps(rep))
    return f


def test_hostile_report_json_shows_its_strings_as_text(app, tmp_path, monkeypatch):
    """A report.json with Markdown, HTML and links in every string field: shown as text everywhere (Markdown,
    labels, help texts, static tables, data frames, figures)."""
    from backend import report

    monkeypatch.setattr(report, "shipped_reports", lambda root=None: {})
    f = _hostile_report(tmp_path)
    at = app(page="benchmark")
    at.text_input(key="bench_results_dir").set_value(str(f)).run()
    no_exceptions(at)
    assert not at.error, [e.value for e in at.error]
    assert_rendered_as_text(at)  # Markdown, captions, alerts, titles, expander labels, metric labels/helps, charts
    cells = [str(c) for t in at.table for c in list(t.value.columns) + t.value.to_numpy().ravel().tolist()]
    cells += [m.proto.delta for m in at.metric] + [m.value for m in at.metric]
    assert any("evil" in c for c in cells), "the hostile text is not in the tables"
    for c in cells:
        for bad in (r"(?<!\\)\]\(", r"http://", r"www\.evil", r"(?<!\\)<[a-z/]", r"(?<!\\)\$", r"(?<!\\):red"):
            assert not re.search(bad, c), f"{bad!r} would render as Markdown in the table cell {c[:200]!r}"
    for d in at.dataframe:  # data frames show cells as text unless a column is configured as a link or Markdown
        assert not re.search(r'"(link|markdown|image)"', d.proto.columns or ""), d.proto.columns
    assert len(at.title) == 1
