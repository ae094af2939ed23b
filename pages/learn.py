"""Learn: a guided walkthrough — what a looped model is, then curated examples with step-by-step animations."""
from __future__ import annotations

import streamlit as st

from pages import common

common.ensure_navigation()

from urllib.parse import urlencode  # noqa: E402

from backend import learn, plots, uploads  # noqa: E402
from backend.items import Benchmark  # noqa: E402
from backend.links import ViewState  # noqa: E402
from backend.models.runtime import default_model  # noqa: E402
from backend.settings import DEFAULT_STEPS  # noqa: E402
from backend.trace import TraceRequest  # noqa: E402

st.title("Learn: how a looped model thinks")

DIAGRAM = """
digraph G {
  rankdir=LR; node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=11];
  x  [label="question + options\\n(tokens)", fillcolor="#eeeeee"];
  P  [label="Prelude P\\n(embed + a few layers)", fillcolor="#d6e6f5"];
  s0 [label="random initial\\nstate s0", shape=ellipse, fillcolor="#fff3cd"];
  R  [label="Core block R\\nrepeated K times", fillcolor="#fde2c8"];
  C  [label="Coda C\\n(layers + norm + head)", fillcolor="#d9f0d3"];
  p  [label="belief over A, B, C, D\\nafter step t", shape=note, fillcolor="#ffffff"];
  x -> P -> R [label=" e"];
  s0 -> R;
  R -> R [label=" s(t) = R(s(t-1), e)", fontsize=10];
  R -> C [label=" s(t)  (every step)"];
  C -> p;
}
"""

tabs = st.tabs(["1 · The looped model", "2 · Exploration", "3 · Commitment", "4 · Convergence", "5 · Backtrack",
                "6 · No correct answer"])
with tabs[0]:
    c1, c2 = st.columns([3, 2])
    with c1:
        st.graphviz_chart(DIAGRAM)
    with c2:
        st.markdown(
            "A **looped** (recurrent-depth) language model runs the *same* core block again and again on a latent "
            "state. The prelude reads the prompt once; the core block is applied K times, each time mixing the "
            "previous state with the prompt's embedding; the coda turns a state into next-token probabilities. "
            "(Families differ: Ouro loops its whole layer stack a few times and reads out with its final norm and "
            "head, with an exit gate saying when it would stop.)\n\n"
            "Because the model was trained to answer after several different numbers of steps, **every** "
            "intermediate state can be decoded with the model's own readout. LoopLens does that after each step "
            "and reads the "
            "probability of each answer letter: the *belief*. Watching it step by step shows the model explore, "
            "commit, converge — and sometimes change its mind.")
        st.markdown("- **Exploration** ends when the belief changes by less than KL 0.01 for 3 steps in a row.\n"
                    "- A **commitment** is the same top answer for at least 3 steps (the run length, a sidebar setting).\n"
                    "- A **backtrack** is a commitment to one answer, later replaced by a commitment to the final one.")

model = default_model()
entry = common.require_model(model)
bundle = entry[0]
files = uploads.benchmark_files(model)
bench = None
with common.guard("Benchmark"):
    bench = common.load_benchmark(files[0]) if files else Benchmark([uploads.EXAMPLE_ITEM], source="example")
if bench is None:
    st.stop()
by_id = {it.id: it for it in bench.items}

curated = learn.load_curated(bundle.name)
steps, seed = DEFAULT_STEPS, 0
examples = {}
with common.guard("Finding examples"):
    if curated and all(e.item_id in by_id for e in curated["examples"]):
        steps = int(curated.get("steps", steps))
        exs = curated["examples"]
        insts = [by_id[e.item_id].instance(e.variant, e.permutation) for e in exs]
        trs = common.run_traces(entry, TraceRequest(insts, steps, [e.seed for e in exs], 1.0),
                                label="Loading the examples")
        examples = {e.kind: t for e, t in zip(exs, trs)}
    else:
        insts = learn.scan_instances(bench.items, n_items=30, permutations=2)
        trs = common.run_traces(entry, TraceRequest(insts, steps, [seed] * len(insts), 1.0),
                                label=f"Scanning {len(insts)} instances for examples (once per server)")
        examples = {k: trs[i] for k, i in learn.select_examples(trs).items()}

st.caption(f"Examples on the default model {common.plain(bundle.name)}, {steps} steps. Press ▶ play under a chart to watch the "
           "belief evolve step by step; open any example in Explore to take it apart.")
for tab, kind in zip(tabs[1:], learn.KINDS):
    with tab:
        st.subheader(learn.TITLES[kind])
        tr = examples.get(kind)
        if tr is None:
            st.info("The model shows no clear example of this on the scanned items. Try the Explore page.")
            continue
        st.markdown(f"**{common.plain(tr.question)}**  \n" + "  ".join(
            f"**{plots.LETTERS[i]})** {common.plain(o)}{' ✓' if i == tr.correct else ''}"
            for i, o in enumerate(tr.options)))
        st.info(common.plain(learn.explain(kind, tr)))
        fig = common.cached_figure(f"learn-{bundle.checkpoint_hash}-{kind}-{tr.item_id}-{tr.variant}-{tr.seed}",
                                   "animation", lambda tr=tr: plots.animated_belief_figure(tr))
        common.plot(fig, key=f"fig_learn_{kind}")
        q = ViewState(model=model, bench=files[0].name if files else None, item=tr.item_id,
                           variant=tr.variant or "base", perm=tr.permutation, steps=steps, seed=tr.seed or 0)
        st.markdown(f"[Open this example in Explore](/?{urlencode(q.to_query())})")
