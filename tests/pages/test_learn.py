import json
import re

from apptest_helpers import arr, charts, no_exceptions


def _diagram(at) -> dict:
    found = [c for c in charts(at) if any(a.get("name") == "loop_label" for a in c["layout"].get("annotations", []))]
    assert len(found) == 1, "no architecture diagram"
    return found[0]


def test_learn_walkthrough_has_a_diagram_and_animated_examples(app):
    at = app(page="learn")
    no_exceptions(at)
    assert not at.error, [e.value for e in at.error]
    assert len(at.tabs) == 6
    # the architecture diagram: every part labelled, in legible type (pixels, not scaled with the figure)
    spec = _diagram(at)
    labels = {a["name"]: a for a in spec["layout"]["annotations"] if a.get("name", "").startswith("label_")}
    assert set(labels) == {f"label_{k}" for k in ("input", "prelude", "core", "coda", "state", "belief")}
    assert all(a["font"]["size"] >= 14 for a in labels.values())
    anims = [c for c in charts(at) if c.get("frames")]
    assert anims, "no animated figure"
    for spec in anims:
        labels = [b["label"] for b in spec["layout"]["updatemenus"][0]["buttons"]]
        assert any("play" in l for l in labels) and any("pause" in l for l in labels)
        assert len(spec["frames"]) == 30
        # the legend is above the plot area; the buttons and the slider are below the x axis: nothing overlaps
        lay = spec["layout"]
        assert lay["legend"]["y"] >= 1 and lay["legend"]["yanchor"] == "bottom"
        assert lay["legend"].get("yref", "paper") == "paper"
        for w in (lay["updatemenus"][0], lay["sliders"][0]):
            assert w["y"] <= 0 and w["yanchor"] == "top"
    # every shown example has a two-sentence explanation
    infos = [i.value for i in at.info if "no clear example" not in i.value]
    assert len(infos) == len(anims)
    assert all(t.count(". ") >= 1 for t in infos)


def test_benchmark_text_renders_as_plain_text(app, evil_benchmark):
    from apptest_helpers import assert_rendered_as_text

    at = app(page="learn")
    no_exceptions(at)
    assert_rendered_as_text(at)


def _shown_step(at) -> int:
    heads = [m.value for m in at.markdown if re.match(r"## Step \d+ of \d+", m.value)]
    assert len(heads) == 1, [m.value for m in at.markdown]
    return int(re.match(r"## Step (\d+)", heads[0]).group(1))


def _presenter_points(at) -> int:
    """Steps drawn in the presenter chart (every option's curve has one point per step shown)."""
    (spec,) = [c for c in charts(at) if not c.get("frames") and "loop_label" not in json.dumps(c)]
    lens = {len(arr(t["y"])) for t in spec["data"]}
    assert len(lens) == 1
    return lens.pop()


def test_presenter_mode_steps_through_one_example(app):
    at = app(page="learn")
    at.toggle(key="learn_presenter").set_value(True).run()
    no_exceptions(at)
    assert not at.tabs, "presenter mode shows one example, not the tabs"
    assert len([c for c in charts(at)]) == 1, "one chart at a time"
    kind = at.segmented_control(key="learn_pres_kind").value
    assert _shown_step(at) == 1 and _presenter_points(at) == 1
    assert at.button(key="learn_prev").disabled
    at.button(key="learn_next").click().run()
    at.button(key="learn_next").click().run()
    assert _shown_step(at) == 3 and _presenter_points(at) == 3
    at.button(key="learn_prev").click().run()
    assert _shown_step(at) == 2 and _presenter_points(at) == 2
    at.button(key="learn_first").click().run()
    assert _shown_step(at) == 1 and at.button(key="learn_prev").disabled  # the lower bound
    # the upper bound: Next up to the last step, where it is disabled; a step out of range is clamped
    at.session_state[f"learn_step_{kind}"] = 29
    at.run()
    at.button(key="learn_next").click().run()
    assert _shown_step(at) == 30 and at.button(key="learn_next").disabled
    assert not at.button(key="learn_prev").disabled and _presenter_points(at) == 30
    at.session_state[f"learn_step_{kind}"] = 99
    at.run()
    assert _shown_step(at) == 30
    # the explanation of the current step is there, in large type, and the run's explanation at the last step
    assert any(m.value.startswith("#### ") and "belief" in m.value for m in at.markdown)
    no_exceptions(at)
    assert not at.error, [e.value for e in at.error]


def test_sidebar_hides_the_run_controls_on_learn_and_keeps_them_for_explore(app):
    at = app()
    steps = at.sidebar.number_input(key="steps")
    assert at.sidebar.number_input(key="seed") is not None
    steps.set_value(12).run()
    at.sidebar.number_input(key="seed").set_value(5).run()
    at.switch_page("pages/learn.py").run()
    no_exceptions(at)
    keys = {n.key for n in at.sidebar.number_input}
    assert not keys & {"steps", "seed", "init", "run_length"}, keys
    note = " ".join(c.value for c in at.sidebar.caption)
    assert "Learn runs" in note and "30 steps" in note
    at.switch_page("pages/explore.py").run()
    no_exceptions(at)
    assert at.sidebar.number_input(key="steps").value == 12
    assert at.sidebar.number_input(key="seed").value == 5
    assert at.sidebar.number_input(key="run_length") is not None
    at.switch_page("pages/compare.py").run()
    assert at.sidebar.number_input(key="steps").value == 12


def test_sidebar_draws_only_the_run_controls_a_page_uses(app):
    """Models sets its own steps (a multiple of each model's trained depth); Benchmark reads saved results."""
    at = app(page="models")
    no_exceptions(at)
    keys = {n.key for n in at.sidebar.number_input}
    assert "steps" not in keys and {"seed", "init", "run_length"} <= keys, keys
    assert any("trained depth" in c.value for c in at.sidebar.caption)
    at.switch_page("pages/benchmark.py").run()
    no_exceptions(at)
    assert not {n.key for n in at.sidebar.number_input} & {"steps", "seed", "init", "run_length"}
    assert any("saved results" in c.value for c in at.sidebar.caption)
