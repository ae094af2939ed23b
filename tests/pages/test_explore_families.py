"""Explore on every looped family (issue 11): the belief is drawn with one trace per option, the sidebar names the
family, size and trained depth, steps default to the model's depth, steps past it are marked, and Ouro's exit
gate is charted under the belief."""
from __future__ import annotations

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from apptest_helpers import APP, arr, chart_by_title, charts, no_exceptions
from model_builders import FAMILIES, make_family_dir

DEPTH = {"huginn": 8, "retrofit": 4, "ouro": 4, "parcae": 8}  # the builders' trained depths


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {f: make_family_dir(root / f, f) for f in FAMILIES}


def open_app(monkeypatch, d, query=None) -> AppTest:
    monkeypatch.setenv("LOOPLENS_DEFAULT_MODEL", str(d))
    monkeypatch.setenv("LOOPLENS_TORCH_THREADS", "1")
    at = AppTest.from_file(APP, default_timeout=180)
    if query:
        at.query_params.update(query)
    at.run()
    no_exceptions(at)
    assert not at.error, [e.value for e in at.error]
    return at


def _sidebar_text(at) -> str:
    return " ".join(str(c.value) for c in at.sidebar.caption)


@pytest.mark.parametrize("family", FAMILIES)
def test_explore_draws_each_family(monkeypatch, family_dirs, family):
    at = open_app(monkeypatch, family_dirs[family])
    title = {"huginn": "Huginn", "retrofit": "etrofit", "ouro": "Ouro", "parcae": "Parcae"}[family]
    side = _sidebar_text(at)
    assert title in side and f"trained depth {DEPTH[family]}" in side
    assert at.number_input(key="steps").value == DEPTH[family]  # steps follow the model
    assert at.number_input(key="run_length").value == 3
    assert "nearly meaningless" in side  # <= 8 steps
    spec = chart_by_title(at, "Belief over the options")
    assert len(spec["data"]) == 4
    assert (any(s["data"] and "exit" in ((s.get("layout", {}).get("title") or {}).get("text", "")).lower()
                for s in charts(at))) == (family == "ouro")


def test_ouro_exit_chart_and_beyond_trained_depth(monkeypatch, family_dirs):
    at = open_app(monkeypatch, family_dirs["ouro"], {"steps": "7"})
    assert at.number_input(key="steps").value == 7  # a link's steps are the user's: kept
    exit_spec = chart_by_title(at, "Exit probability")
    p = arr(exit_spec["data"][0]["y"])
    assert len(p) == 7 and abs(p.sum() - 1) < 1e-5
    shapes = chart_by_title(at, "Belief over the options")["layout"]["shapes"]
    beyond = [s for s in shapes if s.get("name") == "beyond_trained_depth"]
    assert [(s["x0"], s["x1"]) for s in beyond] == [(4.5, 7.5)]
    assert [s for s in exit_spec["layout"]["shapes"] if s.get("name") == "beyond_trained_depth"]


def test_run_length_setting_reaches_the_metrics(monkeypatch, family_dirs):
    at = open_app(monkeypatch, family_dirs["huginn"], {"steps": "12"})
    side = _sidebar_text(at)
    assert "nearly meaningless" not in side  # 12 steps: no note
    spec = chart_by_title(at, "Belief over the options")
    probs = np.array([arr(d["y"]) for d in spec["data"]]).T
    from backend.metrics import analyze_trajectory

    def shown():
        com = [s for s in chart_by_title(at, "Belief over the options")["layout"]["shapes"]
               if s.get("name") == "commitment"]
        return [(s["x0"], s["x1"]) for s in com], [x.value for x in at.metric if x.label == "Commitments"][0]

    m3, m13 = analyze_trajectory(probs, run_length=3), analyze_trajectory(probs, run_length=13)
    assert m3.commitments != m13.commitments  # the setting makes a difference on this run
    assert shown() == ([(c.start - 0.5, c.end + 0.5) for c in m3.commitments], str(len(m3.commitments)))
    at.number_input(key="run_length").set_value(13).run()
    no_exceptions(at)
    assert shown() == ([(c.start - 0.5, c.end + 0.5) for c in m13.commitments], str(len(m13.commitments)))
