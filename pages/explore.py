"""Explore: one question, live — belief per step, metrics, top tokens, latent geometry, seeds, exports."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import streamlit as st

from backend import learn, plots, summaries, uploads
from backend.items import VARIANTS, Benchmark
from backend.links import ViewState
from backend.models import PromptTemplate, describe
from backend.models.runtime import token_strings
from backend.projection import pca_paths, umap_paths, umap_status
from backend.settings import DEFAULT_N_SEEDS
from backend.trace import TraceRequest, convergence_map
from pages import common, intervene_panel

common.ensure_navigation()

ss = st.session_state
LETTERS = plots.LETTERS
SOURCES = ["Benchmark item", "Upload JSONL", "Your question"]

st.title("Explore one question")

model = common.current_model()
entry = common.require_model(model, "Pick another model in the sidebar (a shipped one, or a checkpoint directory).")
bundle = entry[0]
settings = common.run_settings()
info = describe(bundle)
st.caption(f"**{common.plain(bundle.name)}** ({common.plain(info['summary'])}) · "
           f"{summaries.plural(settings['steps'], 'step')} · seed {settings['seed']} · "
           f"init scale {settings['init_scale']:g} · run length {settings['run_length']} (sidebar)")

# ---------------------------------------------------------------------------------------------- the question
ss.setdefault("source", SOURCES[0])
# Pre-filled with a question this model reads; an untouched example follows the model when it changes.
example = uploads.example_item(bundle)
example_text = (example.question, "\n".join([example.answer, *example.distractors]))
if ss.get("_example") is not None and (ss.get("q"), ss.get("opts")) == ss["_example"]:
    ss["q"], ss["opts"] = example_text
ss.setdefault("q", example_text[0])
ss.setdefault("opts", example_text[1])
ss["_example"] = example_text
ss.setdefault("ans", "A")
ss.setdefault("variant", "base")
ss.setdefault("perm", 0)
if isinstance(ss.get("opts"), str) and "|" in ss["opts"] and "\n" not in ss["opts"]:
    ss["opts"] = ss["opts"].replace("|", "\n")

# A compact picker (two rows) so that the belief chart is in the first screenful: source and benchmark; then the
# variant, the item, its answer order, the filters, the run options and Run.
item = None
bench_item = None
bench_path = None
# Rows that wrap (flex): at a narrow width an element moves to the next line instead of being cut off.
row1 = st.container(horizontal=True, vertical_alignment="bottom", gap="medium")
row2 = st.container(horizontal=True, vertical_alignment="bottom", gap="small")
with row1:
    src = st.radio("Question from", SOURCES, horizontal=True, key="source", width="content")
bench = None
with row1:
    if src == "Benchmark item":
        files = uploads.benchmark_files(bundle)
        if not files:
            st.info("No benchmark file in data/benchmarks yet: showing a built-in example item.")
            bench = Benchmark([example], source="built-in example")
        else:
            bench, bench_path = common.pick_benchmark(files, model=bundle)
if src == "Upload JSONL":
    with row1:
        up = st.file_uploader(f"Benchmark JSONL (one item per line, up to {uploads.MAX_UPLOAD_BYTES // 2**20} MB)",
                              type=["jsonl", "json", "txt"], key="upload",
                              help=f"Up to {uploads.MAX_UPLOAD_BYTES // 2**20} MB. Fields: id, question, answer, "
                                   "distractors [, domain, easy_distractors, nca_distractor].")
    if up is None:
        st.info('Upload a JSONL file, one item per line, e.g. `{"id": "q1", "question": "…", "answer": "…", '
                '"distractors": ["…", "…", "…"], "easy_distractors": [...], "nca_distractor": "…"}`.')
    else:
        with common.guard(f"Upload {up.name}"):
            bench = uploads.parse_upload(up.getvalue(), up.name)
if bench is not None and bench.errors:
    with st.expander(f"⚠️ {summaries.plural(len(bench.errors), 'line')} skipped in "
                     f"{common.plain(Path(bench.source or 'file').name)}; "
                     f"{summaries.plural(len(bench.items), 'item')} usable", expanded=not bench.items):
        st.markdown("\n".join(f"- {common.plain(e)}" for e in bench.errors[:200]))
if bench is not None and bench.items:
    if ss.get("variant") not in VARIANTS:
        ss["variant"] = "base"
    row2.selectbox("Variant", VARIANTS, key="variant", width=170,
                   format_func=lambda v: {"base": "base", "easy": "easy", "nca": "no correct answer"}[v],
                   help="base: the item's distractors; easy: easier distractors; no correct answer: the correct "
                        "option replaced by a wrong one.")
    filtered = uploads.filter_items(bench.items, ss.get("domains") or [], ss["variant"], ss.get("search", ""))
    if not filtered:
        st.warning("No item matches the filter.")
    else:
        by_id = {it.id: it for it in filtered}
        if ss.get("item") not in by_id:
            ss["item"] = learn.interesting_item_id(bundle.name, list(by_id)) or filtered[0].id
        row2.selectbox(f"Item ({len(filtered)} of {len(bench.items)})", list(by_id), key="item",
                       format_func=lambda i: f"{i} — {plots._short(by_id[i].question, 70)}")
        row2.number_input("Answer order", 0, 10**6, step=1, key="perm", width=130,
                          help="Permutation of the options (0 = as in the file).")
        bench_item = by_id[ss["item"]]
        with common.guard("Item"):
            item = bench_item.instance(ss["variant"], int(ss["perm"]))
    # the filter's widgets come after the item's (their values are in the session state already)
    n_filters = len(ss.get("domains") or []) + bool(ss.get("search"))
    with row2.popover("Filter" + (f" ({n_filters})" if n_filters else ""), icon=":material/filter_list:",
                      help="Filter the items by domain or by text."):
        st.multiselect("Domain", bench.domains, key="domains", placeholder="all domains")
        st.text_input("Search", key="search", placeholder="id, question or option text")
elif src == "Your question":
    c1 = c2 = c3 = row2  # in the picker's second row, before the run options and Run
    c1.text_area("Question", key="q", height=110)
    c2.text_area("Options, one per line (2-10)", key="opts", height=110)
    n_typed = len([x for x in (ss.get("opts") or "").splitlines() if x.strip()])
    ans_choices = ["none"] + list(LETTERS[:max(2, min(10, n_typed))])
    if ss.get("ans") not in ans_choices:
        ss["ans"] = "none"
    c3.selectbox("Correct option", ans_choices, key="ans", width=130)
    with common.guard("Your question"):
        # words the model does not know are said here, before any run
        item = common.readable(bundle, uploads.custom_item(ss.get("q", ""), ss.get("opts", ""), ss.get("ans")))

# shown beside the question it explains (side column), not above the chart
note = uploads.notation(bench_path if src == "Benchmark item" else bundle.name if src == "Your question" else None)
ss.setdefault("n_seeds", DEFAULT_N_SEEDS)
with row2.popover(f"Run options ({summaries.plural(int(ss['n_seeds']), 'seed')})", icon=":material/tune:",
                  help="Seeds for the robustness panel, running on every change, the prompt template."):
    st.number_input("Seeds for robustness", 1, 32, step=1, key="n_seeds",
                    help="Also run seeds seed, seed+1, …, and show the spread (1 = off).")
    auto = st.toggle("Run on every change", value=True, key="auto_run", help="Off: press Run (for slow models).")
    tkey = f"template_json::{bundle.checkpoint_hash}"
    if tkey not in ss:
        ss[tkey] = bundle.template.to_json()
    template = None
    st.markdown(f"**Prompt template:** {common.plain(bundle.template.name)}")
    st.text_area("Template (JSON, editable)", key=tkey, height=220)
    if st.button("Reset to the model's template"):
        del ss[tkey]
        st.rerun()
    with common.guard("Prompt template"):
        template = PromptTemplate.from_json(ss[tkey])
        if item is not None:
            st.caption("Rendered prompt")
            st.code(template.render(item.question, item.options), language=None, wrap_lines=True)
run_clicked = row2.button("Run", type="primary", disabled=item is None or template is None)
if template is None:
    st.error("The prompt template has a problem (see Run options).", icon="⚠️")

# Shareable URL, from the chosen settings, before anything runs: a failed run still leaves a link that reproduces
# the view.
view = ViewState(model=model, steps=settings["steps"], seed=settings["seed"], init=settings["init_scale"])
if src == "Benchmark item":
    view.bench, view.variant, view.perm = ss.get("bench"), ss.get("variant") or "base", int(ss.get("perm") or 0)
    view.item = item.id if item is not None else ss.get("item")
elif src == "Your question":
    if item is not None:
        view.q, view.opts = item.question, "|".join(item.options)
    else:
        view.q = ss.get("q") or None
        view.opts = "|".join(x.strip() for x in (ss.get("opts") or "").splitlines() if x.strip()) or None
    view.ans = ss.get("ans")
query = view.to_query()
st.query_params.from_dict(query)

if item is None or template is None:
    st.stop()

# ---------------------------------------------------------------------------------------------- run
# One batch: the chosen seed and the robustness seeds (seed+1, ...) run together (one forward for all).
model_template = None if template == bundle.template else template
n_seeds = int(ss.get("n_seeds", DEFAULT_N_SEEDS))
request = common.explore_request(bundle, item, settings["steps"], settings["seed"], settings["init_scale"], n_seeds,
                                 model_template)
key = request.key(bundle)
if not auto and not run_clicked and common.trace_store().get(key) is None:
    st.info("Press **Run** to trace this question.")
    st.stop()

# The belief chart (left) beside the question and its numbers (right): the first thing below the picker.
chart_col, side_col = st.columns([3, 2], gap="medium")
with chart_col:
    live = st.empty()


def _live(traces):
    if traces and traces[0].steps >= 2:
        live.plotly_chart(plots.belief_figure(traces[0], title="Belief (running…)"), theme=None,
                          key=f"live-{traces[0].steps}")


traces = None
with chart_col, common.guard("Run"):
    traces = common.run_traces(entry, request, label="Tracing", live=_live)
live.empty()
if not traces:
    st.stop()
# The commitment run length chosen in the sidebar applies to every metric, summary and figure below.
run_length = settings["run_length"]
seed_traces = type(traces)([t.with_metrics(run_length=run_length) for t in traces])
tr = seed_traces[0]
m = tr.metrics
key = f"{key}-rl{run_length}"  # figures depend on the run length too
sim = common.similarity(bench_path) if bench_path is not None else None
ranks = summaries.option_similarity_ranks(sim, tr)

depth = info["trained_depth"]
figs = {name: common.cached_figure(key, name, lambda f=f: f(tr)) for name, f in (
    ("belief", lambda t: plots.belief_figure(t, trained_depth=depth)), ("mass", plots.mass_figure),
    ("kl", plots.kl_figure), ("entropy", plots.entropy_figure))}
helps = summaries.metric_help(tr)
chart_helps = summaries.chart_help(tr)
with chart_col:
    belief_slot = st.container()
    figs["belief"] = intervene_panel.belief_with_stop_toggle(tr, figs["belief"], key)
    with belief_slot:
        common.plot(figs["belief"], key="fig_belief")
    st.caption(chart_helps["belief"] + (f" Steps past {depth} (shaded grey) are beyond the depth this model was "
                                        f"trained for." if settings["steps"] > depth else ""))

# ---------------------------------------------------------------------------------------------- summary
summary = {k: common.plain(v) for k, v in summaries.metric_summary(tr, ranks).items()}
with side_col:
    st.markdown(f"#### {common.plain(tr.question)}")
    st.markdown("  ".join(f"**{LETTERS[i]})** {common.plain(o)}{' ✓' if i == tr.correct else ''}"
                          for i, o in enumerate(tr.options)))
    if note:
        st.caption(note)
    # metrics in a wrapping row: as many per line as the column's width holds, none cut off
    with st.container(horizontal=True, gap="medium"):
        for label, value in (
                ("Final answer", LETTERS[m.final_answer]),
                ("Correct?", "—" if m.is_correct is None else ("yes" if m.is_correct else "no")),
                ("Exploration length", summary["Exploration length"]),
                ("Option mass", "—" if m.mass is None else summaries.mass_value(float(m.mass[-1]))),
                ("Commitments", len(m.commitments)), ("Backtracks", len(m.backtracks))):
            st.metric(label, value, help=helps[label], width="content")
    hint = summaries.backtrack_hint(m)
    if hint:
        st.info(hint, icon="ℹ️")
    st.markdown(f"**Final answer:** {summary['Final answer']} ({summary['Correct?']})  \n"
                f"**Commitments:** {summary['Commitments']}  \n**Backtracks:** {summary['Backtracks']}  \n"
                f"**Abandoned answers:** {summary['Abandoned answers']}  \n"
                f"**Option mass:** {summary['Option mass']}  \n**Exploration end:** {summary['Exploration end']}  \n"
                f"**Backtrack by run length:** {summary['Backtrack by run length']}")

c1, c2 = st.columns(2)
with c1:
    common.plot(figs["mass"], key="fig_mass")
    st.caption(chart_helps["mass"])
with c2:
    common.plot(figs["kl"], key="fig_kl")
    st.caption(chart_helps["kl"])
c1, c2 = st.columns(2)
with c1:
    common.plot(figs["entropy"], key="fig_entropy")
    st.caption(chart_helps["entropy"])
if tr.exit_probs is not None:
    with c2:
        figs["exit"] = common.cached_figure(key, "exit", lambda: plots.exit_prob_figure(tr, trained_depth=depth))
        common.plot(figs["exit"], key="fig_exit")
        st.caption("The model's own distribution over when to stop: the exit gate's probability of exiting at each "
                   "step (the last step takes what is left).")
intervene_panel.dynamics_panel(tr, key)
intervene_panel.intervene_panel(entry, tr, item, bench_item, settings, model_template)


# ---------------------------------------------------------------------------------------------- step slider
@st.fragment
def step_panel(trace, run_id):
    st.subheader("One step up close")
    t = st.slider("Step", 1, trace.steps, trace.steps, key="step_slider")
    c1, c2 = st.columns([1, 1])
    with c1:
        common.plot(common.cached_figure(run_id, f"top-{t}", lambda: plots.top_tokens_figure(trace, t)),
                    key="fig_top")
    with c2:
        st.markdown(f"**Belief at step {t}**")
        st.dataframe({"option": [f"{LETTERS[i]}) {o}" for i, o in enumerate(trace.options)],
                      "belief": np.round(trace.probs[t - 1], 4), "raw mass": np.round(trace.raw_mass[t - 1], 5)},
                     hide_index=True, width="stretch", column_config={
                         "option": st.column_config.TextColumn("option"),
                         "belief": st.column_config.NumberColumn(
                             "belief", format="%.4f", help="Renormalised over the options (sums to 1)."),
                         "raw mass": st.column_config.NumberColumn(
                             "raw mass", format="%.5f", help="The option letter's probability in the full "
                                                             "vocabulary, before renormalising.")})
        st.caption(f"Total letter mass {trace.letter_mass[t - 1]:.3f} · entropy {trace.metrics.entropy[t - 1]:.3f}"
                   + (f" · KL to step {t - 1}: {trace.metrics.kl[t - 2]:.2e}" if t > 1 else ""))


step_panel(tr, key)

# ---------------------------------------------------------------------------------------------- seeds
SEED_COLUMNS = {
    "seed": st.column_config.NumberColumn("seed", format="%d"),
    "final answer": st.column_config.TextColumn("final answer", help="The argmax at the last step."),
    "correct": st.column_config.CheckboxColumn("correct"),
    "exploration length": st.column_config.NumberColumn(
        "exploration end", help="The first step from which the step KL stays under the threshold (empty: never "
                                "converged)."),
    "backtracks": st.column_config.TextColumn("backtracks", help="Commitment -> next commitment to another answer."),
    "final entropy": st.column_config.NumberColumn("final entropy", format="%.3f",
                                                   help="Entropy of the belief at the last step (nats)."),
}
if n_seeds > 1:
    st.subheader(f"Seed robustness ({n_seeds} seeds)")
    with common.guard("Seed runs"):
        df, sentence = summaries.seed_robustness(seed_traces)
        (st.warning if "only" in sentence or "disagree" in sentence else st.success)(sentence)
        # chart, then the table at the page's width: every column readable at 1000 px too
        figs["seeds"] = common.cached_figure(key, "seeds", lambda: plots.seed_spread_figure(seed_traces))
        common.plot(figs["seeds"], key="fig_seeds")
        st.dataframe(df, hide_index=True, width="stretch", column_config=SEED_COLUMNS)


# ---------------------------------------------------------------------------------------------- geometry
@st.fragment
def geometry_panel(paths_by_group, run_id):
    st.subheader("Hidden-state geometry")
    st.caption("Latent state s_t at the last prompt position, projected to 2-D in one basis for all paths shown: "
               "one colour per run, ○ its start, ★ its end; the markers grow with the step.")
    c1, c2 = st.columns([1, 3])
    method = c1.radio("Projection", ["PCA", "UMAP"], key="proj_method", horizontal=True)
    groups = c2.multiselect("Paths", list(paths_by_group), default=list(paths_by_group)[:2], key="proj_groups")
    paths = [p for g in groups for p in paths_by_group[g]]
    if not paths:
        st.info("Choose at least one group of paths.")
        return
    labels, states = [p[0] for p in paths], [p[1] for p in paths]
    if method == "UMAP":
        common.warm_up_umap()  # numba compiles UMAP once per server (~15 s of CPU): on first use, not at start-up
        status = umap_status()
        if status["status"] != "ready":
            if status["status"] == "failed":
                st.warning(f"UMAP is unavailable ({status['error']}); showing PCA.")
            else:
                st.info("UMAP is still warming up in the background (numba compiles once per server, ~15 s); "
                        "showing PCA meanwhile. Press the button to check again.")
                st.button("Check UMAP again", key="umap_retry")
            method = "PCA"
    try:
        if method == "UMAP":
            ukey = ("umap", run_id, tuple(groups))
            if ss.get("_umap_key") != ukey:
                with st.spinner("Fitting UMAP…"):
                    ss["_umap_xy"] = umap_paths(states)
                ss["_umap_key"] = ukey
            xy = ss["_umap_xy"]
            note = "UMAP (cosine, random_state=0)"
        else:
            xy, ratio = pca_paths(states)
            note = f"PCA: components explain {ratio[0]:.0%} and {ratio[1]:.0%} of the variance"
        fig = common.cached_figure(run_id, f"proj-{method}-{groups}",
                                   lambda: plots.projection_figure(list(zip(labels, xy)), method=method))
        common.plot(fig, key="fig_proj")
        st.caption(note)
    except Exception as exc:  # noqa: BLE001
        common.show_error(exc, "Projection")


paths_by_group = {"this run": [(f"seed {tr.seed}", tr.hidden_last)]}
if len(seed_traces) > 1:
    paths_by_group[f"{len(seed_traces)} seeds"] = [(f"seed {t.seed}", t.hidden_last) for t in seed_traces[1:]]
if bench_item is not None and len(bench_item.available_variants()) > 1:
    if st.toggle("Also trace this item's other variants for the geometry plot", key="geo_variants"):
        with common.guard("Variant runs"):
            others = [v for v in bench_item.available_variants() if v != (tr.variant or "base")]
            vts = common.run_traces(entry, TraceRequest(
                [bench_item.instance(v, int(ss["perm"])) for v in others], settings["steps"],
                [settings["seed"]] * len(others), settings["init_scale"], model_template), label="Variants")
            paths_by_group["other variants"] = [(f"{t.variant}", t.hidden_last) for t in vts]
geometry_panel(paths_by_group, key)

# ---------------------------------------------------------------------------------------------- per-token convergence
st.subheader("Per-token convergence")
if tr.hidden_all is not None:
    with common.guard("Convergence map"):
        figs["convergence"] = common.cached_figure(key, "convergence", lambda: plots.convergence_heatmap(
            convergence_map(tr.hidden_all), token_strings(bundle, tr.prompt_ids)))
        common.plot(figs["convergence"], key="fig_conv")
else:
    st.info("Per-position states are not kept for a model this large by default (memory).")

# ---------------------------------------------------------------------------------------------- export & share
st.subheader("Export and share")
params = {"source": src, "benchmark": ss.get("bench") if src == "Benchmark item" else None,
          "n_seeds": n_seeds, "seeds": [t.seed for t in seed_traces]}
stem = f"looplens-{(tr.item_id or 'custom')}-{tr.variant or 'q'}-p{tr.permutation}-s{tr.seed}"
c1, c2, c3, c4 = st.columns(4)
all_runs = seed_traces if len(seed_traces) > 1 else seed_traces[:1]
c1.download_button("Trace CSV", data=lambda: all_runs.to_csv(params), file_name=f"{stem}.csv",
                   mime="text/csv", on_click="ignore", key="dl_csv")
c2.download_button("Trace JSON", data=lambda: all_runs.to_json(params), file_name=f"{stem}.json",
                   mime="application/json", on_click="ignore", key="dl_json")
fig_name = c3.selectbox("Figure", list(figs), key="export_fig", label_visibility="collapsed")
c3.download_button("Figure as HTML", data=lambda f=figs[fig_name]: plots.figure_html(f),
                   file_name=f"{stem}-{fig_name}.html", mime="text/html", on_click="ignore", key="dl_html")
if plots.chromium_path() is None:
    c4.info(plots.PNG_UNAVAILABLE)
elif c4.button("Make PNG", key="png_btn"):
    with common.guard("PNG export"), st.spinner("Rendering PNG…"):
        png = plots.figure_png(figs[fig_name])
        c4.download_button("Download PNG", data=png, file_name=f"{stem}-{fig_name}.png", mime="image/png",
                           on_click="ignore", key="dl_png")
try:
    base = st.context.url or ""
except Exception:  # noqa: BLE001
    base = ""
st.caption("Shareable link (the address bar holds it too): opening it reproduces this view.")
st.code(f"{base.split('?')[0]}?{urlencode(query)}", language=None, wrap_lines=True)
