"""Items, variants, permutations and benchmark loading."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from backend.errors import UsageError
from backend.items import (MAX_LINE_CHARS, MAX_TEXT_CHARS, BenchmarkItem, Item, balanced_permutation_count,
                           load_benchmark, parse_benchmark_lines, permutation_note, permutation_order)
from backend.sweep import SweepSpec, count_instances, enumerate_instances, load_items
from backend.sweep.spec import permutation_notes

LINE = {"id": "fact-001", "domain": "factual", "question": "What is the capital of Australia?",
        "answer": "Canberra", "distractors": ["Sydney", "Melbourne", "Perth"],
        "easy_distractors": ["Banana", "Violin", "Thursday"], "nca_distractor": "Brisbane", "source": "kept"}


def test_variants():
    it = BenchmarkItem.from_dict(LINE)
    base, easy, nca = it.variant("base"), it.variant("easy"), it.variant("nca")
    assert base.options == ("Canberra", "Sydney", "Melbourne", "Perth") and base.correct == 0
    assert easy.options == ("Canberra", "Banana", "Violin", "Thursday") and easy.correct == 0
    assert nca.options == ("Brisbane", "Sydney", "Melbourne", "Perth") and nca.correct is None
    assert it.extra == {"source": "kept"} and it.to_dict()["source"] == "kept"
    with pytest.raises(UsageError, match="unknown variant"):
        it.variant("hard")


def test_permutations_reproducible_balanced_and_mapped_back():
    base = BenchmarkItem.from_dict(LINE).variant("base")
    orders = [tuple(permutation_order(4, k)) for k in range(24)]
    assert orders[0] == (0, 1, 2, 3) and len(set(orders)) == 24  # all 24 orders, no repeats
    assert permutation_order(4, 24) == [0, 1, 2, 3]  # cycles
    assert [permutation_order(4, k, seed=5) for k in range(5)] == [permutation_order(4, k, seed=5) for k in range(5)]
    assert [permutation_order(4, k, seed=5) for k in range(1, 5)] != [permutation_order(4, k, seed=6) for k in range(1, 5)]
    for k in range(25):
        p = base.permuted(k)
        assert p.permutation == k
        assert p.options[p.correct] == "Canberra"
        assert [base.options[j] for j in p.order] == list(p.options)
    # each option sits in each position equally often over the 24 distinct orders
    counts = [[0] * 4 for _ in range(4)]
    for o in orders:
        for pos, j in enumerate(o):
            counts[j][pos] += 1
    assert all(c == 6 for row in counts for c in row)
    big = permutation_order(9, 3, seed=1)
    assert sorted(big) == list(range(9)) and big == permutation_order(9, 3, seed=1)


@pytest.mark.parametrize("opts,correct,msg", [
    (("a",), None, "2 to 10 options"),
    (tuple("abcdefghijk"), None, "2 to 10 options"),
    (("Paris", " "), None, "option 2 is empty"),
    (("Paris", "paris"), None, "same"),
    (("a", "b"), 2, "out of range"),
    (("a", "b"), -1, "out of range"),
])
def test_item_validation(opts, correct, msg):
    with pytest.raises(UsageError, match=msg):
        Item("Q?", opts, correct)
    with pytest.raises(UsageError, match="question is empty"):
        Item("  ", ("a", "b"))


def test_benchmark_loading_reports_bad_lines_and_keeps_good_ones(tmp_path):
    good2 = dict(LINE, id="fact-002", question="What is the capital of Canada?", answer="Ottawa",
                 distractors=["Toronto", "Montreal", "Vancouver"], nca_distractor="Calgary")
    lines = [
        json.dumps(LINE),
        "{not json",
        json.dumps({"id": "x"}),
        "",
        json.dumps(dict(LINE, distractors=["Sydney", "Canberra", "Perth"], id="dup-opt")),
        json.dumps(LINE),
        json.dumps(good2),
        json.dumps(dict(LINE, id="no-nca", nca_distractor=None, question="Q2?")),
    ]
    f = tmp_path / "b.jsonl"
    f.write_text("\n".join(lines) + "\n")
    b = load_benchmark(f)
    assert [it.id for it in b.items] == ["fact-001", "fact-002", "no-nca"]
    reasons = {e.line: e.reason for e in b.errors}
    assert set(reasons) == {2, 3, 5, 6}
    assert "not valid JSON" in reasons[2]
    assert "missing field" in reasons[3]
    assert "same" in reasons[5]
    assert "duplicate id" in reasons[6] and "line 1" in reasons[6]
    assert b.get("no-nca").available_variants() == ["base", "easy"]
    with pytest.raises(UsageError, match="no item with id"):
        b.get("zzz")


def test_missing_benchmark_file(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        load_benchmark(tmp_path / "none.jsonl")


# ---------------------------------------------------------------------------------------------- hostile lines (issue 14)
def _line(**over):
    d = dict(LINE)
    d.update(over)
    return d


@pytest.mark.parametrize("text,reason", [
    ('{"id": "x", "a": ' + "[" * 5000 + "]" * 5000 + "}", "nested too deeply"),
    ('{"id": "x", "a": ' + "[" * 40 + "]" * 40 + "}", "nested too deeply"),
    ('{"id": ' + "9" * 5000 + ', "question": "Q?"}', "not valid JSON"),
    ('{"id": ' + "9" * 40 + ', "question": "Q?", "answer": "a", "distractors": ["b"]}', "too large to be an id"),
    (json.dumps(_line(distractors=None)), "'distractors' must be a list of strings, got null"),
    (json.dumps(_line(question="Capital \ud800 of Australia?")), "unpaired surrogate"),
    (json.dumps(_line(domain="\udfff")), "unpaired surrogate"),
])
def test_hostile_benchmark_lines_are_reported_not_raised(text, reason):
    b = parse_benchmark_lines([text, json.dumps(dict(LINE, id="ok"))])
    assert [it.id for it in b.items] == ["ok"]
    assert len(b.errors) == 1 and b.errors[0].line == 1 and reason in b.errors[0].reason, b.errors


def test_raw_line_separators_inside_strings_do_not_split_lines(tmp_path):
    q1 = dict(LINE, id="a", question="What is\u2028 the capital\u0085 of Australia?")
    q2 = dict(LINE, id="b", question="What is the capital of Canada?", answer="Ottawa",
              distractors=["Toronto", "Montreal", "Vancouver"], nca_distractor="Calgary")
    f = tmp_path / "b.jsonl"
    f.write_text(json.dumps(q1, ensure_ascii=False) + "\n" + "{bad\r\n" + json.dumps(q2, ensure_ascii=False) + "\n",
                 encoding="utf-8")
    b = load_benchmark(f)
    assert [it.id for it in b.items] == ["a", "b"]
    assert [e.line for e in b.errors] == [2]  # line numbers as an editor shows them
    assert "\u2028" in b.get("a").question


def test_a_file_with_a_byte_order_mark_loads(tmp_path):
    f = tmp_path / "bom.jsonl"
    f.write_bytes(b"\xef\xbb\xbf" + (json.dumps(LINE) + "\n").encode())
    b = load_benchmark(f)
    assert b.errors == [] and b.get("fact-001").answer == LINE["answer"]
    assert parse_benchmark_lines(f.read_bytes().decode("utf-8-sig")).items[0].id == "fact-001"


def test_text_length_is_checked_before_anything_is_built():
    with pytest.raises(UsageError, match="characters long"):
        Item("x" * (MAX_TEXT_CHARS + 1), ("a", "b"))
    b = parse_benchmark_lines([json.dumps(_line(question="q" * (MAX_LINE_CHARS + 1)))])
    assert "characters long" in b.errors[0].reason


# ---------------------------------------------------------------------------------------------- answer orders (issue 10)
def _position_counts(orders, n):
    c = np.zeros((n, n), dtype=int)  # [original option, shown position]
    for o in orders:
        for pos, j in enumerate(o):
            c[j, pos] += 1
    return c


@pytest.mark.parametrize("k", [24, 48])
def test_balanced_orders_every_option_in_every_position_equally_often(k):
    assert balanced_permutation_count(4) == 24  # the default: all distinct orders
    orders = [tuple(permutation_order(4, i)) for i in range(balanced_permutation_count(4, k))]
    assert len(orders) == k and len(set(orders)) == 24
    assert (_position_counts(orders, 4) == k // 4).all()
    assert set(Counter(orders).values()) == {k // 24}  # every order equally often: whole cycles only


def test_more_orders_than_distinct_ones_run_whole_cycles_and_say_so():
    assert balanced_permutation_count(4, 25) == 48 and balanced_permutation_count(4, 49) == 72
    note = permutation_note(4, 25)
    assert "running 48" in note and "whole cycles of all 24" in note
    assert permutation_note(4, 48) is None and permutation_note(4, None) is None
    assert permutation_note(4, 8) is None  # a multiple of 4: balanced blocks of rotations
    assert "not a multiple of 4" in permutation_note(4, 6)
    orders = [permutation_order(4, i) for i in range(8)]
    assert (_position_counts(orders, 4) == 2).all()  # every block of n is a Latin square
    assert balanced_permutation_count(3) == 6 and balanced_permutation_count(7) % 7 == 0
    big = [permutation_order(9, i, seed=2) for i in range(18)]
    assert (_position_counts(big, 9) == 2).all()
    with pytest.raises(UsageError, match="whole number"):
        balanced_permutation_count(4, 0)


def test_sweep_defaults_three_seeds_and_all_distinct_orders(tmp_path):
    line = dict(LINE)
    (tmp_path / "b.jsonl").write_text(json.dumps(line) + "\n")
    spec = SweepSpec(model="m", benchmark=str(tmp_path / "b.jsonl"), out="o")
    assert spec.seeds == 3 and spec.permutations is None
    items = load_items(spec)
    inst = enumerate_instances(items, spec)
    assert len(inst) == count_instances(items, spec) == 3 * 24 * 3  # variants x orders x seeds
    base = [x for x in inst if x.variant == "base" and x.seed == 0]
    orders = [items[0].instance("base", x.permutation).order for x in base]
    assert (_position_counts(orders, 4) == 6).all()
    notes = permutation_notes(items, SweepSpec(model="m", benchmark="b", out="o", permutations=30))
    assert len(notes) == 1 and "running 48" in notes[0]
    assert permutation_notes(items, spec) == []
