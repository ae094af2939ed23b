"""Learn: a guided walkthrough — what a looped model is, the task of the examples, then curated examples with
step-by-step animations; a presenter mode steps through one example at a time in large type."""
from __future__ import annotations

import streamlit as st

from pages import common

common.ensure_navigation()

from urllib.parse import urlencode  # noqa: E402

from backend import learn, plots, uploads  # noqa: E402
from backend.items import Benchmark  # noqa: E402
from backend.links import ViewState  # noqa: E402
from backend.models import describe  # noqa: E402
from backend.models.runtime import model_choices  # noqa: E402
from backend.trace import TraceRequest  # noqa: E402

ss = st.session_state
SHORT = {"exploration": "Exploration", "commitment": "Commitment", "convergence": "Convergence",
         "backtrack": "Backtrack", "nca": "No correct answer"}
PRESENTER_FONT = 20  # chart font size in presenter mode (px)

PRESENTER_HELP = ("For a classroom: one example at a time in large type. Step through the recurrent steps with "
                  "Previous / Next (or the ← and → keys).")
if not ss.get("learn_presenter"):
    st.title("Learn: how a looped model thinks")
presenter = st.toggle("Presenter mode", key="learn_presenter", help=PRESENTER_HELP)

model = common.current_model()
entry = common.require_model(model, hint="Learn walks through examples of the model chosen in the sidebar.")
bundle = entry[0]
settings = learn.page_settings(bundle.name)
files = uploads.benchmark_files(model)
notation = uploads.notation(bundle.name) or (uploads.notation(files[0].name) if files else None)
readout = bundle.template.readout if bundle.template.readout in ("letter", "option") else "letter"
READS = {"letter": "each answer letter", "option": "each option's own token (this model answers with the option "
                                                    "itself, not its letter)"}
ANSWERS = {"letter": "The model answers with the letter of an option.",
           "option": "This model answers with the option itself (e.g. c3), not its letter; its belief is the "
                     "probability of each option's token."}


def model_text() -> None:
    st.markdown(
        "A **looped** (recurrent-depth) language model runs the *same* core block again and again on a latent "
        "state. The prelude reads the prompt once into an embedding *e*; the core block is applied K times, each "
        "time mixing the previous state with *e*; the coda turns a state into next-token probabilities. (Families "
        "differ: Ouro loops its whole layer stack a few times, starts from the prompt instead of a random state, "
        "and has an exit gate saying when it would stop.)\n\n"
        "Because the model was trained to answer after several different numbers of steps, **every** "
        "intermediate state can be decoded with the model's own coda. LoopLens does that after each step and "
        f"reads the probability of {READS[readout]}, renormalised over the options: the *belief*. Watching it "
        "step by step shows the model explore, commit, converge, and sometimes change its mind.")
    st.markdown(
        f"- **Exploration** ends at the first step from which the belief changes by at most KL "
        f"{settings.kl_threshold:g} for {settings.kl_window} steps in a row.\n"
        f"- A **commitment** is the same top answer for at least {settings.run_length} steps in a row.\n"
        "- A **backtrack** is a commitment to one answer, later replaced by a commitment to another.")


def task_text() -> None:
    info = describe(bundle)
    bench_name = files[0].name if files else "the built-in example"
    if notation:
        st.markdown(
            "#### The task in the examples\n"
            "A ball starts under one of five cups, c1 to c5, and a list of swaps moves it; the question is which "
            f"cup holds the ball at the end.  \n*{common.plain(notation)}*\n\n"
            "The options A-D are four cups: the right one and three distractors, mostly cups where the ball was "
            "after fewer swaps (what a computation that stopped early would answer). In the *No correct answer* "
            f"variant the right cup is replaced by a wrong one. {ANSWERS[readout]}")
    else:
        st.markdown(f"#### The task in the examples\nMultiple-choice questions from "
                    f"{common.plain(bench_name)}. {ANSWERS[readout]}")
    if notation and bundle.name in model_choices():
        st.markdown(
            f"**{common.plain(bundle.name)} is a small synthetic model we trained** for LoopLens "
            f"({common.plain(info['parameters_text'])} parameters, {common.plain(info['family_title'])}, trained "
            f"depth {info['trained_depth']} steps) on this task, whose answer can be checked swap by swap. It shows "
            "the phenomena on a task we control; its numbers are not a replication of the paper's results on "
            "Huginn-0125.")
    else:
        st.markdown(f"The examples run on **{common.plain(bundle.name)}** ({common.plain(info['summary'])}).")


def load_examples():
    """{kind: trace} for the model's examples (curated, else found by a scan), and the benchmark's items by id."""
    bench = None
    with common.guard("Benchmark"):
        bench = common.load_benchmark(files[0]) if files else Benchmark([uploads.EXAMPLE_ITEM], source="example")
    if bench is None:
        st.stop()
    by_id = {it.id: it for it in bench.items}
    curated = learn.load_curated(bundle.name)
    examples = {}
    with common.guard("Finding examples"):
        if settings.curated and curated and all(e.item_id in by_id for e in curated["examples"]):
            exs = curated["examples"]
            insts = [by_id[e.item_id].instance(e.variant, e.permutation) for e in exs]
            trs = common.run_traces(entry, TraceRequest(insts, settings.steps, [e.seed for e in exs],
                                                        settings.init_scale), label="Loading the examples")
            examples = {e.kind: t for e, t in zip(exs, trs)}
        else:
            insts = learn.scan_instances(bench.items, n_items=30, permutations=2)
            trs = common.run_traces(entry, TraceRequest(insts, settings.steps, [learn.SCAN_SEED] * len(insts),
                                                        settings.init_scale),
                                    label=f"Scanning {len(insts)} instances for examples (once per server)")
            examples = {k: trs[i] for k, i in learn.select_examples(trs).items()}
    return examples, by_id


