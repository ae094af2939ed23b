"""Real-browser checks of Explore's layout (issue 13): on the default model the belief chart is the first chart
and its top edge is inside the first screenful at 1400x1000 (and at 1000x800), no exception shows, a long run
gets a logarithmic step axis; screenshots go to tests/artifacts/ (git-ignored)."""
from __future__ import annotations

import pytest

from backend.models.runtime import default_model
from test_browser import ARTIFACTS, CHROMIUM, browser, streamlit_server  # noqa: F401  (fixtures)

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on PATH (Debian: apt-get install -y chromium)")

FIRST_CHART = """() => {
    const el = document.querySelector('.js-plotly-plot');
    if (!el) return null;
    const r = el.getBoundingClientRect();
    return {top: r.top, title: (el.layout && el.layout.title && el.layout.title.text) || '',
            xtype: (el.layout && el.layout.xaxis && el.layout.xaxis.type) || '',
            xtitle: (el.layout && el.layout.xaxis && el.layout.xaxis.title && el.layout.xaxis.title.text) || ''};
}"""


@pytest.fixture(scope="module")
def default_server():
    model = default_model()
    if model is None:
        pytest.skip("no shipped model")
    with streamlit_server(model, "server-explore.log") as url:
        yield url


def _open(browser, url: str, width: int, height: int):  # noqa: F811
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(url)
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=180_000)
    # the belief chart drawn (charts further down may be drawn before it)
    page.wait_for_function("Array.from(document.querySelectorAll('.js-plotly-plot')).some(el => el.layout && "
                           "el.layout.title && (el.layout.title.text || '').includes('Belief over the options') && "
                           "el.querySelector('.main-svg'))", timeout=180_000)
    page.wait_for_timeout(1000)
    return page


@pytest.mark.parametrize("width,height", [(1400, 1000), (1000, 800)])
def test_belief_chart_is_in_the_first_screenful(default_server, browser, width, height):  # noqa: F811
    page = _open(browser, f"{default_server}/", width, height)
    first = page.evaluate(FIRST_CHART)
    assert first is not None and "Belief over the options" in first["title"]
    assert 0 < first["top"] < height, first  # its top edge is visible without scrolling
    assert page.locator("[data-testid='stException']").count() == 0
    assert page.locator("[data-testid='stAlertContentError']").count() == 0
    page.screenshot(path=str(ARTIFACTS / f"explore-first-screen-{width}x{height}.png"))
    page.close()


def test_many_steps_get_a_log_step_axis(default_server, browser):  # noqa: F811
    page = _open(browser, f"{default_server}/?steps=256", 1400, 1000)
    first = page.evaluate(FIRST_CHART)
    assert first["xtype"] == "log" and "log scale" in first["xtitle"]
    assert page.locator("[data-testid='stException']").count() == 0
    page.screenshot(path=str(ARTIFACTS / "explore-256-steps.png"))
    page.close()
