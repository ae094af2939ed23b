import json

import numpy as np

from backend.metrics import analyze_trajectory
from apptest_helpers import arr, chart_by_title, charts, no_exceptions


def _belief(at):
    return chart_by_title(at, "Belief over the options")


def test_explore_opens_with_an_item_and_plots_one_trace_per_option(app, tiny_bundle):
    at = app()
    no_exceptions(at)
    assert not at.error, [e.value for e in at.error]
    spec = _belief(at)
    lines = spec["data"]
    assert len(lines) == 4  # one trace per option (benchmark items have 4)
    assert sum("correct" in d["name"] for d in lines) == 1
    for title in ("Raw option mass", "Step KL", "Entropy", "Top tokens", "Latent state", "Per-token convergence",
                  "seeds"):
        chart_by_title(at, title)
    assert [m.label for m in at.metric][:3] == ["Final answer", "Correct?", "Exploration length"]
    # issue 11: with no steps in the link, the steps follow the model's trained depth (8 for the tiny model)
    assert at.query_params["steps"] == str(tiny_bundle.default_steps) and at.query_params["seed"] == "0"


def test_belief_shapes_are_where_the_metrics_say(app):
    at = app()
    spec = _belief(at)
    probs = np.array([arr(d["y"]) for d in spec["data"]]).T
    m = analyze_trajectory(probs)
    shapes = spec["layout"].get("shapes", [])
    ann = spec["layout"].get("annotations", [])
    ex = [s for s in shapes if s.get("name") == "exploration_end"]
    if m.exploration_end is None:
        assert not ex and any(a.get("name") == "never_converged" for a in ann)
    else:
        assert [s["x0"] for s in ex] == [m.exploration_end]
    com = [s for s in shapes if s.get("name") == "commitment"]
    assert [(s["x0"], s["x1"]) for s in com] == [(c.start - 0.5, c.end + 0.5) for c in m.commitments]
    bts = [a for a in ann if a.get("name") == "backtrack"]
    assert [(a["x"], a["text"]) for a in bts] == [(b.start, f"{'ABCD'[a.option]} -> {'ABCD'[b.option]}")
                                                  for a, b in m.backtracks]
    expl = [x.value for x in at.metric if x.label == "Exploration length"][0]
    assert expl == ("never converged" if m.exploration_end is None else f"{m.exploration_end} steps")


def test_own_question_with_too_few_options_shows_a_message_not_a_traceback(app):
    at = app()
    at.radio(key="source").set_value("Your question").run()
    at.text_area(key="opts").set_value("only one option").run()
    no_exceptions(at)
    assert any("2 to 10 options" in e.value for e in at.error)
    at.text_area(key="opts").set_value("Paris\nLondon\nRome").run()
    no_exceptions(at)
    assert not at.error
    assert len(_belief(at)["data"]) == 3
    assert at.query_params["opts"] == "Paris|London|Rome"


def test_unknown_model_directory_is_a_message_and_sidebar_stays_usable(app, tmp_path):
    at = app()
    at.selectbox(key="model_choice").set_value("Local directory…").run()
    at.text_input(key="model_dir").set_value(str(tmp_path / "nope")).run()
    no_exceptions(at)
    assert any("not found" in e.value for e in at.error)
    assert at.selectbox(key="model_choice") is not None
    at.selectbox(key="model_choice").set_value(at.selectbox(key="model_choice").options[0]).run()
    no_exceptions(at)
    assert not at.error and _belief(at)


