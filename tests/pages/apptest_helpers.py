"""AppTest fixtures: the app on a small random Huginn-format model (LOOPLENS_DEFAULT_MODEL)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "app.py")


@pytest.fixture
def app(tiny_dir, monkeypatch):
    return app_factory(monkeypatch, str(tiny_dir))


def app_factory(monkeypatch, model: str, timeout: float = 180):
    """``make(page=None, query=None)``: a fresh AppTest of the app on ``model`` (one torch thread), run once, on
    ``page`` when given."""
    monkeypatch.setenv("LOOPLENS_DEFAULT_MODEL", model)
    monkeypatch.setenv("LOOPLENS_TORCH_THREADS", "1")

    def make(page: str | None = None, query: dict | None = None) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=timeout)
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


# Hostile text: remote images (tracking), links (phishing), bare URLs, raw HTML, math, a colour directive.
EVIL = ("![pixel](http://evil.example/t.png) [click here](http://evil.example/login) www.evil.example "
        "<a href='http://evil.example'>x</a> $x^2$ :red[alarm]")


def markdown_sources(at) -> list:
    """The Markdown source of every element that Streamlit renders as Markdown (texts, alerts, labels, helps)."""
    out = []
    for kind in ("markdown", "caption", "error", "warning", "info", "success", "title", "header", "subheader"):
        out += [e.value for e in at.get(kind)]
    out += [e.label for e in at.expander]
    out += [m.proto.help for m in at.metric] + [m.label for m in at.metric]
    return out


def assert_rendered_as_text(at) -> None:
    """No hostile text can form a link, an image, HTML or a directive anywhere on the page (Markdown or Plotly)."""
    srcs = markdown_sources(at)
    assert any("evil" in s for s in srcs), "the hostile text is not shown at all"
    for s in srcs:  # an unescaped link/image (the app's own relative links aside), URL, HTML tag, math or directive
        for bad in (r"(?<!\\)\]\((?!/\?)", r"http://", r"www\.evil", r"(?<!\\)<[a-z/]", r"(?<!\\)\$",
                    r"(?<!\\):red"):
            assert not re.search(bad, s), f"{bad!r} would render as Markdown in {s[:300]!r}"
        shown = s.replace("\\", "")  # bare URLs are linked even when their punctuation is escaped
        assert "http://" not in shown and "www.evil" not in shown, f"a bare URL would be linked in {s[:300]!r}"
    for spec in charts(at):
        text = json.dumps(spec, ensure_ascii=False)
        assert "<a " not in text and "<a>" not in text, "an HTML link in a chart"


@pytest.fixture
def evil_benchmark(tmp_path, monkeypatch):
    """The only offered benchmark file holds hostile text in every field the pages show."""
    from backend import uploads

    lines = []
    for k in range(3):
        lines.append(json.dumps({"id": f"evil-{k}", "domain": "factual", "question": f"{EVIL} {k}",
                                 "answer": f"[yes {k}](http://evil.example)",
                                 "distractors": [f"![no {k}](http://evil.example/n.png)", f"<b>{k}</b>", f"c{k}"],
                                 "easy_distractors": [f"e{k}", "www.evil.example", f"$e{k}$"],
                                 "nca_distractor": f":red[n{k}]"}))
    f = tmp_path / "evil.jsonl"
    f.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(uploads, "benchmark_files", lambda model=None: [f])
    return f
