"""Explore's panels of issue 12: exit-rule marks on the belief plot, the dynamics panel, the Intervene panel."""
import numpy as np

from apptest_helpers import arr, chart_by_title, charts, no_exceptions


def _counterfactual(at):
    found = [s for s in charts(at) if any("(intervened)" in (d.get("name") or "") for d in s["data"])]
    assert len(found) == 1, [(s.get("layout", {}).get("title") or {}).get("text") for s in charts(at)]
    return found[0]


def test_intervene_panel_draws_the_counterfactual_over_the_baseline(app):
    at = app()
    assert not [s for s in charts(at) if any("(intervened)" in (d.get("name") or "") for d in s["data"])]
    at.toggle(key="iv_on").set_value(True).run()
    no_exceptions(at)
    assert not at.error, [e.value for e in at.error]
    spec = _counterfactual(at)
    names = [d["name"] for d in spec["data"]]
    assert sum(n.endswith("(intervened)") for n in names) == 4 and sum(n.endswith("(baseline)") for n in names) == 4
    belief = chart_by_title(at, "Belief over the options")
    base = np.array([arr(d["y"]) for d in belief["data"]])
    np.testing.assert_allclose(np.array([arr(d["y"]) for d in spec["data"][0::2]]), base, atol=1e-6)
    assert [s["x0"] for s in spec["layout"]["shapes"] if s.get("name") == "intervention"] == [5]
    assert {m.label for m in at.metric} >= {"Diverges at", "Rejoins the baseline"}
    # sigma 0 is the baseline itself
    at.number_input(key="iv_sigma").set_value(0.0).run()
    spec = _counterfactual(at)
    np.testing.assert_allclose(np.array([arr(d["y"]) for d in spec["data"][1::2]]), base, atol=1e-6)
    # freeze: constant after k
    at.selectbox(key="iv_kind").set_value("freeze").run()
    no_exceptions(at)
    frozen = np.array([arr(d["y"]) for d in _counterfactual(at)["data"][1::2]])
    np.testing.assert_allclose(frozen[:, 5:], frozen[:, [4]] * np.ones((1, frozen.shape[1] - 5)), atol=1e-9)
    # splice from another variant of the benchmark item
    at.selectbox(key="iv_kind").set_value("splice").run()
    at.selectbox(key="iv_src").set_value("another variant").run()
    no_exceptions(at)
    assert not at.error, [e.value for e in at.error]
    assert any("Spliced:" in m.value for m in at.markdown)


def test_stop_marks_toggle_and_dynamics_panel(app):
    at = app()
    shapes = lambda: [s.get("name") for s in chart_by_title(at, "Belief over the options")["layout"]["shapes"]]  # noqa
    assert not [n for n in shapes() if (n or "").startswith("stop:")]
    at.toggle(key="stop_marks").set_value(True).run()
    no_exceptions(at)
    assert "stop:oracle" in shapes() and "stop:last" in shapes()
    dyn = chart_by_title(at, "Latent dynamics")
    assert len(dyn["data"]) == 3
