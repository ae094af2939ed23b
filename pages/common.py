"""Shared UI helpers for the pages: cached model/benchmark loading, the run store (finished runs shared across
sessions), error display.  Not a page itself (app.py lists the pages).

UI only: what is not Streamlit lives in backend/ (questions in backend.uploads, links in backend.links, runs in
backend.trace, summaries in backend.summaries, figures and their export in backend.plots).

Start-up: app.py imports this module before anything else, and it imports everything heavy the pages use
(torch, pandas, pyarrow, scikit-learn, transformers' tokenizer, every backend module a page calls) and builds
one throwaway figure so that Plotly's lazily loaded parts are loaded too.  Python's import lock makes every
other session wait until this module is complete, so sessions that open at once on a fresh server never import
a large package concurrently (which raced: "partially initialized module 'pandas'").

Server start (``python -m backend app``, i.e. ``streamlit run serve.py``): :func:`warm_up` runs before the server
accepts a connection: it imports this module, loads the default model and traces the first view's question, so
the first session only draws.  Objects made by then are frozen out of the garbage collector (``gc.freeze``):
Streamlit runs a full collection after every script run, which otherwise walks the ~400k objects of torch,
transformers and pandas each time (0.4 s idle, seconds on a busy machine).
"""
from __future__ import annotations

import contextlib
import gc
import logging
import re
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Hashable, List, Optional

import plotly.graph_objects as go
import plotly.io
import streamlit as st
from plotly.subplots import make_subplots

from backend import fit, learn, plots, projection, report, report_source, summaries, uploads  # noqa: F401 (preload)
from backend.errors import LoopLensError, friendly_error
from backend.items import load_benchmark as read_benchmark
from backend.models import allowed_roots, describe_checkpoint, load_bundle, resolve_model_path
from backend.models import runtime
from backend.projection import start_umap_warmup
from backend.settings import (DEFAULT_N_SEEDS, DEFAULT_SEED, DEFAULT_STEPS, ENV_MODEL_ROOTS, MAX_STEPS, MIN_STEPS,
                              RUN_LENGTH, SHORT_TRAJECTORY_STEPS)
from backend.trace import TraceRequest, TraceSet



def _load_plotly_parts() -> None:
    """Build and serialise one figure with every kind of trace and layout part the pages draw."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=["a", "b"])
    fig.add_trace(go.Scatter(x=[1, 2], y=[1, 2], mode="lines+markers", fill="toself", line=dict(dash="dot"),
                             marker=dict(color=[1, 2], colorscale="Viridis", colorbar=dict(title="step"))), row=1, col=1)
    fig.add_trace(go.Bar(x=["a"], y=[1], error_y=dict(type="data", array=[0.1])), row=1, col=2)
    fig.add_trace(go.Heatmap(z=[[1.0]], colorscale="Magma_r"), row=1, col=1)
    fig.add_trace(go.Box(y=[1.0, 2.0], boxmean=True), row=1, col=2)
    fig.update_layout(shapes=[dict(type="rect", x0=0, x1=1, y0=0, y1=1)], annotations=[dict(text="a", x=1, y=1)],
                      updatemenus=[dict(type="buttons", buttons=[dict(label="play", method="animate", args=[None])])],
                      sliders=[dict(steps=[dict(label="1", method="animate", args=[["1"]])])])
    fig.update_yaxes(type="log")
    fig.frames = [go.Frame(name="1", data=[go.Scatter(x=[1], y=[1])])]
    plotly.io.to_json(fig)


_load_plotly_parts()

LOCAL_DIR = "Local directory…"
_MD_PUNCT = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation character
# Bare URLs, www. names and e-mail addresses are linked by Markdown even when escaped: a zero-width space inside
# "://", after "www" and after "@" keeps the text as shown but no longer a link.
_AUTOLINK = re.compile(r"(?i)(://|\bwww(?=\.)|@)")


def plain(text) -> str:
    """``text`` (a question, an option, a file name, a message quoting them) as Markdown that shows exactly that
    text: every ASCII punctuation character is backslash-escaped, so no link, image, HTML, emphasis, heading,
    list, math or colour directive can form, and a zero-width space stops bare URLs and addresses from being
    linked; line breaks become spaces.  Use it for every user-given string that
    goes into st.markdown, a caption, an alert, a label or a help text."""
    s = _AUTOLINK.sub(lambda m: ":\u200b//" if m.group(1) == "://" else m.group(1) + "\u200b",
                      " ".join(str(text).split()))
    return _MD_PUNCT.sub(r"\\\1", s)
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


def default_view_request(model: str, bundle) -> Optional[TraceRequest]:
    """The run a fresh Explore session opens on for ``model`` (the defaults of pages/explore.py and the sidebar:
    the model's first benchmark, its curated item or the first one, base variant, answer order 0, the model's
    trained depth, seeds 0.. for the robustness panel), or None when there is no benchmark.  Used to trace that
    view at server start; tests/pages/test_startup.py checks that Explore's first run finds it."""
    files = uploads.benchmark_files(model)
    if not files:
        return None
    items = uploads.filter_items(load_benchmark(files[0]).items, [], "base", "")
    if not items:
        return None
    ids = [it.id for it in items]
    item_id = learn.interesting_item_id(bundle.name, ids) or ids[0]
    item = items[ids.index(item_id)].instance("base", 0)
    steps = min(MAX_STEPS, max(MIN_STEPS, describe_checkpoint(model)["trained_depth"]))
    return explore_request(bundle, item, steps, DEFAULT_SEED, 1.0, DEFAULT_N_SEEDS)


