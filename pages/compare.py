"""Compare: one item's base / easy / no-correct-answer variants side by side, averaged over answer orders."""
from __future__ import annotations

import streamlit as st

from pages import common

common.ensure_navigation()

from backend import learn, plots, summaries, uploads  # noqa: E402
from backend.items import Benchmark  # noqa: E402
from backend.links import ViewState  # noqa: E402
from backend.settings import DEFAULT_PERMUTATIONS  # noqa: E402
from backend.trace import TraceRequest  # noqa: E402

ss = st.session_state
st.title("Compare the variants of one item")
st.caption("Same stem, same correct answer: Base (plausible distractors), Easy (unrelated distractors) and No correct "
           "answer (the correct option replaced by a fourth plausible distractor). Each variant is run once per answer "
           "order and averaged over the orders.")

model = common.current_model()
entry = common.require_model(model)
bundle = entry[0]
settings = common.run_settings()

files = uploads.benchmark_files(bundle)
bench, bench_path = None, None
c1, c2, c3, c4 = st.columns([2, 3, 1, 1])
if files:
    bench, bench_path = common.pick_benchmark(files, c1, model=bundle)
else:
    c1.info("No benchmark in data/benchmarks: using a built-in example.")
    bench = Benchmark([uploads.example_item(bundle)], source="built-in example")
if bench is None or not bench.items:
    st.warning("The benchmark has no usable items.")
    st.stop()
items = [it for it in bench.items if len(it.available_variants()) > 1] or bench.items
by_id = {it.id: it for it in items}
if ss.get("item") not in by_id:
    ss["item"] = learn.interesting_item_id(bundle.name, list(by_id)) or items[0].id
c2.selectbox(f"Item ({len(items)} with variants)", list(by_id), key="item",
             format_func=lambda i: f"{i} — {plots._short(by_id[i].question, 60)}")
ss.setdefault("n_perms", DEFAULT_PERMUTATIONS)
c3.number_input("Orders", 1, 120, step=1, key="n_perms",
                help="Answer orders (permutations of the options) run and averaged per variant.")
n_perms = int(ss["n_perms"])
if int(ss.get("perm", 0)) >= n_perms:
    ss["perm"] = 0
c4.number_input("Detail", 0, n_perms - 1, step=1, key="perm", help="The answer order shown in detail below.")

bi = by_id[ss["item"]]
variants = bi.available_variants()
st.markdown(f"#### {common.plain(bi.question)}")
if uploads.notation(bench_path or bundle.name):
    st.caption(uploads.notation(bench_path or bundle.name))
cols = st.columns(len(variants))
for col, v in zip(cols, variants):
    inst = bi.variant(v)
    col.markdown(f"**{plots.VARIANT_NAMES[v]}**  \n" + "  \n".join(
        f"{plots.LETTERS[i]}) {common.plain(o)}{' ✓' if i == inst.correct else ''}"
        for i, o in enumerate(inst.options)))

request = TraceRequest([bi.instance(v, p) for v in variants for p in range(n_perms)], settings["steps"],
                       [settings["seed"]] * (len(variants) * n_perms), settings["init_scale"])
traces = None
with common.guard("Run"):
    traces = common.run_traces(entry, request, label=f"Tracing {len(request.items)} instances")
if not traces:
    st.stop()
by_variant = traces.by_variant()
st.query_params.from_dict(ViewState(model=model, bench=ss.get("bench") if files else None, item=bi.id,
                                    perm=int(ss["perm"]), steps=settings["steps"], seed=settings["seed"],
                                    init=settings["init_scale"]).to_query())
rkey = request.key(bundle)

names = {v: plots.VARIANT_NAMES[v] for v in variants}  # base / easy / nca: the item's own variants
tol = f"{plots.FLAT_BAND_TOL:g}"
bands = common.cached_figure(rkey, "variant_bands", lambda: {
    v: runs.belief_band(n_boot=summaries.N_BOOT) for v, runs in by_variant.items()})
ent_bands = common.cached_figure(rkey, "variant_entropy_bands", lambda: {
    v: runs.entropy_band(n_boot=summaries.N_BOOT) for v, runs in by_variant.items()})
colors = plots.variant_option_colors(bands)

fig = common.cached_figure(rkey, "variant_beliefs", lambda: plots.variant_belief_figure(bands))
common.plot(fig, key="fig_variants")
flat = [v for v in variants if plots.band_is_flat(bands[v])]
band_note = (f"Shaded band: the 95% bootstrap interval of the mean belief over the {n_perms} answer orders "
             "(orders resampled), not the spread of single runs. ")
