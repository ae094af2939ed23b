"""Benchmark: aggregate view over a sweep's results (a model's numbers on a benchmark with intervals, reference
values from Huginn-0125 beside them, and the figures)."""
from __future__ import annotations

import streamlit as st

from pages import common, exit_panel

common.ensure_navigation()

from backend import plots  # noqa: E402
from backend import report as rp  # noqa: E402
from backend.intervention_tables import load_study  # noqa: E402
from backend.report_source import check_report, results_source  # noqa: E402

ss = st.session_state
st.title("Benchmark: a model's numbers on a benchmark")

HOWTO = """
A results directory comes from a **sweep** (every item x variant x answer order x seed, resumable, as Parquet),
and a **report** computes the paper's statistics for that model with 95% item-bootstrap intervals:

```bash
python -m backend sweep --model MODEL --benchmark data/benchmarks/general-qa.jsonl --out results/MODEL \\
    --variants base,easy,nca --steps 30      # all distinct answer orders x 3 seeds (the defaults)
python -m backend report results/MODEL --save data/results/MODEL    # writes report.md + report.json
```
Put the report in `data/results/<model>/` to ship it with the app, or point this page at the sweep directory.
"""


@st.cache_data(max_entries=8, show_spinner="Computing the report (bootstrap over items)…")
def _report_from_rows(path: str, mtime: float, n_boot: int) -> dict:
    df = rp.load_results(path, warn=lambda s: None)
    return rp.compute_report(df, n_boot=n_boot)


@st.cache_data(max_entries=8)
def _saved_report(path: str, mtime: float) -> dict:
    return check_report(rp.load_report(path), path)


shipped = rp.shipped_reports()
choices = [f"shipped: {name}" for name in shipped] + ["A results directory…"]
c1, c2 = st.columns([2, 3])
src = c1.selectbox("Results", choices, key="bench_results")
rep = None
study_dir = None
with common.guard("Results"):
    if src.startswith("shipped: "):
        d = study_dir = shipped[src[len("shipped: "):]]
        f = d / "report.json"
        rep = _saved_report(str(f), f.stat().st_mtime)
    else:
        path = c2.text_input("Sweep results directory (part-*.parquet) or a report.json",
                             key="bench_results_dir", placeholder="results/MODEL")
        if not path.strip():
            st.markdown(HOWTO)
            if not shipped:
                st.info("No results are shipped in data/results/ yet.")
            st.stop()
        source = results_source(path)
        study_dir = source.path
        if source.kind == "report":
            rep = _saved_report(str(source.path), source.mtime)
        else:
            rep = _report_from_rows(str(source.path), source.mtime, 1000)
if rep is None:
    st.markdown(HOWTO)
    st.stop()


def show_report(rep: dict) -> None:
    """The report's title, caption, table and figures (inside the page's error guard)."""
    meta = rep.get("meta", {})
    title = meta.get("title") or f"{meta.get('model')}"
    st.subheader(common.plain(title))
    st.caption(common.plain(f"Model {meta.get('model')} · benchmark {meta.get('benchmark')} · {meta.get('instances')} instances · "
               f"{meta.get('items')} items · variants {meta.get('variants')} · {meta.get('permutations')} answer orders "
               f"({ {True: 'balanced', False: 'not balanced'}.get(meta.get('orders_balanced'), 'balance unknown')}) "
               f"· {meta.get('seeds')} seed(s) · {meta.get('steps')} steps · mass threshold "
               f"{meta.get('mass_threshold', 'n/a')} · intervals: {meta.get('ci', 0.95):.0%} bootstrap over "
               f"{meta.get('resampling')}"))
    if "variants" in rep:
        st.markdown("**What the numbers rest on** (per variant; `field` is the name in `report --format json`): steps "
                    "below the mass threshold are *not answering*; a backtrack is *robust* when it holds under a majority "
                    "of seeds; the restricted mean counts never-converged instances at the step limit.")
        st.dataframe(rp.key_table(rep), hide_index=True, width="stretch")
    else:
        st.warning("This report was made before the reporting rules (option mass, seeds, censoring, within-item gain): "
                   "make it again with `python -m backend report DIR --save DIR` to see them.")
    with st.expander(common.plain(f"Report: {title}, beside reference values from Huginn-0125"), expanded=True):
        st.markdown(rp.to_markdown(rep))
    c1, c2 = st.columns(2)
    with c1:
        common.plot(plots.report_entropy_figure(rep), key="fig_rep_entropy")
        common.plot(plots.report_backtracking_figure(rep), key="fig_rep_bt")
    with c2:
        common.plot(plots.report_exploration_pair_figure(rep), key="fig_rep_pair")
        common.plot(plots.report_rank_figure(rep), key="fig_rep_rank")
    common.plot(plots.report_exploration_hist_figure(rep), key="fig_rep_hist")
    with st.expander("How to produce results for another model"):
        st.markdown(HOWTO)


with common.guard("Report"):
    show_report(rep)
with common.guard("Exit rules and interventions"):
    exit_panel.benchmark_panel(rep, load_study(study_dir) if study_dir is not None else None)
