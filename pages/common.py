"""Shared UI helpers for the pages: cached model/benchmark loading, cached traced runs, error display.

UI only: everything that is not Streamlit lives in backend.dashboard.  Not a page itself (app.py lists the pages).
"""
from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import streamlit as st

from backend import dashboard as dash
from backend.errors import LoopLensError
from backend.projection import start_umap_warmup

LOCAL_DIR = "Local directory…"
PLOTLY_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}


# ---------------------------------------------------------------------------------------------- start-up
def ensure_navigation() -> None:
    """Run the page through app.py (navigation + sidebar), never on its own.

    Streamlit treats an app with a ``pages/`` folder as a legacy multipage app until ``st.navigation`` has run
    once in the process: the very first request for ``/compare`` (a shared link, or every AppTest run) would
    execute pages/compare.py alone, without the sidebar.  Clear that flag and rerun: app.py then runs and its
    ``st.navigation`` picks the same page (same url path, same page hash).
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


# ---------------------------------------------------------------------------------------------- resources
@st.cache_resource(max_entries=3, show_spinner="Loading the model…")
def _load_model(name_or_path: str):
    from backend.models import load_bundle

    dash.configure_torch_threads()
    bundle = load_bundle(name_or_path)
    return bundle, threading.Lock()


def get_model(name_or_path: str):
    """(bundle, lock) for a shipped model's name or a checkpoint directory; LoopLensError on a bad one."""
    from backend.models import resolve_model_path

    resolve_model_path(name_or_path)  # cheap validation first (restricted roots, existence): not cached
    return _load_model(name_or_path)


def pick_benchmark(files, where=st):
    """A benchmark selectbox (in ``where``, e.g. a column) over ``files``; returns (Benchmark or None, path)."""
    names = [f.name for f in files]
    if st.session_state.get("bench") not in names:
        st.session_state["bench"] = names[0]
    where.selectbox("Benchmark", names, key="bench")
    path = dash.BENCHMARKS_DIR / st.session_state["bench"]
    bench = None
    with guard("Benchmark"):
        bench = load_benchmark(path)
    return bench, path


def require_model(model, hint: str = ""):
    """``(bundle, lock)`` for ``model``, or a message in the page and ``st.stop()`` (no model / a bad one)."""
    if not model:
        no_model_message()
        st.stop()
    entry = None
    with guard(f"Model {model!r}"):
        entry = get_model(model)
    if entry is None:
        if hint:
            st.info(hint)
        st.stop()
    return entry


@st.cache_resource
def trace_store() -> dash.TraceStore:
    return dash.TraceStore(maxsize=96)


@st.cache_resource
def figure_store() -> dash.TraceStore:
    return dash.TraceStore(maxsize=256)


def cached_figure(run_key: str, name: str, build: Callable):
    """A figure built once per (run, name): reruns that need no new model run only re-send it."""
    store = figure_store()
    k = (run_key, name)
    fig = store.get(k)
    if fig is None:
        fig = build()
        store.put(k, fig)
    return fig


@st.cache_resource
def warm_up_umap() -> bool:
    start_umap_warmup()
    return True


@st.cache_resource(max_entries=8)
def _load_benchmark(path: str, mtime: float):
    from backend.items import load_benchmark

    return load_benchmark(path)


def load_benchmark(path: Path):
    return _load_benchmark(str(path), path.stat().st_mtime)


@st.cache_resource(max_entries=8)
def _similarity(path: str, mtime: float):
    return dash.similarity_for(Path(path))


def similarity(bench_path: Optional[Path]):
    if bench_path is None or not bench_path.is_file():
        return None
    return _similarity(str(bench_path), bench_path.stat().st_mtime)


# ---------------------------------------------------------------------------------------------- errors
@contextlib.contextmanager
def guard(what: str = ""):
    """Show any problem inside the block as a message in the page; the rest of the page keeps working."""
    try:
        yield
    except LoopLensError as exc:
        st.error(f"{what + ': ' if what else ''}{exc}", icon="⚠️")
    except Exception as exc:  # noqa: BLE001 - shown as a message, never as a traceback (Streamlit's
        # rerun/stop signals are BaseExceptions and pass through)
        st.error(f"{what + ': ' if what else ''}{dash.friendly_error(exc)}", icon="⚠️")


def show_error(exc: BaseException, what: str = "") -> None:
    st.error(f"{what + ': ' if what else ''}{dash.friendly_error(exc)}", icon="⚠️")


# ---------------------------------------------------------------------------------------------- sidebar state
def current_model() -> Optional[str]:
    choice = st.session_state.get("model_choice")
    if choice == LOCAL_DIR:
        d = (st.session_state.get("model_dir") or "").strip()
        return d or None
    return choice or dash.default_model()


def run_settings() -> dict:
    return {"steps": int(st.session_state.get("steps", dash.DEFAULT_STEPS)),
            "seed": int(st.session_state.get("seed", dash.DEFAULT_SEED)),
            "init_scale": float(st.session_state.get("init", 1.0))}


def no_model_message() -> None:
    st.warning(
        "No model is available: nothing is shipped in `data/models/` yet. Choose **Local directory…** in the "
        "sidebar and give a Huginn-format checkpoint directory (config.json + weights + tokenizer.json), or set "
        "`LOOPLENS_DEFAULT_MODEL` to one before `streamlit run app.py`.", icon="ℹ️")


# ---------------------------------------------------------------------------------------------- runs
def run_traces(model_entry, items: Sequence, steps: int, seeds, init_scale: float, template=None,
               keep_all_states: bool = False, label: str = "Tracing",
               live: Optional[Callable[[List], None]] = None) -> List:
    """Trace ``items`` (cached by every input): per-step progress while it runs, instant when cached."""
    from backend.trace import trace_items

    bundle, lock = model_entry
    tjson = None if template is None else template.to_json()
    key = dash.run_key(str(bundle.path), bundle.checkpoint_hash, items, steps, seeds, init_scale, tjson,
                       keep_all_states)
    store = trace_store()
    hit = store.get(key)
    if hit is not None:
        return hit
    bar = st.progress(0.0, text=f"{label}: step 0/{steps}")
    last = [time.perf_counter()]

    def on_step(t, traces):
        # Live updates every 0.4 s: a fast run (< 0.4 s) is not slowed down by redrawing.
        now = time.perf_counter()
        if now - last[0] < 0.4 or t >= steps:
            return
        last[0] = now
        bar.progress(min(1.0, t / steps), text=f"{label}: step {t}/{steps} ({len(traces)} of {len(items)} runs)")
        if live is not None:
            live(traces)

    with lock:
        traces = trace_items(bundle, items, steps, seeds=seeds, init_scale=init_scale, template=template,
                             keep_all_states=keep_all_states, on_step=on_step)
    bar.empty()
    store.put(key, traces)
    return traces


def plot(fig, key: Optional[str] = None) -> None:
    st.plotly_chart(fig, theme=None, config=PLOTLY_CONFIG, key=key)