def explore_request(bundle, item, steps: int, seed: int, init_scale: float, n_seeds: int,
                    template=None) -> TraceRequest:
    """Explore's run: ``item`` under seeds seed, seed+1, ... (the robustness panel) in one batch, every
    position's states kept when the model is small enough (the convergence map)."""
    return TraceRequest([item] * n_seeds, steps, [seed + k for k in range(n_seeds)], init_scale, template,
                        keep_all_states=runtime.keeps_all_states(bundle, steps, n_seeds))


def warm_up(model: Optional[str] = None) -> dict:
    """Server start: load ``model`` (default: the app's default model) and trace its first Explore view into the
    run store, then freeze the objects made so far out of the garbage collector.  Returns seconds per part.
    Problems (no model, a bad checkpoint) are left for the page to report: the server starts regardless."""
    t0 = time.perf_counter()
    times = {}
    model = model or runtime.default_model()
    # Streamlit's cached functions warn about the missing script context outside a session: expected here.
    ctx_log = logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context")
    level = ctx_log.level
    ctx_log.setLevel(logging.ERROR)
    try:
        if model:
            entry = get_model(model)
            times["model"] = time.perf_counter() - t0
            request = default_view_request(model, entry[0])
            if request is not None:
                key = request.key(entry[0])
                if trace_store().get(key) is None:
                    with entry[1]:
                        trace_store().put(key, request.run(entry[0]))
                similarity(uploads.benchmark_files(model)[0])  # the first view's option-similarity ranks
            times["first view"] = time.perf_counter() - t0 - times["model"]
    except Exception as exc:  # noqa: BLE001 - the first session shows the problem in the page
        times["error"] = friendly_error(exc)
    finally:
        ctx_log.setLevel(level)
    _freeze_gc()
    times["total"] = time.perf_counter() - t0
    return times


def _freeze_gc() -> None:
    """Move every object alive now (modules, the model) out of the garbage collector's reach (``gc.freeze``)."""
    gc.collect()
    gc.freeze()


# ---------------------------------------------------------------------------------------------- resources
@st.cache_resource(max_entries=3, show_spinner="Loading the model…")
def _load_model(name_or_path: str):
    runtime.configure_torch_threads()
    bundle = load_bundle(name_or_path)
    return bundle, threading.Lock()


def get_model(name_or_path: str):
    """(bundle, lock) for a shipped model's name or a checkpoint directory; LoopLensError on a bad one."""
    resolve_model_path(name_or_path)  # cheap validation first (restricted roots, existence): not cached
    return _load_model(name_or_path)