def test_wrong_format_model_directory_is_a_message(app, tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    at = app()
    at.selectbox(key="model_choice").set_value("Local directory…").run()
    at.text_input(key="model_dir").set_value(str(tmp_path)).run()
    no_exceptions(at)
    assert at.error


def test_upload_lists_bad_lines_and_uses_good_ones(app):
    at = app()
    at.radio(key="source").set_value("Upload JSONL").run()
    good = {"id": "u1", "domain": "factual", "question": "What colour is the sky?", "answer": "blue",
            "distractors": ["green", "red", "yellow"]}
    data = (json.dumps(good) + "\n{broken\n" + json.dumps({"id": "u2"}) + "\n").encode()
    at.file_uploader(key="upload").upload("mine.jsonl", data).run()
    no_exceptions(at)
    assert any("2 lines skipped" in e.label and "1 item usable" in e.label for e in at.expander)
    assert at.selectbox(key="item").value == "u1"
    assert len(_belief(at)["data"]) == 4


def test_invalid_template_is_a_message(app):
    at = app()
    ta = [t for t in at.text_area if (t.key or "").startswith("template_json::")][0]
    ta.set_value('{"prompt": "no placeholders"}').run()
    no_exceptions(at)
    assert any("placeholder" in e.value for e in at.error)


def test_step_slider_and_query_params_reproduce_the_view(app):
    at = app(query={"item": "fact-002", "seed": "5", "steps": "12", "variant": "easy", "perm": "3"})
    no_exceptions(at)
    if at.selectbox(key="item").value != "fact-002":  # benchmark file without that id: fine, nothing to check
        return
    assert at.number_input(key="seed").value == 5 and at.number_input(key="steps").value == 12
    assert at.selectbox(key="variant").value == "easy" and at.number_input(key="perm").value == 3
    assert len(arr(_belief(at)["data"][0]["x"])) == 12
    at.slider(key="step_slider").set_value(4).run()
    assert "step 4" in chart_by_title(at, "Top tokens")["layout"]["title"]["text"]
    assert at.query_params["item"] == "fact-002" and at.query_params["variant"] == "easy"


def test_bad_link_values_are_reported_not_raised(app, tiny_bundle):
    at = app(query={"steps": "9999", "variant": "weird"})
    no_exceptions(at)
    assert at.number_input(key="steps").value == tiny_bundle.default_steps  # a bad value: the model's default
    assert any("variant" in c.value for c in at.sidebar.caption)


def test_no_model_shows_a_message(app, monkeypatch):
    from backend.models import runtime

    monkeypatch.delenv("LOOPLENS_DEFAULT_MODEL")
    monkeypatch.setattr(runtime, "default_model", lambda: None)
    monkeypatch.setattr(runtime, "model_choices", lambda: [])
    at = app()
    no_exceptions(at)
    assert any("No model is available" in w.value for w in at.warning)


def test_question_and_options_from_a_link_render_as_plain_text(app):
    from apptest_helpers import EVIL, assert_rendered_as_text

    at = app(query={"q": EVIL, "opts": f"{EVIL}|[phish](http://evil.example)|<a href='http://evil.example'>x</a>",
                    "ans": "A", "variant": EVIL})
    no_exceptions(at)
    assert at.radio(key="source").value == "Your question"
    assert len(_belief(at)["data"]) == 3
    assert_rendered_as_text(at)


def test_uploaded_items_and_their_errors_render_as_plain_text(app):
    from apptest_helpers import EVIL, assert_rendered_as_text

    at = app()
    at.radio(key="source").set_value("Upload JSONL").run()
    good = {"id": "u1", "domain": "factual", "question": EVIL, "answer": "[a](http://evil.example)",
            "distractors": ["![b](http://evil.example/b.png)", "c", "d"]}
    bad = {"id": "u2", "question": EVIL, "answer": EVIL, "distractors": [EVIL]}
    data = (json.dumps(good) + "\n" + json.dumps(bad) + "\n").encode()
    at.file_uploader(key="upload").upload("[f](http://evil.example).jsonl", data).run()
    no_exceptions(at)
    assert len(_belief(at)["data"]) == 4
    assert_rendered_as_text(at)


def test_template_with_a_huge_format_spec_is_refused_before_anything_is_built(app):
    at = app()
    ta = [t for t in at.text_area if (t.key or "").startswith("template_json::")][0]
    tmpl = json.loads(ta.value)
    tmpl["option_format"] = "{letter}) {option:>20000000}"
    ta.set_value(json.dumps(tmpl)).run()
    no_exceptions(at)
    assert any("format spec" in e.value for e in at.error), [e.value for e in at.error]
    assert not [c for c in at.code if len(c.value) > 100_000]


def test_upload_with_a_lone_surrogate_or_over_the_limit_is_a_message(app):
    from backend.uploads import MAX_UPLOAD_BYTES

    at = app()
    at.radio(key="source").set_value("Upload JSONL").run()
    assert f"up to {MAX_UPLOAD_BYTES // 2**20} MB" in at.get("file_uploader")[0].label
    good = {"id": "u1", "question": "What colour is the sky?", "answer": "blue", "distractors": ["green", "red"]}
    bad = '{"id": "u2", "question": "Sky\\ud800?", "answer": "blue", "distractors": ["green", "red"]}'
    at.file_uploader(key="upload").upload("s.jsonl", (json.dumps(good) + "\n" + bad + "\n").encode()).run()
    no_exceptions(at)
    assert any("1 line skipped" in e.label for e in at.expander)  # issue 13: no "line(s)"
    assert any("surrogate" in m.value for m in at.markdown)
    assert at.selectbox(key="item").value == "u1"
    at.file_uploader(key="upload").upload("big.jsonl", b"x" * (MAX_UPLOAD_BYTES + 1)).run()
    no_exceptions(at)
    assert any("limited to" in e.value for e in at.error), [e.value for e in at.error]


# ---------------------------------------------------------------------------------------------- issue 13
def _help(at, label):
    return [m.proto.help for m in at.metric if m.label == label][0]


def test_metric_helps_define_each_term_with_the_thresholds_in_force(app):
    from backend.settings import KL_THRESHOLD, KL_WINDOW, MASS_THRESHOLD

    at = app()
    no_exceptions(at)
    labels = [m.label for m in at.metric]
    assert set(labels) >= {"Final answer", "Correct?", "Exploration length", "Option mass", "Commitments",
                           "Backtracks"}
    for m in at.metric:  # every number says what it means, and not by repeating itself
        assert m.proto.help and len(m.proto.help) > 60 and str(m.value) not in (m.proto.help, "")
    assert "3 consecutive steps" in _help(at, "Commitments")
    assert f"{KL_THRESHOLD:g}" in _help(at, "Exploration length") and f"{KL_WINDOW} steps" in _help(
        at, "Exploration length")
    assert f"{MASS_THRESHOLD:g}" in _help(at, "Option mass")
    assert any("renormalised over the options" in c.value for c in at.caption)  # belief vs raw mass, KL
    at.number_input(key="run_length").set_value(4).run()
    assert "4 consecutive steps" in _help(at, "Commitments") and ">= 4 steps" in _help(at, "Backtracks")


def test_a_changing_answer_without_backtracks_gets_the_run_length_hint(app):
    at = app()
    for seed in range(6):  # a run whose argmax changes (random tiny model: find one)
        if seed:
            at.number_input(key="seed").set_value(seed).run()
        probs = np.array([arr(d["y"]) for d in _belief(at)["data"]]).T
        am = probs.argmax(axis=1)
        if (am[1:] != am[:-1]).any():
            break
    else:
        raise AssertionError("no seed of the tiny model changes its answer")
    changes = int((am[1:] != am[:-1]).sum())
    # a run length as long as the run: no commitments unless constant, hence no backtrack
    at.number_input(key="run_length").set_value(len(am)).run()
    no_exceptions(at)
    hints = [i.value for i in at.info if i.value.startswith("0 backtracks")]
    assert hints and f"changed {changes} time" in hints[0] and f"held for {len(am)} steps" in hints[0]
    assert [m.value for m in at.metric if m.label == "Backtracks"] == ["0"]
    at.number_input(key="run_length").set_value(1).run()  # every change is a backtrack now: no hint
    assert not [i for i in at.info if i.value.startswith("0 backtracks")]


def test_no_bad_plurals_on_the_page(app):
    import re

    from apptest_helpers import markdown_sources

    at = app()
    at.number_input(key="n_seeds").set_value(1).run()
    no_exceptions(at)
    texts = markdown_sources(at) + [str(m.value) for m in at.metric] + [p.proto.popover.label for p in at.get("popover")]
    assert any("Run options (1 seed)" in t for t in texts)
    for t in texts:
        assert not re.search(r"(?<![\d.])1 (steps|seeds|lines|items|times|backtracks)\b", t), t
        assert "(s)" not in t, t


def test_a_failed_run_still_leaves_a_link_that_reproduces_the_view(app, monkeypatch):
    from backend.errors import LoopLensError
    from backend.trace import TraceRequest

    def fail(self, *a, **k):
        raise LoopLensError("the model cannot read this question")

    at = app()
    at.radio(key="source").set_value("Your question").run()
    monkeypatch.setattr(TraceRequest, "run", fail)
    at.text_area(key="q").set_value("Which is first?").run()
    at.text_area(key="opts").set_value("alpha\nbeta\ngamma").run()
    at.number_input(key="seed").set_value(7).run()
    no_exceptions(at)
    assert any("cannot read this question" in e.value for e in at.error)
    assert not charts(at)
    q = at.query_params
    assert q["q"] == "Which is first?" and q["opts"] == "alpha|beta|gamma" and q["seed"] == "7"
