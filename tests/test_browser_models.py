"""Real browser: the Models page draws without an exception (the no-exception sweep of tests/test_browser.py,
for the page added by issue 11), with a legend entry per model that can run the question."""
from __future__ import annotations

from test_browser import ARTIFACTS, _chart, _load, browser, server  # noqa: F401  (fixtures)


def test_models_page_in_a_real_browser(server, browser):  # noqa: F811
    page = browser.new_page(viewport={"width": 1400, "height": 2000})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    charts = _load(page, f"{server}/models", min_charts=1)
    fig = _chart(charts, "by model")
    assert fig["traces"] >= 2 and fig["drawn"] == fig["traces"]  # belief + entropy per model that ran
    assert "trained_depth" in fig["shapes"]
    assert page.locator("[data-testid='stException']").count() == 0
    assert page.get_by_text("Page not found").count() == 0
    page.screenshot(path=str(ARTIFACTS / "models.png"), full_page=True)
    assert not errors, errors
