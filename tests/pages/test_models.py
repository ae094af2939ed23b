"""The Models page: one question on the two shipped models, x = step / trained depth; a model that cannot run the
question gets one line naming it while the others still draw."""
from __future__ import annotations

import numpy as np

from apptest_helpers import arr, chart_by_title, no_exceptions


def _on_shipped_models(app):
    at = app(page="models")
    no_exceptions(at)
    at.multiselect(key="models_pick").set_value(["cups-letters", "cups-mini"]).run()
    at.selectbox(key="bench").set_value("cups-letters-test.jsonl").run()
    no_exceptions(at)
    return at


def test_models_page_overlays_the_shipped_models_on_a_fraction_of_trained_depth(app):
    at = _on_shipped_models(app)
    spec = chart_by_title(at, "by model")
    belief = [t for t in spec["data"] if t.get("yaxis", "y") == "y"]
    assert [t["name"] for t in belief] == ["cups-letters (trained depth 16)", "cups-mini (trained depth 16)"]
    for t in belief:  # 2 x trained depth = 32 steps, plotted at step / 16
        np.testing.assert_allclose(arr(t["x"]), np.arange(1, 33) / 16)
        y = arr(t["y"])
        assert y.shape == (32,) and np.all((y >= 0) & (y <= 1))
    assert len([t for t in spec["data"] if t.get("yaxis") == "y2"]) == 2  # entropy panel
    table = at.dataframe[0].value
    assert list(table["model"]) == ["cups-letters", "cups-mini"] and list(table["trained depth"]) == [16, 16]
    # raw steps
    at.toggle(key="models_normalise").set_value(False).run()
    no_exceptions(at)
    spec = chart_by_title(at, "by model")
    np.testing.assert_array_equal(arr(spec["data"][0]["x"]), np.arange(1, 33))
    # one trained depth per model: 0.5 x 16 = 8 steps
    at.number_input(key="models_depth_mult").set_value(0.5).run()
    spec = chart_by_title(at, "by model")
    assert len(arr(spec["data"][0]["x"])) == 8


def test_a_model_that_cannot_read_the_question_gets_one_line_and_the_others_still_draw(app, tiny_dir):
    at = app(page="models")
    at.multiselect(key="models_pick").set_value(["cups-letters", "cups-mini"]).run()
    at.text_area(key="models_dirs").set_value(str(tiny_dir)).run()
    at.radio(key="models_source").set_value("Your question").run()
    at.text_area(key="q").set_value("What is the capital of Australia?").run()
    at.text_area(key="opts").set_value("Canberra\nSydney\nMelbourne\nPerth").run()
    no_exceptions(at)
    warned = " ".join(w.value for w in at.warning).replace("\\", "")
    assert "cups-mini" in warned, warned  # its option tokens are all unknown: one line, naming the model
    spec = chart_by_title(at, "by model")
    names = [t["name"] for t in spec["data"] if t.get("showlegend", True) is not False]
    assert any(tiny_dir.name in n and "trained depth 8" in n for n in names), names
    assert not any(n.startswith("cups-mini") for n in names)
