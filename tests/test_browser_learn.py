"""Real-browser test of the Learn page: the architecture diagram and the examples load, presenter mode steps
through an example with the Next button and the → key; screenshots go to tests/artifacts/learn-*.png."""
from __future__ import annotations

from test_browser import ARTIFACTS, _load, browser, server  # noqa: F401  (fixtures)

READY = "[data-testid='stApp'][data-test-script-state='notRunning']"
# Per chart on the page: annotation names and the points drawn per trace (the presenter chart has one per step).
JS_LEARN = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(el => ({
    annotations: ((el.layout && el.layout.annotations) || []).map(a => a.name),
    frames: ((el._transitionData && el._transitionData._frames) || []).length,
    points: (el._fullData || []).map(d => (d.y || []).length)}))"""


def _settle(page) -> None:
    page.wait_for_timeout(800)  # the click's rerun starts
    page.wait_for_selector(READY, timeout=180_000)
    page.wait_for_timeout(800)


def _step_heading(page) -> str:
    return page.locator("h2").filter(has_text="Step ").first.inner_text()


def test_learn_presenter_mode_in_a_real_browser(server, browser):  # noqa: F811
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    _load(page, f"{server}/learn", min_charts=2)
    charts = page.evaluate(JS_LEARN)
    assert any("loop_label" in c["annotations"] for c in charts), "no architecture diagram"
    assert page.locator("[data-testid='stException']").count() == 0
    # the sidebar says what Learn runs with instead of drawing run controls it would ignore
    sidebar = page.locator("[data-testid='stSidebar']")
    assert sidebar.get_by_text("Learn runs").count() == 1
    assert sidebar.get_by_label("Recurrent steps").count() == 0
    page.screenshot(path=str(ARTIFACTS / "learn.png"))
    # an example opens on its whole run; ▶ play replays it from step 1
    page.get_by_role("tab", name="2 · Exploration").click()
    page.wait_for_timeout(1000)
    anim = "Array.from(document.querySelectorAll('.js-plotly-plot')).filter(el => el.offsetParent !== null " \
           "&& (el._transitionData._frames || []).length)[0]"
    assert page.evaluate(f"() => {anim}._fullData.map(d => d.y.length)") == [30] * 4
    page.locator(".js-plotly-plot:visible .updatemenu-button").filter(has_text="play").click()
    page.wait_for_timeout(1200)
    shown = page.evaluate(f"() => {anim}._fullData.map(d => d.y.length)")
    assert 1 <= shown[0] < 30 and len(set(shown)) == 1, shown

    page.get_by_text("Presenter mode").first.click()
    _settle(page)
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 1", timeout=180_000)
    assert _step_heading(page).startswith("Step 1 of ")
    page.get_by_role("button", name="Next").click()
    _settle(page)
    assert _step_heading(page).startswith("Step 2 of ")
    page.keyboard.press("ArrowRight")  # the → key is Next's shortcut
    _settle(page)
    assert _step_heading(page).startswith("Step 3 of ")
    charts = page.evaluate(JS_LEARN)
    assert len(charts) == 1 and set(charts[0]["points"]) == {3}, charts  # one chart, the belief up to step 3
    page.keyboard.press("ArrowLeft")
    _settle(page)
    assert _step_heading(page).startswith("Step 2 of ")
    assert page.locator("[data-testid='stException']").count() == 0
    assert page.locator("[data-testid='stAlertContentError']").count() == 0
    page.screenshot(path=str(ARTIFACTS / "learn-presenter.png"))
    assert not errors, errors
