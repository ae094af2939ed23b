"""Real-browser test of Explore's Intervene panel: switch it on, find the counterfactual trace drawn over the
baseline, mark the exit rules' stops, and save a screenshot to tests/artifacts/explore-intervene.png."""
from __future__ import annotations

from test_browser import ARTIFACTS, JS_CHARTS, _chart, _load, browser, server  # noqa: F401  (fixtures)


def test_explore_with_an_intervention_in_a_real_browser(server, browser):  # noqa: F811
    page = browser.new_page(viewport={"width": 1400, "height": 5200})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    charts = _load(page, f"{server}/", min_charts=6)
    n_before = len(charts)
    page.get_by_text("Intervene on the latent state").click()
    # the toggle reruns the page: wait until the rerun is over (stale copies of the elements are gone)
    page.wait_for_timeout(1000)
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=180_000)
    page.wait_for_timeout(500)
    page.get_by_text("Mark where each exit rule would stop").click()
    page.wait_for_function(
        "Array.from(document.querySelectorAll('.js-plotly-plot')).some(el => ((el.layout && el.layout.shapes) "
        "|| []).some(s => s.name === 'intervention'))", timeout=180_000)
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=180_000)
    page.wait_for_timeout(1500)
    charts = page.evaluate(JS_CHARTS)
    assert len(charts) > n_before
    cf = [c for c in charts if "intervention" in c["shapes"]]
    assert len(cf) == 1 and cf[0]["traces"] == 8 and cf[0]["drawn"] == 8  # 4 options x (baseline, intervened)
    names = page.evaluate("""() => Array.from(document.querySelectorAll('.js-plotly-plot'))
        .filter(el => ((el.layout && el.layout.shapes) || []).some(s => s.name === 'intervention'))
        .flatMap(el => el.data.map(d => d.name))""")
    assert sum(n.endswith("(intervened)") for n in names) == 4
    belief = _chart(charts, "Belief over the options")
    assert "stop:oracle" in belief["shapes"]
    assert _chart(charts, "Latent dynamics")["traces"] == 3
    assert page.locator("[data-testid='stException']").count() == 0
    page.screenshot(path=str(ARTIFACTS / "explore-intervene.png"), full_page=True)
    assert not errors, errors
