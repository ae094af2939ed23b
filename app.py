"""LoopLens: watch a looped (recurrent-depth) language model think.  ``python -m backend app`` (or ``streamlit run
serve.py``: the same, warmed up before the first session; ``streamlit run app.py`` works too, see serve.py).

This file is the navigation and the shared sidebar (model, steps, seed, init scale); the pages are in pages/.
"""
from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="LoopLens", page_icon=":material/all_inclusive:", layout="wide")

# First: pages.common imports everything heavy, once, while concurrent sessions wait (see its docstring).
from pages import common  # noqa: E402,I001
from backend import learn  # noqa: E402
from backend.links import parse_query  # noqa: E402
from backend.models.runtime import default_model, model_choices  # noqa: E402
from backend.settings import MAX_STEPS, MIN_STEPS, RUN_LENGTH  # noqa: E402

# Page widgets whose values survive switching pages (Streamlit drops the state of widgets not drawn in a run).
PERSISTENT = ("model_choice", "model_dir", "steps", "seed", "init", "source", "bench", "item", "variant", "perm",
              "q", "opts", "ans", "domains", "search", "n_seeds", "n_perms", "run_length", "_steps_explicit",
              "_steps_model", "models_pick", "models_dirs", "models_source", "models_depth_mult",
              "models_normalise")

ss = st.session_state
if "_looplens_init" not in ss:
    ss["_looplens_init"] = True
    view, problems = parse_query(st.query_params.to_dict())
    ss["_link_problems"] = problems
    choices = model_choices()
    model = view.model or default_model()
    if model and model not in choices:
        ss["model_choice"], ss["model_dir"] = common.LOCAL_DIR, model
    elif model:
        ss["model_choice"] = model
    ss["steps"], ss["seed"], ss["init"] = view.steps, view.seed, view.init
    # Steps given in the link are the user's; otherwise they follow the model's trained/default depth.
    ss["_steps_explicit"] = "steps" in st.query_params and not any(p.startswith("steps=") for p in problems)
    for k in ("bench", "item", "q", "opts", "ans"):
        if getattr(view, k) is not None:
            ss[k] = getattr(view, k)
    ss["variant"], ss["perm"] = view.variant, view.perm
    if view.q or view.opts:
        ss["source"] = "Your question"
else:
    for k in PERSISTENT:
        if k in ss:
            ss[k] = ss[k]

pages = [
    st.Page("pages/explore.py", title="Explore", icon=":material/search:", url_path="explore", default=True),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare:", url_path="compare"),
    st.Page("pages/models.py", title="Models", icon=":material/stacked_line_chart:", url_path="models"),
    st.Page("pages/benchmark.py", title="Benchmark", icon=":material/bar_chart:", url_path="benchmark"),
    st.Page("pages/learn.py", title="Learn", icon=":material/school:", url_path="learn"),
]
page = st.navigation(pages)
# Pages that run the model with their own settings instead of the sidebar's run controls (steps, seed, init scale,
# run length): the controls are not drawn there, and the sidebar says what the page uses instead.
OWN_RUN_SETTINGS = {
    "learn": lambda model: learn.page_settings(model).note(),
    "benchmark": lambda model: ("Benchmark shows a sweep's saved results: their steps, seeds and thresholds are stated "
                                "on the page. The run controls apply to Explore, Compare and Models."),
}
# Pages that set the number of steps themselves (the other run controls apply): the steps control is not drawn.
OWN_STEPS = {"models": "Models runs each model for a multiple of its own trained depth (set on the page)."}

with st.sidebar:
    st.markdown("### LoopLens")
    choices = model_choices()
    options = choices + [common.LOCAL_DIR]
    if ss.get("model_choice") not in options:
        ss["model_choice"] = options[0]
    st.selectbox("Model", options, key="model_choice",
                 help="A model shipped in data/models, or a checkpoint directory on this machine (Huginn, Ouro, "
                      "retrofitted Llama/OLMo, Parcae).")
    if ss["model_choice"] == common.LOCAL_DIR:
        st.text_input("Checkpoint directory", key="model_dir", placeholder="/path/to/checkpoint",
                      help="config.json + model.safetensors (or shards) + tokenizer.json. May be restricted to "
                           "$LOOPLENS_MODEL_ROOTS.")
    info = common.model_summary(common.current_model())
    if info is not None:
        st.caption(common.plain(info["summary"]))
        if not ss.get("_steps_explicit") and ss.get("_steps_model") != common.current_model():
            ss["steps"] = min(MAX_STEPS, max(MIN_STEPS, info["trained_depth"]))
            ss["_steps_model"] = common.current_model()

    own_settings = OWN_RUN_SETTINGS.get(page.url_path)
    if own_settings is not None:
        st.caption(f"ℹ️ {common.plain(own_settings(common.current_model()))}")
    else:
        def _steps_set_by_user():
            ss["_steps_explicit"] = True

        if page.url_path in OWN_STEPS:
            st.caption(f"ℹ️ {OWN_STEPS[page.url_path]}")
        else:
            st.number_input("Recurrent steps", MIN_STEPS, MAX_STEPS, step=1, key="steps",
                            on_change=_steps_set_by_user, help="Defaults to the model's trained depth until you change it.")
        st.number_input("Seed of the initial state", 0, 2**31 - 1, step=1, key="seed")
        st.number_input("Init scale (0 = zero initial state)", 0.0, 100.0, step=0.1, format="%.2f", key="init")
        ss.setdefault("run_length", RUN_LENGTH)
        st.number_input("Commitment run length", 1, MAX_STEPS, step=1, key="run_length",
                        help=f"An argmax held this many consecutive steps is a commitment (default {RUN_LENGTH}, "
                             "from the paper); backtracks are read from commitments.")
        note = None if page.url_path in OWN_STEPS else common.short_trajectory_note(int(ss["steps"]),
                                                                                   int(ss["run_length"]))
        if note:
            st.caption(f"ℹ️ {note}")
    for msg in ss.get("_link_problems", []):
        st.caption(f"⚠️ {common.plain(msg)}")

page.run()
