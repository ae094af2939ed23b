"""Benchmark: aggregate view over a sweep's results (a model's numbers on a benchmark with intervals, reference
values from Huginn-0125 beside them, and the figures)."""
from __future__ import annotations

import streamlit as st

from pages import common, exit_panel

common.ensure_navigation()

import pandas as pd  # noqa: E402

from backend import plots  # noqa: E402
from backend import report as rp  # noqa: E402
from backend.report import headline as hl  # noqa: E402
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
Put the report in `data/results/MODEL/` to ship it with the app, or point this page at the sweep directory.
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


CARD_WIDTH = 215  # px: four cards abreast at 1400 px, two at 1000 px
CARD_HEIGHT = 185  # px: every card as tall (a two-line reference value fits)
FIGURE_WIDTH = 430  # px: two figures abreast at 1400 px (main column ~920 px), one at 1000 px


def _table(rows, what: str) -> None:
    """A static table that wraps (nothing clipped at any width); every header and cell shown as text."""
    if not rows:
        st.caption(f"No {what} in this report.")
        return
    df = pd.DataFrame(rows).astype(str)
    df.columns = [common.plain(c) for c in df.columns]
    st.table(df.map(common.plain), hide_index=True)


def show_report(rep: dict) -> None:
    """Headline numbers with their intervals, then the figures, then the tables; the full Markdown report only as a
    download and in a collapsed expander (inside the page's error guard)."""
    meta = rep.get("meta", {})
    title = hl.title(rep)
    st.subheader(common.plain(title))
    st.caption(common.plain(hl.description(rep)))
    ref_model = meta.get("reference_model") or "Huginn-0125"
    st.info(common.plain(hl.not_a_replication(rep)), icon="ℹ️")

    cards = hl.cards(rep)
    if cards:
        st.markdown("##### Headline numbers")
        # Cards of a fixed width in a wrapping row: four abreast on a wide page, two on a narrow one (never cut).
        with st.container(horizontal=True, gap="small"):
            for c in cards:
                with st.container(border=True, width=CARD_WIDTH, height=CARD_HEIGHT):
                    st.metric(common.plain(c["label"]), c["value"],
                              delta=common.plain(c["interval"]) if c["interval"] else None, delta_color="off",
                              delta_arrow="off", help=common.plain(c["help"]))
                    st.caption(common.plain(c["reference"]) if c["reference"] else "no reference value")
        st.caption("Each card: this run's value, its 95% interval (bootstrap over items) and, where the paper reports "
                   f"one, {common.plain(ref_model)}'s reference value. Hover **?** for what a number rests on.")

    st.markdown("##### Figures")
    # Two figures abreast where they fit, one under the other on a narrow page.
    with st.container(horizontal=True, gap="medium"):
        for name, build in (("entropy", plots.report_entropy_figure), ("pair", plots.report_exploration_pair_figure),
                            ("bt", plots.report_backtracking_figure), ("rank", plots.report_rank_figure)):
            with st.container(width=FIGURE_WIDTH):
                common.plot(build(rep), key=f"fig_rep_{name}")
    common.plot(plots.report_exploration_hist_figure(rep), key="fig_rep_hist")

    st.markdown("##### Findings beside the reference values")
    _table(hl.headline_rows(rep), "findings")
    st.markdown("##### Per variant")
    _table(hl.variant_rows(rep, skip_key_fields="variants" in rep), "variant groups")
    if "variants" in rep:
        st.markdown("##### What the numbers rest on")
        st.caption("Per variant; *field* is the name in `report --format json`. Steps below the mass threshold are "
                   "*not answering*; a backtrack is *robust* when it holds under a majority of seeds; the restricted "
                   "mean counts never-converged instances at the step limit.")
        _table(hl.key_rows(rep, rp.key_table(rep)), "per-variant numbers")
    else:
        st.warning("This report was made before the reporting rules (option mass, seeds, censoring, within-item gain): "
                   "make it again with `python -m backend report DIR --save DIR` to see them.")


def show_downloads(rep: dict) -> None:
    """The full report as files, and as Markdown in a collapsed expander (its headings below the page's)."""
    md = rp.to_markdown(rep)
    with st.container(horizontal=True):
        st.download_button("Full report (report.md)", data=md, file_name="report.md", mime="text/markdown",
                           on_click="ignore", key="dl_report_md")
        st.download_button("Numbers (report.json)", data=rp.to_json(rep), file_name="report.json",
                           mime="application/json", on_click="ignore", key="dl_report_json")
    with st.expander("The full report (Markdown), beside reference values from Huginn-0125"):
        st.markdown(hl.demoted_markdown(md))


with common.guard("Report"):
    show_report(rep)
with common.guard("Exit rules and interventions"):
    exit_panel.benchmark_panel(rep, load_study(study_dir) if study_dir is not None else None)
with common.guard("Report files"):
    show_downloads(rep)
with st.expander("How to produce results for another model"):
    st.markdown(HOWTO)
