"""Models: the same question on two or more models, the step axis as a fraction of each model's trained depth."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from pages import common

common.ensure_navigation()

from backend import learn, plots, uploads  # noqa: E402
from backend.errors import LoopLensError, friendly_error  # noqa: E402
from backend.items import VARIANTS  # noqa: E402
from backend.models.runtime import model_choices  # noqa: E402
from backend.plots_models import ModelRun, models_figure, models_table  # noqa: E402
from backend.settings import MAX_STEPS, MIN_STEPS  # noqa: E402
from backend.trace import TraceRequest  # noqa: E402

ss = st.session_state
SOURCES = ["Benchmark item", "Your question"]
MAX_MODELS = 6

st.title("Models: one question, several models")
st.caption("Every model traces the same question, options in the same order, with the sidebar's seed and init "
           "scale. Models are trained for different numbers of recurrent steps, so the step axis is the fraction of "
           "each model's trained depth (1 = the depth it was trained for).")

# ---------------------------------------------------------------------------------------------- the models
shipped = model_choices()
c1, c2 = st.columns([3, 2])
ss.setdefault("models_pick", shipped[:MAX_MODELS])
picked = c1.multiselect("Models", shipped, key="models_pick", max_selections=MAX_MODELS,
                        help="Models shipped in data/models (and $LOOPLENS_DEFAULT_MODEL).")
dirs_text = c2.text_area("Checkpoint directories (one per line)", key="models_dirs", height=68,
                         placeholder="/path/to/checkpoint", help="Any looped model LoopLens loads (Huginn, Ouro, "
                         "retrofitted Llama/OLMo, Parcae). May be restricted to $LOOPLENS_MODEL_ROOTS.")
models = list(dict.fromkeys(picked + [d.strip() for d in (dirs_text or "").splitlines() if d.strip()]))
if len(models) > MAX_MODELS:
    st.warning(f"Comparing the first {MAX_MODELS} of {len(models)} models.")
    models = models[:MAX_MODELS]
if not models:
    st.info("Choose at least one model (two or more to compare).")
    st.stop()

# ---------------------------------------------------------------------------------------------- the question
if ss.get("models_source") not in SOURCES:  # first visit: the kind of question Explore shows
    ss["models_source"] = "Your question" if ss.get("source") == "Your question" else SOURCES[0]
c1, c2, c3 = st.columns([5, 3, 4], vertical_alignment="bottom")
src = c1.radio("Question from", SOURCES, horizontal=True, key="models_source", label_visibility="collapsed")
ss.setdefault("models_depth_mult", 2.0)
mult = c2.number_input("Steps per model, in trained depths", 0.25, 16.0, step=0.25, key="models_depth_mult",
                       help="Each model runs this many times its own trained depth (2 = twice as deep as it was "
                            f"trained), at least {MIN_STEPS} and at most {MAX_STEPS} steps.")
normalise = c3.toggle("Step axis: fraction of trained depth", value=True, key="models_normalise",
                      help="x = step / the model's trained depth (1 = the depth it was trained for). Off: raw "
                           "recurrent steps.")
item = None
bench_name = None
if src == "Benchmark item":
    files = uploads.benchmark_files(models[0])
    if not files:
        st.info("No benchmark file in data/benchmarks: type a question instead.")
        st.stop()
    c1, c2, c3, c4 = st.columns([2, 4, 1, 1])
    bench, bench_path = common.pick_benchmark(files, c1, model=models[0])
    bench_name = bench_path.name
    if bench is None or not bench.items:
        st.stop()
    if ss.get("variant") not in VARIANTS:
        ss["variant"] = "base"
    c3.selectbox("Variant", VARIANTS, key="variant",
                 format_func=lambda v: {"base": "base", "easy": "easy", "nca": "no correct answer"}[v])
    items = uploads.filter_items(bench.items, [], ss["variant"], "")
    if not items:
        st.warning("No item of this benchmark has that variant.")
        st.stop()
    by_id = {it.id: it for it in items}
    if ss.get("item") not in by_id:  # the first model's curated example (as on Explore), else the first item
        ss["item"] = learn.interesting_item_id(Path(models[0]).name, list(by_id)) or items[0].id
    c2.selectbox(f"Item ({len(items)})", list(by_id), key="item",
                 format_func=lambda i: f"{i} — {plots._short(by_id[i].question, 60)}")
    c4.number_input("Answer order", 0, 10**6, step=1, key="perm", help="Permutation of the options (0 = as in "
                    "the file); every model sees the same order.")
    with common.guard("Item"):
        item = by_id[ss["item"]].instance(ss["variant"], int(ss.get("perm", 0)))
else:
    example = uploads.example_item(models[0])  # a question the first model reads (shared with Explore's box)
    ss.setdefault("q", example.question)
    ss.setdefault("opts", "\n".join([example.answer, *example.distractors]))
    st.text_area("Question", key="q", height=68)
    c1, c2 = st.columns([3, 1])
    c1.text_area("Options, one per line (2-10)", key="opts", height=110)
    n_typed = len([x for x in (ss.get("opts") or "").splitlines() if x.strip()])
    choices = ["none"] + list(plots.LETTERS[:max(2, min(10, n_typed))])
    if ss.get("ans") not in choices:
        ss["ans"] = "none"
    c2.selectbox("Correct option", choices, key="ans")
    with common.guard("Your question"):
        item = uploads.custom_item(ss.get("q", ""), ss.get("opts", ""), ss.get("ans"))
if item is None:
    st.stop()

# ---------------------------------------------------------------------------------------------- the runs
settings = common.run_settings()
runs, keys, notes = [], [], []
for name in models:
    try:
        entry = common.get_model(name)
        bundle = entry[0]
        depth = int(bundle.default_steps)
        steps = min(MAX_STEPS, max(MIN_STEPS, round(mult * depth)))
        request = TraceRequest([item], steps, [settings["seed"]], settings["init_scale"])
        traces = common.run_traces(entry, request, label=f"Tracing on {common.plain(Path(bundle.name).name)}")
        label = Path(bundle.name).name  # a shipped model's name, or a directory's last part
        if any(r.name == label for r in runs):
            label = bundle.name
        runs.append(ModelRun(label, traces[0].with_metrics(run_length=settings["run_length"]), depth))
        keys.append(request.key(bundle))
        notes.append(f"{label}: {steps} steps")
    except LoopLensError as exc:
        st.warning(common.plain(f"{name} cannot run this question: {exc}"), icon="⚠️")
    except Exception as exc:  # noqa: BLE001 - one line per model, the others still draw
        st.error(common.plain(f"{name}: {friendly_error(exc)}"), icon="⚠️")
if not runs:
    st.stop()

st.markdown(f"**{common.plain(item.question)}** &nbsp; " + "  ".join(
    f"**{plots.LETTERS[i]})** {common.plain(o)}{' ✓' if i == item.correct else ''}" for i, o in enumerate(item.options)))
note = uploads.notation(bench_name or models[0])
if note:
    st.caption(common.plain(note))
fig_key = "|".join(keys) + f"-rl{settings['run_length']}"
fig = common.cached_figure(fig_key, f"models-{normalise}", lambda: models_figure(runs, normalise=normalise))
common.plot(fig, key="fig_models")
st.caption(common.plain(" · ".join(notes)) + ". Grey markers: steps whose option mass is below the threshold "
           "(the model is not answering there; its belief is renormalised noise).")
st.dataframe(models_table(runs), hide_index=True)
if len(runs) == 1:
    st.info("Add another model above to compare.")
