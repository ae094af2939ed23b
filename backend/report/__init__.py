"""Reports on sweep results: the paper's numbers with 95% item-bootstrap intervals, as Markdown or JSON.

* :mod:`.compute` -- :func:`compute_report`: a DataFrame of sweep rows -> a JSON-friendly dict (headline table,
  per variant x domain table, exploration, seed noise, position bias, entropy curves, histograms), under
  method.md's reporting rules (option mass, robust backtracks, sensitivity, censoring, within-item gain,
  similarity baselines, answer orders, labels; the field names are listed in the README);
* :mod:`.render` -- :func:`to_markdown`, :func:`to_json`, :func:`save_report`, :func:`load_report`, the shipped
  reports under ``data/results``;
* :mod:`.text` -- number formatting shared by both.

Titles name the model and benchmark that produced the numbers; the paper's are *reference values from
Huginn-0125*, never "reproduced".  Rows come from the sweep store's public loading API
(:func:`backend.sweep.load_results`, re-exported here);
the statistics from :mod:`backend.stats`.  ``python -m backend report DIR [--format md|json] [--out FILE]``.
"""
from __future__ import annotations

from ..stats import CI, N_BOOT, bootstrap_weights
from ..sweep.load import load_results, normalise_types
from .compute import PAPER, SCHEMA, compute_report
from .render import has_rows, key_table, load_report, save_report, shipped_reports, to_json, to_markdown

__all__ = ["CI", "N_BOOT", "PAPER", "SCHEMA", "bootstrap_weights", "compute_report", "has_rows", "key_table",
           "load_report", "load_results", "normalise_types", "save_report", "shipped_reports", "to_json",
           "to_markdown"]
