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
           "answer (the correct option replaced by a fourth plausible distractor). Each variant is averaged over "
           "answer-order permutations, with a 95% bootstrap band; every curve is in the item's original option order.")

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
c3.number_input("Permutations", 1, 120, step=1, key="n_perms", help="Answer orders averaged per variant.")
n_perms = int(ss["n_perms"])
if int(ss.get("perm", 0)) >= n_perms:
    ss["perm"] = 0
c4.number_input("Detail order", 0, n_perms - 1, step=1, key="perm", help="The permutation shown in detail below.")

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

st.subheader("Metrics over the permutations")
st.dataframe(summaries.variant_table(traces), hide_index=True)

fig = common.cached_figure(rkey, "variant_beliefs", lambda: plots.variant_belief_figure(
    {v: runs.belief_band(n_boot=summaries.N_BOOT) for v, runs in by_variant.items()}))
common.plot(fig, key="fig_variants")
ent = common.cached_figure(rkey, "variant_entropy", lambda: plots.entropy_bands_figure(
    {v: runs.entropy_band(n_boot=summaries.N_BOOT) for v, runs in by_variant.items()}))
common.plot(ent, key="fig_variant_entropy")

st.subheader(f"Answer order {int(ss['perm'])} in detail")
cols = st.columns(len(variants))
for col, v in zip(cols, variants):
    t = by_variant[v][int(ss["perm"])]
    with col:
        common.plot(common.cached_figure(rkey, f"detail-{v}-{int(ss['perm'])}",
                                         lambda t=t, v=v: plots.belief_figure(
                                             t, title=f"{plots.VARIANT_NAMES[v]}: belief over the options")),
                    key=f"fig_detail_{v}")
        s = {k: common.plain(v) for k, v in summaries.metric_summary(t).items()}
        st.caption(f"Final {s['Final answer']} · {s['Correct?']} · exploration {s['Exploration length']} · "
                   f"backtracks {s['Backtracks']}")

c1, c2 = st.columns(2)
c1.download_button("All traces (CSV)", data=lambda: traces.to_csv({"n_permutations": n_perms}),
                   file_name=f"looplens-compare-{bi.id}.csv", mime="text/csv", on_click="ignore")
c2.download_button("Variant figure (HTML)", data=lambda: plots.figure_html(fig),
                   file_name=f"looplens-compare-{bi.id}.html", mime="text/html", on_click="ignore")