def pick_benchmark(files, where=st, model=None):
    """A benchmark selectbox (in ``where``, e.g. a column) over ``files``; returns (Benchmark or None, path).

    With ``model`` (a bundle or name) files whose words the model does not know are labelled so, and choosing
    one says so under the box (their items are refused before running)."""
    names = [f.name for f in files]
    by_name = dict(zip(names, files))
    if st.session_state.get("bench") not in names:
        st.session_state["bench"] = names[0]
    where.selectbox("Benchmark", names, key="bench",
                    format_func=lambda n: uploads.benchmark_label(model, by_name[n]) if model is not None else n)
    path = by_name[st.session_state["bench"]]
    unknown = uploads.benchmark_unknown_words(model, path) if model is not None else ()
    if unknown:
        fits = [f.name for f in files if not uploads.benchmark_unknown_words(model, f)]
        where.warning(plain(
            f"{model_label(model)} does not know words of this file ({', '.join(map(repr, unknown[:6]))}"
            f"{', ...' if len(unknown) > 6 else ''}): its questions are refused before running."
            + (f" Files this model reads: {', '.join(fits)}." if fits else "")), icon="⚠️")
    bench = None
    with guard("Benchmark"):
        bench = load_benchmark(path)
    return bench, path


def model_label(model) -> str:
    """A model's short name for messages (a bundle's or a name's last path part)."""
    return Path(str(getattr(model, "name", model))).name


def require_model(model, hint: str = ""):
    """``(bundle, lock)`` for ``model``, or a message in the page and ``st.stop()`` (no model / a bad one)."""
    if not model:
        if st.session_state.get("model_choice") == LOCAL_DIR and runtime.model_choices():  # chosen, left empty
            local_dir_message()
        else:
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


class RunStore:
    """A small thread-safe LRU of finished runs or figures, shared across sessions through st.cache_resource."""

    def __init__(self, maxsize: int = 64):
        self.maxsize = maxsize
        self._d: "OrderedDict[Hashable, object]" = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                return self._d[key]
            return None

    def put(self, key, value) -> None:
        with self._lock:
            self._d[key] = value
            self._d.move_to_end(key)
            while len(self._d) > self.maxsize:
                self._d.popitem(last=False)

    def __len__(self) -> int:
        return len(self._d)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()


RUN_STORE_SIZE = 96  # finished runs kept (each a TraceSet: beliefs, top tokens, fp16 states)
FIGURE_STORE_SIZE = 256  # built figures kept


@st.cache_resource
def trace_store() -> RunStore:
    return RunStore(maxsize=RUN_STORE_SIZE)


@st.cache_resource
def figure_store() -> RunStore:
    return RunStore(maxsize=FIGURE_STORE_SIZE)


def cached_figure(run_key: str, name: str, build: Callable):
    """A figure built once per (run, name): reruns that need no new model run only re-send it."""
    store = figure_store()
    k = (run_key, name)
    fig = store.get(k)
    if fig is None:
        fig = build()
        store.put(k, fig)
    return fig


def warm_up_umap() -> str:
    """Start compiling UMAP in the background (once per server; later calls only return the status)."""
    return start_umap_warmup()


@st.cache_resource(max_entries=8)
def _load_benchmark(path: str, mtime: float):
    return read_benchmark(path)


def load_benchmark(path: Path):
    return _load_benchmark(str(path), path.stat().st_mtime)


@st.cache_resource(max_entries=8)
def _similarity(path: str, mtime: float):
    return summaries.similarity_for(Path(path))


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
        st.error(plain(f"{what + ': ' if what else ''}{exc}"), icon="⚠️")
    except Exception as exc:  # noqa: BLE001 - shown as a message, never as a traceback (Streamlit's
        # rerun/stop signals are BaseExceptions and pass through)
        st.error(plain(f"{what + ': ' if what else ''}{friendly_error(exc)}"), icon="⚠️")


def show_error(exc: BaseException, what: str = "") -> None:
    st.error(plain(f"{what + ': ' if what else ''}{friendly_error(exc)}"), icon="⚠️")


# ---------------------------------------------------------------------------------------------- sidebar state
def current_model() -> Optional[str]:
    choice = st.session_state.get("model_choice")
    if choice == LOCAL_DIR:
        d = (st.session_state.get("model_dir") or "").strip()
        return d or None
    return choice or runtime.default_model()


