"""Real browser on the warm-started server (``python -m backend app``): the server answers its health check only
once the model is loaded and the first view traced, and Explore then draws its charts."""
from __future__ import annotations

import os
import subprocess
import sys

from serving import app_command, free_port, server_process
from test_browser import ARTIFACTS, REPO, _chart, _load, browser  # noqa: F401  (fixture)


def test_python_m_backend_app_serves_a_warm_explore(tiny_dir, browser):  # noqa: F811
    port = free_port()
    log_path = ARTIFACTS / "server-app.log"
    env = {**os.environ, "LOOPLENS_TORCH_THREADS": "1"}
    env.pop("LOOPLENS_DEFAULT_MODEL", None)  # --model sets it
    with server_process(app_command(port, tiny_dir), port, log_path, env=env, timeout=180) as (url, _, _proc):
        # healthy only after the warm-up: the model is loaded and the first view traced
        text = log_path.read_text()
        assert "LoopLens warmed up: model" in text and "first view" in text and "error" not in text, text
        page = browser.new_page(viewport={"width": 1400, "height": 4200})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        charts = _load(page, f"{url}/", min_charts=6)
        belief = _chart(charts, "Belief over the options")
        assert belief["traces"] == 4 and belief["drawn"] == 4
        assert page.locator("[data-testid='stException']").count() == 0
        assert page.get_by_text("trained depth 8 steps").count() >= 1  # the sidebar's summary
        page.screenshot(path=str(ARTIFACTS / "explore-warm.png"), full_page=True)
        assert not errors, errors


def test_app_command_refuses_a_missing_model_in_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "backend", "app", "--model", str(tmp_path / "nope")], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "not found" in r.stderr and "Traceback" not in r.stderr
