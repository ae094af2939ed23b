"""Real-browser checks that the app offers content the default model can read (issue 13, "Right content for the
model"): the pre-filled question and the items of the first offered benchmark run without an error, and a
question with words the model does not know gets one plain message, no exception and no progress bar left.

Every item of every offered file is traced on the default model in tests/test_uploads.py (the browser checks the
first few through the picker).  Screenshots at 1400x1000 go to tests/artifacts/content-*.png."""
from __future__ import annotations

import pytest

from test_browser import ARTIFACTS, CHROMIUM, browser, streamlit_server  # noqa: F401  (fixtures, helpers)

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on PATH (Debian: apt-get install -y chromium)")

IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
PROBLEMS = "[data-testid='stException'], [data-testid='stAlertContentError']"
N_ITEMS = 4  # items of the first offered benchmark picked in the browser


@pytest.fixture(scope="module")
def server():
    """The app on the default model (the first shipped one: cups-letters)."""
    from backend.models.runtime import default_model

    with streamlit_server(default_model(), "server-content.log") as url:
        yield url


def _idle(page, settle_ms: int = 1000) -> None:
    page.wait_for_timeout(300)  # the rerun a widget change starts
    page.wait_for_selector(IDLE, timeout=180_000)
    page.wait_for_timeout(settle_ms)


def _belief_drawn(page) -> None:
    page.wait_for_function("Array.from(document.querySelectorAll('.js-plotly-plot')).some(el => el.layout && "
                           "el.layout.title && /Belief over the options/.test(el.layout.title.text || ''))",
                           timeout=180_000)


def _problems(page) -> list:
    boxes = page.locator(PROBLEMS)
    return [boxes.nth(i).inner_text()[:300] for i in range(boxes.count())]


def _open(browser, url: str):
    """Explore in a new 1400x1000 page, idle; returns (page, the page's JavaScript errors as they come)."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{url}/")
    _idle(page)
    return page, errors


def _pick(page, label: str, option_text: str) -> None:
    page.locator("[data-testid='stSelectbox']").filter(has_text=label).first.click()
    page.get_by_role("option").filter(has_text=option_text).first.click()
    _idle(page)


def test_prefilled_question_and_first_benchmark_items_run_on_the_default_model(server, browser):
    page, errors = _open(browser, server)
    _belief_drawn(page)
    assert not _problems(page)
    bench = page.locator("[data-testid='stSelectbox']").filter(has_text="Benchmark").first
    assert "bench=cups-letters-test.jsonl" in page.url  # the model's own test split is offered first
    assert page.get_by_text("Notation:", exact=False).count() == 1

    # the benchmark picker: the model's own splits first, general-qa last and labelled
    bench.click()
    options = page.get_by_role("option").all_inner_texts()
    assert options[:3] == ["cups-letters-test.jsonl", "cups-letters-probe.jsonl", "cups-letters-hard.jsonl"]
    assert options[-1] == "general-qa.jsonl (words this model does not know)"
    page.screenshot(path=str(ARTIFACTS / "content-picker.png"))
    page.keyboard.press("Escape")
    _idle(page)

    # the first items of the first offered file, chosen in the item picker
    for k in range(N_ITEMS):
        item_id = f"cl-test-{k:04d}"
        _pick(page, "Item (", item_id)
        _belief_drawn(page)
        assert not _problems(page), (item_id, _problems(page))
        assert f"item={item_id}" in page.url

    # the pre-filled "Your question" runs too
    page.get_by_text("Your question", exact=True).click()
    _idle(page)
    _belief_drawn(page)
    question = page.get_by_label("Question", exact=True).input_value()
    assert question.startswith("ball c") and question.endswith("?")
    assert not _problems(page), _problems(page)
    assert page.locator("[data-testid='stProgress']").count() == 0
    assert not errors, errors


def test_a_question_with_unknown_words_gets_a_plain_message_and_no_progress_bar(server, browser):
    page, errors = _open(browser, server)
    page.get_by_text("Your question", exact=True).click()
    _idle(page)
    box = page.get_by_label("Question", exact=True)
    box.fill("What is the capital of Australia?")
    box.press("Control+Enter")
    _idle(page, 1500)
    (msg,) = _problems(page)
    assert "cups-letters does not know the words 'What', 'is', 'the', 'capital', 'of', 'Australia?'" in msg
    assert "38 words" in msg and "reword" not in msg and "[UNK]" not in msg
    assert page.locator("[data-testid='stException']").count() == 0
    assert page.locator("[data-testid='stProgress']").count() == 0
    assert page.get_by_text("Tracing: step", exact=False).count() == 0
    page.screenshot(path=str(ARTIFACTS / "content-unknown-words.png"))

    # a benchmark of English questions: labelled in the picker, its items refused before running
    page.get_by_text("Benchmark item", exact=True).click()
    _idle(page)
    _pick(page, "Benchmark", "general-qa.jsonl")
    problems = _problems(page)
    assert any("does not know the words" in p for p in problems), problems
    assert page.locator("[data-testid='stException']").count() == 0
    assert page.locator("[data-testid='stProgress']").count() == 0
    page.screenshot(path=str(ARTIFACTS / "content-unreadable-benchmark.png"))
    assert not errors, errors
