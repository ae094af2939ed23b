"""Real-browser checks of issue 13 on the shipped default model: Compare and Benchmark open without an exception,
Compare's variant chart has one legend (each option once), no table is clipped on the right at 1400 and 1000 px,
and Explore's "Make PNG" gives a "Download PNG" button.  Screenshots at 1400x1000 and 1000x800 go to
tests/artifacts/pages/ (or $LOOPLENS_SHOTS_DIR)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from backend import plots
from backend.models.runtime import default_model
from test_browser import ARTIFACTS, CHROMIUM, browser, streamlit_server  # noqa: F401  (fixture)

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on PATH (Debian: apt-get install -y chromium)")

SHOTS = Path(os.environ.get("LOOPLENS_SHOTS_DIR") or ARTIFACTS / "pages")
SIZES = ((1400, 1000), (1000, 800))
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
EXC = "[data-testid='stException']"

# Per chart: its title and the legend entries drawn (Plotly's DOM), and per static table whether it is cut on the
# right (content wider than its box).
JS_STATE = """() => ({
  charts: Array.from(document.querySelectorAll('.js-plotly-plot')).map(el => ({
    title: (el.layout && el.layout.title && el.layout.title.text) || '',
    legend: Array.from(el.querySelectorAll('.legend .traces .legendtext')).map(t => t.textContent)})),
  tables_cut: Array.from(document.querySelectorAll("[data-testid='stTable']")).map(
    el => el.scrollWidth > el.clientWidth + 1),
  h1: document.querySelectorAll('h1').length})"""


@pytest.fixture(scope="module")
def default_server():
    model = default_model()
    if not model:
        pytest.skip("no model shipped in data/models")
    with streamlit_server(model, "server-pages.log") as url:
        yield url


def _open(page, url: str, min_charts: int):
    page.goto(url)
    page.wait_for_selector(IDLE, timeout=300_000)
    page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {min_charts}",
                           timeout=300_000)
    page.wait_for_selector(IDLE, timeout=300_000)
    page.wait_for_timeout(1500)  # the last charts finish drawing


def _shoot(page, name: str, width: int, height: int) -> None:
    """The first screen at this size, then the whole page (Streamlit scrolls inside its main container, so the
    viewport is stretched to the content's height)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}-{width}x{height}.png"))
    full = page.evaluate("() => (document.querySelector(\"[data-testid='stMain']\") || document.body).scrollHeight")
    page.set_viewport_size({"width": width, "height": min(int(full) + 40, 12_000)})
    page.wait_for_timeout(1200)
    page.screenshot(path=str(SHOTS / f"{name}-{width}x{height}-full.png"), full_page=True)
    page.set_viewport_size({"width": width, "height": height})


@pytest.mark.parametrize("width,height", SIZES)
def test_compare_and_benchmark_on_the_default_model(default_server, browser, width, height):  # noqa: F811
    page = browser.new_page(viewport={"width": width, "height": height})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    _open(page, f"{default_server}/compare", min_charts=5)
    assert page.locator(EXC).count() == 0
    state = page.evaluate(JS_STATE)
    variants = next(c for c in state["charts"] if "averaged over answer orders" in c["title"])
    # one legend for the three panels: every option once (Base's four, Easy's three, NCA's replacement)
    assert len(variants["legend"]) == len(set(variants["legend"])) == 8, variants["legend"]
    assert state["h1"] == 1 and not any(state["tables_cut"]), state
    _shoot(page, "compare", width, height)

    _open(page, f"{default_server}/benchmark", min_charts=5)
    assert page.locator(EXC).count() == 0
    assert page.locator("[data-testid='stMetric']").count() >= 6  # the headline numbers
    state = page.evaluate(JS_STATE)
    assert state["h1"] == 1, "a second H1 (the report's Markdown heading) is on the page"
    assert state["tables_cut"] and not any(state["tables_cut"]), state["tables_cut"]
    assert page.get_by_text("not a replication of the paper").count() >= 1
    _shoot(page, "benchmark", width, height)
    assert not errors, errors


@pytest.mark.skipif(plots.chromium_path() is None, reason="PNG export needs a Chromium/Chrome")
def test_make_png_on_explore_gives_a_download(default_server, browser):  # noqa: F811
    pytest.importorskip("kaleido")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    _open(page, f"{default_server}/", min_charts=3)
    page.get_by_role("button", name="Make PNG").click()
    page.get_by_role("button", name="Download PNG").wait_for(timeout=120_000)
    page.wait_for_selector(IDLE, timeout=120_000)
    assert page.locator(EXC).count() == 0
    assert page.get_by_text("PNG export failed").count() == 0
