"""Real browser on the warm-started server (``python -m backend app``): the server answers its health check only
once the model is loaded and the first view traced, and Explore then draws its charts."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

import pytest

from test_browser import ARTIFACTS, REPO, _chart, _free_port, _load, browser  # noqa: F401  (fixture)


def test_python_m_backend_app_serves_a_warm_explore(tiny_dir, browser):  # noqa: F811
    port = _free_port()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_path = ARTIFACTS / "server-app.log"
    env = {**os.environ, "LOOPLENS_TORCH_THREADS": "1"}
    env.pop("LOOPLENS_DEFAULT_MODEL", None)  # --model sets it
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "backend", "app", "--model", str(tiny_dir), "--port",
                                 str(port), "--address", "127.0.0.1"], cwd=REPO, env=env, stdout=log, stderr=log)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 180
            while time.time() < deadline:
                assert proc.poll() is None, log_path.read_text()
                try:
                    if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                        break
                except OSError:
                    time.sleep(0.3)
            else:
                pytest.fail("the server did not become healthy")
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
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_app_command_refuses_a_missing_model_in_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "backend", "app", "--model", str(tmp_path / "nope")], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "not found" in r.stderr and "Traceback" not in r.stderr
