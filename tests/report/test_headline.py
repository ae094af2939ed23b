"""The Benchmark page's view of a report (backend.report.headline) and the escaping of report strings in
to_markdown (issue 13)."""
import copy
import json
import re
from pathlib import Path

import pytest

from backend.report import headline as hl
from backend.report import key_table, to_markdown
from backend.report.render import distinct_groups, md_text
from backend.report.text import pct

SHIPPED = Path(__file__).resolve().parents[2] / "data" / "results" / "cups-letters" / "report.json"
EVIL = "![x](http://evil.example/a.png) [click](http://evil.example) <a href='x'>y</a> $m$ :red[r] a|b www.evil.example"


@pytest.fixture(scope="module")
def rep():
    if not SHIPPED.is_file():
        pytest.skip("no shipped report")
    return json.loads(SHIPPED.read_text())


def test_description_names_the_design_as_text_not_a_python_dict(rep):
    d = hl.description(rep)
    assert "{" not in d and "'" not in d
    n = rep["meta"]["variants"]
    assert f"Base {n['base']:,}, Easy {n['easy']:,}, No correct answer {n['nca']:,}" in d
    assert f"{rep['meta']['permutations']} answer orders (balanced)" in d and "mass threshold 0.01" in d
    assert "bootstrap over items (2,000 replicates)" in d


def test_cards_carry_interval_reference_and_what_they_rest_on(rep):
    cards = {c["label"]: c for c in hl.cards(rep)}
    bt = cards["Backtracks · Base"]
    h = next(r for r in rep["headline"] if r["key"] == "backtrack_rate_base")
    assert bt["value"] == pct(h["value"]) and bt["interval"] == f"95% CI {pct(h['lo'])} to {pct(h['hi'])}"
    assert bt["reference"] == "Huginn-0125, reference: 32%"
    assert f"n = {h['n']:,}" in bt["help"] and f"{h['n_items']} items" in bt["help"] and "below 0.01" in bt["help"]
    assert cards["Accuracy · Base"]["reference"] is None  # the paper reports no accuracy: none invented
    assert cards["Exploration · Base"]["value"].endswith("steps")
    # a number the report does not have is left out, not shown as n/a
    r = copy.deepcopy(rep)
    r["headline"] = [h for h in r["headline"] if h["key"] != "backtrack_rate_base"]
    assert "Backtracks · Base" not in {c["label"] for c in hl.cards(r)}


def test_tables_have_no_repeated_rows_and_name_variants_as_the_charts(rep):
    groups = rep["groups"]  # one domain: its rows repeat the "all" rows
    assert len(distinct_groups(groups)) == 3
    rows = hl.variant_rows(rep)
    assert list(rows[0]) == ["statistic", "Base", "Easy", "No correct answer"]
    assert len({tuple(r.items()) for r in rows}) == len(rows)
    keys = hl.key_rows(rep, key_table(rep))
    assert {"Base", "Easy", "No correct answer"} <= set(keys[0])
    slim = {r["statistic"] for r in hl.variant_rows(rep, skip_key_fields=True)}  # what the key table lacks
    assert "accuracy" in slim and not slim & {"backtrack rate (per seed)", "never converged"}
    two = copy.deepcopy(rep)  # with two domains, each domain is a column of its own
    extra = copy.deepcopy(next(g for g in two["groups"] if g["domain"] != "all"))
    extra["domain"] = "arithmetic"
    two["groups"].append(extra)
    assert "Base · arithmetic" in hl.variant_rows(two)[0]


def test_full_report_markdown_is_demoted_below_the_page_title(rep):
    md = hl.demoted_markdown(to_markdown(rep))
    assert not re.search(r"(?m)^#{1,3}\s", md)
    assert md.startswith("#### LoopLens sweep report") and "\n##### Option mass" in md


def test_to_markdown_shows_report_strings_as_text(rep):
    r = copy.deepcopy(rep)
    for k in ("title", "model", "benchmark", "template", "checkpoint_hash"):
        r["meta"][k] = EVIL
    r["meta"]["variants"] = {**r["meta"]["variants"], EVIL: 3}
    for h in r["headline"]:
        h["finding"], h["note"] = EVIL, EVIL
    md = to_markdown(r)
    assert "evil" in md
    for bad in (r"(?<!\\)\]\(", r"http://", r"www\.evil", r"(?<!\\)<[a-z/]", r"(?<!\\)\$", r"(?<!\\):red",
                r"(?<!\\)a\|b"):
        assert not re.search(bad, md), bad
    assert md_text("cups-letters on cups-letters-test 12:30") == "cups-letters on cups-letters-test 12:30"
    # the numbers and the lookups by key are unchanged by the escaping
    h = next(x for x in rep["headline"] if x["key"] == "backtrack_rate_base")
    assert "| " + md_text(EVIL) + f" | 32% | {pct(h['value'])} [" in md
