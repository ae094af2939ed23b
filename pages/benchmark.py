"""Benchmark: aggregate view over a sweep's results (the paper's table with intervals, and its figures)."""
from __future__ import annotations

import streamlit as st

from pages import common, exit_panel

common.ensure_navigation()

from backend import plots  # noqa: E402
from backend import report as rp  # noqa: E402
from backend.intervention_tables import load_study  # noqa: E402
from backend.report_source import results_source  # noqa: E402

ss = st.session_state
st.title("Benchmark: the paper's numbers for a model")

HOWTO = """
A results directory comes from a **sweep** (every item x variant x answer order x seed, resumable, as Parquet),
and a **report** computes the paper's numbers with 95% item-bootstrap intervals:

```bash
python -m backend sweep --model MODEL --benchmark data/benchmarks/general-qa.jsonl --out results/MODEL \\
    --variants base,easy,nca --permutations 25 --seeds 1 --steps 30
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
    return rp.load_report(path)


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

meta = rep.get("meta", {})
st.caption(f"Model `{meta.get('model')}` · {meta.get('instances')} instances · {meta.get('items')} items · "
           f"variants {meta.get('variants')} · {meta.get('permutations')} answer orders · {meta.get('seeds')} seed(s) "
           f"· {meta.get('steps')} steps · intervals: {meta.get('ci', 0.95):.0%} bootstrap over {meta.get('resampling')}")
with st.expander("The paper's table, reproduced (with intervals)", expanded=True):
    st.markdown(rp.to_markdown(rep))
c1, c2 = st.columns(2)
with c1:
    common.plot(plots.report_entropy_figure(rep), key="fig_rep_entropy")
    common.plot(plots.report_backtracking_figure(rep), key="fig_rep_bt")
with c2:
    common.plot(plots.report_exploration_pair_figure(rep), key="fig_rep_pair")
    common.plot(plots.report_rank_figure(rep), key="fig_rep_rank")
common.plot(plots.report_exploration_hist_figure(rep), key="fig_rep_hist")
with common.guard("Exit rules and interventions"):
    exit_panel.benchmark_panel(rep, load_study(study_dir) if study_dir is not None else None)
with st.expander("How to produce results for another model"):
    st.markdown(HOWTO)
