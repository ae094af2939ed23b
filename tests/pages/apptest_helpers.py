"""AppTest fixtures: the app on a small random Huginn-format model (LOOPLENS_DEFAULT_MODEL)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "app.py")


@pytest.fixture
def app(tiny_dir, monkeypatch):
    monkeypatch.setenv("LOOPLENS_DEFAULT_MODEL", str(tiny_dir))
    monkeypatch.setenv("LOOPLENS_TORCH_THREADS", "1")

    def make(page: str | None = None, query: dict | None = None) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=180)
        if query:
            at.query_params.update(query)
        at.run()
        if page:
            at.switch_page(f"pages/{page}.py").run()
        return at

    return make


def arr(v):
    """A data array of a figure spec (plotly encodes numeric arrays as base64 'bdata')."""
    import base64

    import numpy as np

    if isinstance(v, dict) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
        return a.reshape(v["shape"]) if "shape" in v and isinstance(v["shape"], (list, tuple)) else a
    return np.asarray(v)


def charts(at) -> list:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def chart_by_title(at, text: str) -> dict:
    for spec in charts(at):
        title = (spec.get("layout", {}).get("title") or {}).get("text", "")
        if text.lower() in title.lower():
            return spec
    raise AssertionError(f"no chart titled {text!r}; titles: "
                         f"{[(s.get('layout', {}).get('title') or {}).get('text') for s in charts(at)]}")


def no_exceptions(at) -> None:
    assert not at.exception, [e.value for e in at.exception]