if n_perms == 1:
    band_note = "One answer order per variant: no average and no band (raise **Orders** to see one). "
elif len(flat) == len(variants):
    band_note = (f"All {n_perms} answer orders give identical curves (within {tol}) in every variant: the model "
                 "reads the options, not their positions, so the mean is every order's curve and there is no band "
                 "to draw. ")
elif flat:
    band_note += (f"{' and '.join(names[v] for v in flat)}: all {n_perms} answer orders give identical curves (within "
                  f"{tol}), so no band is drawn there. ")
st.caption(band_note + "Every curve is in the item's original option order; an option keeps its colour in every "
           "panel and in the detail charts below.")
ent = common.cached_figure(rkey, "variant_entropy", lambda: plots.entropy_bands_figure(ent_bands))
common.plot(ent, key="fig_variant_entropy")
ent_flat = [v for v in variants if plots.band_is_flat(ent_bands[v])]
if n_perms > 1 and ent_flat:
    st.caption(("All answer orders give the same entropy curve" if len(ent_flat) == len(variants) else
                f"{' and '.join(names[v] for v in ent_flat)}: all answer orders give the same entropy curve") +
               ", so no band is drawn there.")

st.subheader("Metrics over the answer orders")
table = summaries.variant_table(traces)
table["variant"] = [names[v] for v in table["variant"]]
# One column per variant, one row per metric, as a static table that wraps: nothing clipped at any width.  Its
# cells are the app's own numbers and names (st.table renders Markdown: nothing from a file goes in here).
st.table(table.set_index("variant").T.rename_axis("metric").reset_index().astype(str), hide_index=True)


def _recolor(fig, options):
    """The detail chart's letter colours replaced by the options' colours of the figure above (lines, markers,
    commitment shading, backtrack labels), so one option has one colour on the whole page."""
    swap = {plots.option_color(i): colors.get(o, plots.option_color(i)) for i, o in enumerate(options)}
    for tr in fig.data:
        if tr.line is not None and tr.line.color in swap:
            tr.line.color = swap[tr.line.color]
        mc = tr.marker.color if tr.marker is not None else None
        if isinstance(mc, str) and mc in swap:
            tr.marker.color = swap[mc]
        elif isinstance(mc, (list, tuple)):
            tr.marker.color = [swap.get(c, c) for c in mc]
    for sh in fig.layout.shapes:
        if sh.name == "commitment" and sh.fillcolor in swap:
            sh.fillcolor = swap[sh.fillcolor]
    for an in fig.layout.annotations:
        if an.name == "backtrack" and an.arrowcolor in swap:
            an.arrowcolor = swap[an.arrowcolor]
            an.font.color = swap.get(an.font.color, an.font.color)
    return fig


def _detail_figure(t, v):
    """One run's belief chart, titled on two lines (the columns are narrow) and in the options' colours."""
    fig = _recolor(plots.belief_figure(t, title=f"{names[v]}:<br>belief over the options"), t.options)
    fig.update_layout(margin=dict(t=70), title_font_size=14, legend=dict(y=-0.3))
    return fig


st.subheader(f"Answer order {int(ss['perm'])} in detail")
st.caption("One run per variant with this answer order: letters A–D are the order shown to the model; colours are "
           "the options' colours above.")
cols = st.columns(len(variants))
for col, v in zip(cols, variants):
    t = by_variant[v][int(ss["perm"])]
    with col:
        common.plot(common.cached_figure(rkey, f"detail-{v}-{int(ss['perm'])}",
                                         lambda t=t, v=v: _detail_figure(t, v)),
                    key=f"fig_detail_{v}")
        s = {k: common.plain(x) for k, x in summaries.metric_summary(t).items()}
        st.caption(f"Final {s['Final answer']} · {s['Correct?']} · exploration {s['Exploration length']} · "
                   f"backtracks {s['Backtracks']}")

c1, c2 = st.columns(2)
c1.download_button("All traces (CSV)", data=lambda: traces.to_csv({"n_permutations": n_perms}),
                   file_name=f"looplens-compare-{bi.id}.csv", mime="text/csv", on_click="ignore")
c2.download_button("Variant figure (HTML)", data=lambda: plots.figure_html(fig),
                   file_name=f"looplens-compare-{bi.id}.html", mime="text/html", on_click="ignore")
