import json

from apptest_helpers import charts, no_exceptions


def test_learn_walkthrough_has_a_diagram_and_animated_examples(app):
    at = app(page="learn")
    no_exceptions(at)
    assert not at.error, [e.value for e in at.error]
    assert len(at.tabs) == 6
    assert at.get("graphviz_chart")
    anims = [c for c in charts(at) if c.get("frames")]
    assert anims, "no animated figure"
    for spec in anims:
        labels = [b["label"] for b in spec["layout"]["updatemenus"][0]["buttons"]]
        assert any("play" in l for l in labels) and any("pause" in l for l in labels)
        assert len(spec["frames"]) == 30
    # every shown example has a two-sentence explanation
    infos = [i.value for i in at.info if "no clear example" not in i.value]
    assert len(infos) == len(anims)
    assert all(t.count(". ") >= 1 for t in infos)


def test_benchmark_text_renders_as_plain_text(app, evil_benchmark):
    from apptest_helpers import assert_rendered_as_text

    at = app(page="learn")
    no_exceptions(at)
    assert_rendered_as_text(at)
