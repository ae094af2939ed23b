"""Benchmark's panel of issue 12 (not a page itself; app.py lists the pages): the exit-rule table and an
intervention study's point-of-no-return curve.  UI only, and torch-free (backend.plots_interventions is numpy
and plotly), like the rest of the Benchmark page.
"""
from __future__ import annotations

import streamlit as st

from backend import plots
from backend import plots_interventions as pi
from pages import common


def benchmark_panel(rep: dict, study) -> None:
    """Benchmark page: the exit-rule table (accuracy against mean steps) and, with an intervention study, the
    point-of-no-return curve and the backtrack-splice table."""
    rows = rep.get("exit_rules") or (study or {}).get("exit_rules")
    if not rows and not study:
        return
    st.markdown("##### Exit rules and interventions")
    if rows:
        # Strings from a report file are shown as text in the figure (Plotly renders HTML in labels and hovers).
        safe = [{k: plots.text(v) if isinstance(v, str) else v for k, v in r.items()} for r in rows
                if isinstance(r, dict)]
        fig = pi.exit_rule_figure(safe)
        if len(safe) > 8:  # many rules crowd near the same point: their labels would overlap, so hover instead
            fig.update_traces(mode="markers")
            st.caption("Hover a point for its rule and setting; the table below lists every rule.")
        common.plot(fig, key="fig_rep_exit")
        with st.expander("Exit-rule table (rule, setting, mean steps, accuracy, never stopped: the last step used)"):
            st.dataframe(rows, hide_index=True)
    if study:
        p = study.get("parameters", {})
        st.caption(f"Intervention study: noise at each step on {p.get('ponr_permutations', '?')} answer order(s), "
                   f"sigma {', '.join(f'{s:g}' for s in p.get('sigmas', []))} (x the state's norm).")
        common.plot(pi.ponr_figure(study["ponr"]), key="fig_rep_ponr")
        with st.expander("Point of no return: summary, and the backtrack splice"):
            st.dataframe(study.get("ponr_summary", []), hide_index=True)
            st.dataframe(study.get("backtrack_splice", []), hide_index=True)