def question_block(tr, large: bool = False) -> None:
    opts = "\u2003".join(f"**{plots.LETTERS[i]})** {common.plain(o)}{' ✓' if i == tr.correct else ''}"
                     for i, o in enumerate(tr.options))
    if large:
        st.markdown(f"### {common.plain(tr.question)}")
        st.markdown(f"#### {opts}")
    else:
        st.markdown(f"**{common.plain(tr.question)}**  \n{opts}")
    lines = [notation] if notation else []
    if not large:  # presenter mode: the run's settings are in the sidebar, the room is for the chart
        lines.append(f"{tr.steps} steps · seed {tr.seed} · init scale {tr.init_scale:g} · answer order "
                     f"{tr.permutation} · variant {tr.variant or 'base'}")
    if lines:
        st.caption("  \n".join(common.plain(x) for x in lines))


def explore_link(tr) -> str:
    q = ViewState(model=model, bench=files[0].name if files else None, item=tr.item_id, variant=tr.variant or "base",
                  perm=tr.permutation, steps=settings.steps, seed=tr.seed or 0)
    return f"[Open this example in Explore](/?{urlencode(q.to_query())})"


def _run_key(kind: str, tr) -> str:
    """The name of an example's run, for its cached figures."""
    return (f"learn-{bundle.path}-{bundle.checkpoint_hash}-{kind}-{tr.item_id}-{tr.variant}-{tr.permutation}-"
            f"{tr.seed}-{tr.steps}")


# ---------------------------------------------------------------------------------------------- presenter mode
def _step_key(kind: str) -> str:
    return f"learn_step_{kind}"


def _move(kind: str, delta: int, total: int) -> None:
    ss[_step_key(kind)] = min(total, max(1, int(ss.get(_step_key(kind), 1)) + delta))


def presenter_view(examples, by_id) -> None:
    kinds = [k for k in learn.KINDS if k in examples]
    if not kinds:
        st.info("The model shows no clear example on the scanned items. Try the Explore page.")
        return
    if ss.get("learn_pres_kind") not in kinds:
        ss["learn_pres_kind"] = kinds[0]
    kind = st.segmented_control("Example", kinds, format_func=SHORT.get, key="learn_pres_kind", required=True,
                                label_visibility="collapsed")
    tr = examples[kind]
    K = int(tr.steps)
    step = min(K, max(1, int(ss.get(_step_key(kind), 1))))
    ss[_step_key(kind)] = step
    question_block(tr, large=True)
    with st.container(horizontal=True, vertical_alignment="center"):
        st.button("Previous", icon=":material/chevron_left:", key="learn_prev", shortcut="Left", disabled=step == 1,
                  on_click=_move, args=(kind, -1, K))
        st.button("Next", icon=":material/chevron_right:", key="learn_next", shortcut="Right", disabled=step == K,
                  on_click=_move, args=(kind, 1, K), type="primary")
        st.button("Back to step 1", icon=":material/first_page:", key="learn_first", shortcut="Home",
                  disabled=step == 1, on_click=_move, args=(kind, -K, K), type="tertiary")
    headline, details = learn.step_story(tr, step)
    st.markdown(f"## {common.plain(headline)}")
    st.markdown(f"#### {common.plain(details)}")
    fig = common.cached_figure(_run_key(kind, tr), f"presenter-{step}",
                               lambda: plots.presenter_belief_figure(tr, step, font_size=PRESENTER_FONT))
    common.plot(fig, key="fig_learn_presenter")
    with st.expander(f"What this example shows: {learn.TITLES[kind]}", expanded=step == K):
        st.markdown(f"#### {common.plain(learn.explain(kind, tr, by_id.get(tr.item_id)))}")
        st.markdown(explore_link(tr))


# ---------------------------------------------------------------------------------------------- page
if presenter:
    examples, by_id = load_examples()
    presenter_view(examples, by_id)
    st.stop()

tabs = st.tabs(["1 · The looped model", "2 · Exploration", "3 · Commitment", "4 · Convergence", "5 · Backtrack",
                "6 · No correct answer"])
with tabs[0]:
    common.plot(common.cached_figure("learn-diagram", "architecture", plots.architecture_figure),
                key="fig_learn_diagram")
    left, right = st.columns(2, gap="large")
    with left:
        model_text()
    with right:
        task_text()

examples, by_id = load_examples()
st.caption(f"Examples on {common.plain(bundle.name)}, each run with its own settings ({settings.steps} steps, "
           f"init scale {settings.init_scale:g}, commitment run length {settings.run_length}). Press ▶ play under a "
           "chart to watch the belief evolve step by step, or turn on presenter mode to step through it; open any "
           "example in Explore to take it apart.")
for tab, kind in zip(tabs[1:], learn.KINDS):
    with tab:
        st.subheader(learn.TITLES[kind])
        tr = examples.get(kind)
        if tr is None:
            st.info("The model shows no clear example of this on the scanned items. Try the Explore page.")
            continue
        question_block(tr)
        st.info(common.plain(learn.explain(kind, tr, by_id.get(tr.item_id))))
        fig = common.cached_figure(_run_key(kind, tr), "animation", lambda tr=tr: plots.animated_belief_figure(tr))
        common.plot(fig, key=f"fig_learn_{kind}")
        st.markdown(explore_link(tr))