def run_settings() -> dict:
    return {"steps": int(st.session_state.get("steps", DEFAULT_STEPS)),
            "seed": int(st.session_state.get("seed", DEFAULT_SEED)),
            "init_scale": float(st.session_state.get("init", 1.0)),
            "run_length": int(st.session_state.get("run_length", RUN_LENGTH))}


@st.cache_resource(max_entries=16, show_spinner=False)
def _describe(path: str, stamp: tuple) -> dict:
    return describe_checkpoint(path)


def model_summary(model: Optional[str]) -> Optional[dict]:
    """The sidebar's model summary (family, size, trained depth: ``describe`` without loading the weights, from
    config.json and the safetensors headers), or None when the checkpoint cannot be read (the page that needs
    the model then says why).  Cached per checkpoint and its files' modification times."""
    if not model:
        return None
    try:
        path = resolve_model_path(model)
        stamp = tuple(sorted((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in path.iterdir()
                             if f.suffix in (".json", ".safetensors")))
        return _describe(str(path), stamp)
    except Exception:  # noqa: BLE001 - the page shows the problem; the sidebar just shows no summary
        return None


def short_trajectory_note(steps: int, run_length: int) -> Optional[str]:
    """One line when the run is too short for the commitment rule to say much, else None."""
    if steps > SHORT_TRAJECTORY_STEPS:
        return None
    return (f"With {steps} step{'' if steps == 1 else 's'} a commitment run length of {run_length} is nearly "
            "meaningless: a few steps can "
            "hold only one or two runs that long, so commitments and backtracks say little here.")


def local_dir_message() -> None:
    st.info(
        "Enter a checkpoint directory in the sidebar (**Checkpoint directory**): a folder on this machine holding "
        "a looped model (Huginn, Ouro, retrofitted Llama/OLMo or Parcae) as config.json, model.safetensors (or "
        "its shards with model.safetensors.index.json) and tokenizer.json"
        + (f", under one of the directories in `${ENV_MODEL_ROOTS}`" if allowed_roots() is not None else "")
        + ". Or choose a shipped model in **Model**.", icon="ℹ️")


def no_model_message() -> None:
    st.warning(
        "No model is available: nothing is shipped in `data/models/` yet. Choose **Local directory…** in the "
        "sidebar and give a checkpoint directory of a looped model (Huginn, Ouro, retrofitted Llama/OLMo, "
        "Parcae: config.json + weights + tokenizer.json), or set "
        "`LOOPLENS_DEFAULT_MODEL` to one before `streamlit run app.py`.", icon="ℹ️")


# ---------------------------------------------------------------------------------------------- runs
def run_traces(model_entry, request: TraceRequest, label: str = "Tracing",
               live: Optional[Callable[[List], None]] = None) -> TraceSet:
    """Run ``request`` on the model (cached by every input): per-step progress while it runs, instant when cached."""
    bundle, lock = model_entry
    key = request.key(bundle)
    store = trace_store()
    hit = store.get(key)
    if hit is not None:
        return hit
    steps, n = request.steps, len(request.items)
    bar = st.progress(0.0, text=f"{label}: step 0/{steps}")
    last = [time.perf_counter()]

    def on_step(t, traces):
        # Live updates every 0.4 s: a fast run (< 0.4 s) is not slowed down by redrawing.
        now = time.perf_counter()
        if now - last[0] < 0.4 or t >= steps:
            return
        last[0] = now
        bar.progress(min(1.0, t / steps), text=f"{label}: step {t}/{steps} ({len(traces)} of {n} runs)")
        if live is not None:
            live(traces)

    try:
        with lock:
            traces = request.run(bundle, on_step=on_step)
    finally:  # a failed run leaves only its message, no bar stuck at "step 0/N"
        bar.empty()
    store.put(key, traces)
    return traces


def readable(bundle, item):
    """``item`` when the model knows every word of its question and options, else UnknownWordsError (shown by
    the caller's guard, before anything runs)."""
    fit.check_readable(bundle, item.question, item.options, model_label(bundle))
    return item


def plot(fig, key: Optional[str] = None) -> None:
    st.plotly_chart(fig, theme=None, config=PLOTLY_CONFIG, key=key)


# Everything made by the imports above lives as long as the server: keep it out of the full collection Streamlit
# runs after every script run (see the module docstring).
_freeze_gc()
