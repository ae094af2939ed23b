"""Explore's panels of issue 12 (not a page itself; app.py lists the pages): the exit rules' stop steps on the
belief plot (toggle), the latent dynamics under the belief, and the "Intervene" panel.  UI only: the runs and
numbers come from backend.interventions / backend.stopping / backend.dynamics, the figures from
backend.plots_interventions.
"""
from __future__ import annotations

import streamlit as st

from backend import plots_interventions as pi
from backend.dynamics import backtrack_steps, dynamics
from backend.interventions import KINDS, Intervention, InterventionRequest
from backend.settings import LETTERS, NOISE_SIGMA
from backend.stopping import stops
from pages import common

SPLICE_SOURCES = {"this run (another step)": None, "another variant": "variant",
                  "another answer order": "permutation", "another seed": "seed"}


def belief_with_stop_toggle(tr, fig, run_id: str):
    """The belief figure, with each exit rule's stop step marked when the toggle is on."""
    if not st.toggle("Mark where each exit rule would stop", key="stop_marks",
                     help="KL / entropy change / argmax run / latent change / exploration end / last step, and the "
                          "oracle (the first step from which the answer never changes)."):
        return fig
    with common.guard("Exit rules"):
        st_list = stops(tr.probs, tr.hidden_last if tr.hidden_last.size else None)
        marked = common.cached_figure(run_id, "belief-stops", lambda: pi.with_stop_marks(fig, st_list))
        # one row per numbered tag of the chart (the distinct stop steps, in order)
        steps = sorted({s.step for s in st_list})
        st.dataframe({"tag": list(range(1, len(steps) + 1)), "step": steps,
                      "rules that stop there": [", ".join(f"{s.rule} {s.setting}".strip() + (
                          "" if s.fired else " (never fired: last step)") for s in st_list if s.step == k)
                          for k in steps],
                      "answer": [LETTERS[next(s.answer for s in st_list if s.step == k)] for k in steps]},
                     hide_index=True, width="stretch", column_config={
                         "tag": st.column_config.NumberColumn("tag", width="small"),
                         "step": st.column_config.NumberColumn("step", width="small"),
                         "rules that stop there": st.column_config.TextColumn("rules that stop there",
                                                                              width="large"),
                         "answer": st.column_config.TextColumn("answer", width="small")})
        return marked
    return fig


def dynamics_panel(tr, run_id: str) -> None:
    st.subheader("Latent dynamics")
    st.caption("How the state s_t at the last prompt position moves, on the belief's step axis; red dashes mark the "
               "backtracks. Step size and distance are relative to the state's norm (states are kept in float16: "
               "values below ~1e-3 are at its resolution).")
    if tr.hidden_last.size == 0:
        st.info("This run has no recorded states.")
        return
    with common.guard("Latent dynamics"):
        fig = common.cached_figure(run_id, "dynamics", lambda: pi.dynamics_figure(
            dynamics(tr.hidden_last.astype("float32")), backtrack_steps(tr.metrics)))
        common.plot(fig, key="fig_dynamics")


