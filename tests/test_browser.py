"""Real-browser test: start the server, load Explore and Compare in headless Chromium, wait for the charts,
check the number of plotted traces, and save screenshots to tests/artifacts/ (git-ignored)."""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import pytest

from serving import free_port, server_process, streamlit_command

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on PATH (Debian: apt-get install -y chromium)")


@contextlib.contextmanager
def streamlit_server(model_dir, log_name: str = "server.log"):
    """A fresh ``streamlit run app.py`` on a free port, healthy; yields its URL and stops it afterwards."""
    port = free_port()
    env = {**os.environ, "LOOPLENS_DEFAULT_MODEL": os.environ.get("LOOPLENS_BROWSER_MODEL", str(model_dir)),
           "LOOPLENS_TORCH_THREADS": "1"}
    with contextlib.ExitStack() as stack:
        try:
            url, _, _ = stack.enter_context(server_process(streamlit_command(port), port, ARTIFACTS / log_name,
                                                           env=env))
        except RuntimeError as exc:  # exited, or not healthy in time: the test fails with the server's log
            pytest.fail(str(exc))
        yield url


@pytest.fixture(scope="module")
def server(tiny_dir):
    with streamlit_server(tiny_dir) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


JS_CHARTS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(el => ({
    title: (el.layout && el.layout.title && el.layout.title.text) || '',
    traces: (el.data || []).length,
    drawn: el.querySelectorAll('.scatterlayer .trace, .barlayer .trace, .heatmaplayer .hm').length,
    shapes: ((el.layout && el.layout.shapes) || []).map(s => s.name)}))"""


def _load(page, url: str, min_charts: int, timeout_ms: int = 180_000):
    page.goto(url)
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=timeout_ms)
    page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {min_charts}",
                           timeout=timeout_ms)
    page.wait_for_timeout(1500)  # let the last charts finish drawing
    return page.evaluate(JS_CHARTS)


def _chart(charts, title_part: str) -> dict:
    found = [c for c in charts if title_part.lower() in c["title"].lower()]
    assert found, f"no chart with {title_part!r} in {[c['title'] for c in charts]}"
    return found[0]


def test_explore_and_compare_in_a_real_browser(server, browser):
    # Streamlit scrolls inside its main container: a tall viewport makes the screenshot show the whole page.
    page = browser.new_page(viewport={"width": 1400, "height": 4200})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    charts = _load(page, f"{server}/", min_charts=6)
    belief = _chart(charts, "Belief over the options")
    assert belief["traces"] == 4 and belief["drawn"] == 4
    assert _chart(charts, "Raw option mass")["traces"] == 5
    assert _chart(charts, "Step KL")["traces"] == 1
    assert page.locator("[data-testid='stException']").count() == 0
    # the shareable view is in the address bar; steps default to the model's trained depth (issue 11)
    assert "steps=8" in page.url and "item=" in page.url
    page.screenshot(path=str(ARTIFACTS / "explore.png"), full_page=True)

    charts = _load(page, f"{server}/compare", min_charts=5)
    variants = _chart(charts, "averaged over answer orders")
    assert variants["traces"] == 3 * 4 * 2  # 3 variants x 4 options x (band + mean)
    details = [c for c in charts if c["title"].endswith("belief over the options")]
    assert len(details) == 3 and all(c["traces"] == 4 for c in details)
    assert page.locator("[data-testid='stException']").count() == 0
    assert page.get_by_text("Page not found").count() == 0
    page.screenshot(path=str(ARTIFACTS / "compare.png"), full_page=True)

    # A shared link reproduces the view: open Explore with parameters in the query string.
    charts = _load(page, f"{server}/?item=fact-003&seed=4&steps=20&variant=nca", min_charts=6)
    belief = _chart(charts, "Belief over the options")
    assert belief["traces"] == 4
    assert page.get_by_text("no correct option").count() >= 1 or page.get_by_text("No correct").count() >= 1
    assert page.get_by_text("Page not found").count() == 0
    page.screenshot(path=str(ARTIFACTS / "explore-link.png"), full_page=True)
    assert not errors, errors


def test_ouro_belief_and_exit_chart_in_a_real_browser(tmp_path, browser):
    """issue 11: Explore draws an Ouro checkpoint's belief, its exit-gate chart and the beyond-depth shading."""
    from model_builders import make_family_dir

    d = make_family_dir(tmp_path / "ouro", "ouro")
    with streamlit_server(d, "server-ouro.log") as url:
        page = browser.new_page(viewport={"width": 1400, "height": 4200})
        charts = _load(page, f"{url}/?steps=6", min_charts=6)
        belief = _chart(charts, "Belief over the options")
        assert belief["traces"] == 4 and belief["drawn"] == 4
        assert "beyond_trained_depth" in belief["shapes"]
        ex = _chart(charts, "Exit probability")
        assert ex["traces"] == 1 and ex["drawn"] == 1
        assert page.get_by_text("Ouro", exact=False).count() >= 1
        assert page.locator("[data-testid='stException']").count() == 0
        page.screenshot(path=str(ARTIFACTS / "explore-ouro.png"), full_page=True)


def test_concurrent_sessions_on_a_fresh_server_all_get_their_charts(tiny_dir, browser):
    """8 sessions open Explore at the same moment on a server that has run no page yet (cold imports)."""
    n = 8
    with streamlit_server(tiny_dir, "server-cold.log") as url:
        contexts = [browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in range(n)]
        pages = [c.new_page() for c in contexts]
        errors = []
        for p in pages:
            p.on("pageerror", lambda e: errors.append(str(e)))
        for p in pages:  # start every session before waiting for any
            p.goto(url + "/", wait_until="commit")
        failed = []
        for i, p in enumerate(pages):
            try:
                p.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=240_000)
                p.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 4",
                                    timeout=240_000)
            except Exception as exc:  # noqa: BLE001 - reported below with the page's own error text
                failed.append(f"session {i}: {type(exc).__name__}")
            boxes = p.locator("[data-testid='stException'], [data-testid='stAlertContentError']")
            if boxes.count():
                failed.append(f"session {i}: {boxes.first.inner_text()[:300]}")
                p.screenshot(path=str(ARTIFACTS / f"cold-session-{i}.png"))
        for c in contexts:
            c.close()
    assert not failed, failed
    assert not errors, errors
