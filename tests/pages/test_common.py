"""pages/common.py helpers: the run store, and (AppTest, on the shipped default model) what the pages say about
content the model cannot read, a failed run's progress bar and an empty local directory."""
import pytest

from apptest_helpers import app_factory, charts, no_exceptions
from pages.common import RunStore


def test_run_store_is_a_bounded_lru():
    s = RunStore(maxsize=2)
    s.put("a", 1), s.put("b", 2), s.get("a"), s.put("c", 3)
    assert s.get("b") is None and s.get("a") == 1 and len(s) == 2


@pytest.fixture
def cups_app(monkeypatch):
    """The app on the shipped default model (cups-letters: a 38-word vocabulary)."""
    return app_factory(monkeypatch, "cups-letters", timeout=300)


def errors(at):
    return [e.value.replace("\\", "") for e in at.error]


def test_explore_prefills_a_question_the_default_model_reads_and_runs_it(cups_app):
    at = cups_app()
    no_exceptions(at)
    assert at.selectbox(key="bench").value == "cups-letters-test.jsonl"
    assert any("Notation:" in c.value for c in at.caption)
    at.radio(key="source").set_value("Your question").run()
    no_exceptions(at)
    assert at.text_area(key="q").value.startswith("ball c")
    assert not at.error, errors(at)
    assert any("Belief over the options" in (s["layout"].get("title") or {}).get("text", "") for s in charts(at))
    assert any("Notation:" in c.value for c in at.caption)


def test_a_question_with_unknown_words_gets_one_plain_message_and_no_progress_bar(cups_app):
    at = cups_app()
    at.radio(key="source").set_value("Your question").run()
    at.text_area(key="q").set_value("What is the capital of Australia?").run()
    no_exceptions(at)
    (msg,) = errors(at)  # said once, under the question, and nothing ran
    assert "cups-letters does not know the words 'What', 'is', 'the', 'capital', 'of', 'Australia?'" in msg
    assert "38 words" in msg and "ball" in msg and "reword" not in msg and "[UNK]" not in msg
    assert not at.get("progress") and not charts(at)


def test_an_unreadable_benchmark_is_labelled_and_its_items_refused_before_running(cups_app):
    at = cups_app("compare")
    box = at.selectbox(key="bench")
    assert box.options[-1] == "general-qa.jsonl (words this model does not know)"
    assert any("Notation:" in c.value for c in at.caption)  # under the cups item
    box.set_value("general-qa.jsonl").run()
    no_exceptions(at)
    assert any("does not know words of this file" in w.value.replace("\\", "") for w in at.warning)
    assert any(m.startswith("Run: cups-letters does not know the words") for m in errors(at)), errors(at)
    assert not at.get("progress")


def test_a_failed_run_leaves_its_message_and_no_progress_bar(cups_app, monkeypatch):
    from backend.errors import LoopLensError
    from backend.trace import TraceRequest

    def fail(self, bundle, on_step=None):
        on_step(1, [])
        raise LoopLensError("the model broke")

    monkeypatch.setattr(TraceRequest, "run", fail)
    at = cups_app()
    at.sidebar.number_input(key="steps").set_value(29).run()  # a run not cached by an earlier test
    no_exceptions(at)
    assert "Run: the model broke" in errors(at)
    assert not at.get("progress")


def test_an_empty_local_directory_asks_for_one(cups_app):
    at = cups_app()
    at.sidebar.selectbox(key="model_choice").set_value("Local directory…").run()
    no_exceptions(at)
    text = " ".join(i.value for i in at.info)
    assert "Enter a checkpoint directory" in text and "tokenizer.json" in text
    assert "nothing is shipped" not in text and not at.warning


def test_the_short_run_note_counts_one_step_in_the_singular():
    from pages.common import short_trajectory_note

    assert short_trajectory_note(1, 3).startswith("With 1 step a commitment")
    assert short_trajectory_note(4, 3).startswith("With 4 steps a commitment")
    assert short_trajectory_note(30, 3) is None


def test_the_models_page_prefills_a_question_the_default_model_reads(cups_app):
    """Explore and Models share the question box: whichever opens first fills it with a question the model reads."""
    at = cups_app("models")
    at.radio(key="models_source").set_value("Your question").run()
    no_exceptions(at)
    assert at.text_area(key="q").value.startswith("ball c")
    assert not at.error and not at.warning, errors(at) + [w.value for w in at.warning]
    assert charts(at)
    at.switch_page("pages/explore.py").run()
    at.radio(key="source").set_value("Your question").run()
    assert at.text_area(key="q").value.startswith("ball c") and not at.error, errors(at)