def _intervention_inputs(steps: int, seed: int, bench_item):
    ss = st.session_state
    c1, c2, c3, c4 = st.columns(4)
    kind = c1.selectbox("Intervention", KINDS, key="iv_kind",
                        help="noise: add Gaussian noise (relative to the state's norm); reset: back to an initial "
                             "state; freeze: the state stops changing; splice: put in the state of another run.")
    ss.setdefault("iv_at", min(5, steps - 1))
    if ss["iv_at"] > steps - 1:
        ss["iv_at"] = steps - 1
    at = int(c2.number_input("At step k", 1, max(1, steps - 1), step=1, key="iv_at",
                             help="Acts on the state after step k, before that step's readout."))
    if kind == "noise":
        sigma = c3.number_input("sigma (x the state's norm)", 0.0, 100.0, NOISE_SIGMA, step=0.1, key="iv_sigma")
        nseed = c4.number_input("Noise seed", 0, 2**31 - 1, 0, step=1, key="iv_noise_seed")
        return Intervention("noise", at, sigma=float(sigma), noise_seed=int(nseed))
    if kind == "reset":
        own = c3.toggle("The run's own initial state", value=True, key="iv_reset_own")
        rseed = None if own else int(c4.number_input("Reset seed", 0, 2**31 - 1, seed + 1, step=1, key="iv_rseed"))
        return Intervention("reset", at, reset_seed=rseed)
    if kind == "freeze":
        return Intervention("freeze", at)
    choices = list(SPLICE_SOURCES)
    if bench_item is None or len(bench_item.available_variants()) < 2:
        choices.remove("another variant")
    src = c3.selectbox("Splice from", choices, key="iv_src")
    j = int(c4.number_input("Source step j", 1, steps, min(at, steps), step=1, key="iv_j"))
    c1, c2, _ = st.columns([1, 1, 2])
    what = SPLICE_SOURCES[src]
    splice_from = None
    if what == "variant":
        others = [v for v in bench_item.available_variants() if v != ss.get("variant", "base")]
        splice_from = {"variant": c1.selectbox("Variant", others, key="iv_src_variant")}
    elif what == "permutation":
        splice_from = {"permutation": int(c1.number_input("Answer order", 0, 10**6, 1, step=1, key="iv_src_perm"))}
    elif what == "seed":
        splice_from = {"seed": int(c1.number_input("Seed", 0, 2**31 - 1, seed + 1, step=1, key="iv_src_seed"))}
    positions = c2.selectbox("Positions", ["shared", "last", "all"], key="iv_positions",
                             help="shared: the prompt prefix and suffix both prompts have (always the last position); "
                                  "last: the readout position only; all: every position (same prompt length only).")
    return Intervention("splice", at, splice_from=splice_from, splice_step=j, splice_positions=positions)


def intervene_panel(entry, tr, item, bench_item, settings: dict, template) -> None:
    """Trace this run again with one intervention at step k and draw it over the baseline (dashed)."""
    st.subheader("Intervene")
    if not st.toggle("Intervene on the latent state", key="iv_on",
                     help="Run the same question, seed and steps again with one change to the state at step k."):
        st.caption("Noise, reset, freeze or splice the latent state at one step and see whether the answer "
                   "changes, and where it rejoins the baseline.")
        return
    steps = int(settings["steps"])
    if steps < 2:
        st.info("An intervention needs at least 2 steps.")
        return
    with common.guard("Intervention"):
        iv = _intervention_inputs(steps, int(settings["seed"]), bench_item)
        request = InterventionRequest(item, iv, steps, int(settings["seed"]), float(settings["init_scale"]),
                                      template, bench_item, baseline=tr)
        res = common.run_traces(entry, request, label="Intervening")
        run_id = request.key(entry[0])
        fig = common.cached_figure(run_id, "counterfactual", lambda: pi.counterfactual_figure(
            res.intervened, res.baseline, iv, res.comparison))
        common.plot(fig, key="fig_intervene")
        c = res.comparison
        cols = st.columns(4)
        cols[0].metric("Final answer", LETTERS[c["final_answer"]],
                       delta="changed" if c["final_changed"] else "unchanged", delta_color="off")
        cols[1].metric("Diverges at", "—" if c["diverged_at"] is None else f"step {c['diverged_at']}")
        cols[2].metric("Rejoins the baseline", "—" if c["rejoin_step"] is None else f"step {c['rejoin_step']}")
        cols[3].metric("Max belief change (TV)", f"{c['max_tv']:.2f}")
        lines = [f"**What changed:** {pi.change_summary(c)}."]
        fmt = lambda runs: ", ".join(f"{LETTERS[o]} {a}-{b}" for o, a, b in runs) or "none"  # noqa: E731
        lines.append(f"**New commitments:** {fmt(c['new_commitments'])} · **lost:** {fmt(c['lost_commitments'])}")
        if res.splice is not None:
            lines.append(f"**Spliced:** {res.splice['description']}.")
        st.markdown("  \n".join(lines))

