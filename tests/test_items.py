"""Items, variants, permutations and benchmark loading."""
from __future__ import annotations

import json

import pytest

from backend.errors import UsageError
from backend.items import (MAX_LINE_CHARS, MAX_TEXT_CHARS, BenchmarkItem, Item, load_benchmark,
                           parse_benchmark_lines, permutation_order)

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
