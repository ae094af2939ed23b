import json

import pytest

from backend import uploads
from backend.errors import UsageError
from backend.items import BenchmarkItem


def test_parse_upload_lists_bad_lines_and_keeps_good_ones():
    good = json.dumps({"id": "a", "question": "Q?", "answer": "x", "distractors": ["y", "z"]})
    data = "\n".join([good, "{not json", json.dumps({"id": "b"})]).encode()
    bench = uploads.parse_upload(data, "u.jsonl")
    assert [it.id for it in bench.items] == ["a"]
    assert [e.line for e in bench.errors] == [2, 3]


def test_parse_upload_rejects_big_binary_and_empty():
    with pytest.raises(UsageError, match="limited"):
        uploads.parse_upload(b"x" * (uploads.MAX_UPLOAD_BYTES + 1))
    with pytest.raises(UsageError, match="UTF-8"):
        uploads.parse_upload(b"\xff\xfe\x00bad")
    with pytest.raises(UsageError, match="empty"):
        uploads.parse_upload(b"\n\n")


def test_custom_item_and_options_text():
    it = uploads.custom_item("Q?", "A) one\nB) two\n\nthree", "B")
    assert it.options == ("one", "two", "three") and it.correct == 1
    assert uploads.custom_item("Q?", "one\ntwo", "none").correct is None
    with pytest.raises(UsageError, match="2 to 10"):
        uploads.custom_item("Q?", "only one", None)
    with pytest.raises(UsageError):
        uploads.custom_item("   ", "a\nb", None)
    with pytest.raises(UsageError, match="same"):
        uploads.custom_item("Q?", "a\nA", None)


def test_parse_seeds():
    assert uploads.parse_seeds("0, 1, 5") == [0, 1, 5]
    assert uploads.parse_seeds("2-4") == [2, 3, 4]
    assert uploads.parse_seeds("") == [0]
    with pytest.raises(UsageError):
        uploads.parse_seeds("x")


def test_filter_items():
    items = [uploads.EXAMPLE_ITEM,
             BenchmarkItem(id="l-1", question="Who is tallest?", answer="Ana", distractors=["Ben", "Cy"],
                           domain="logic")]
    assert [i.id for i in uploads.filter_items(items, ["logic"])] == ["l-1"]
    assert [i.id for i in uploads.filter_items(items, variant="nca")] == ["example-001"]
    assert [i.id for i in uploads.filter_items(items, search="canberra")] == ["example-001"]


def test_benchmark_files_put_the_models_own_test_set_first(tmp_path, monkeypatch):
    for name in ("a.jsonl", "general-qa.jsonl", "m-test.jsonl"):
        (tmp_path / name).write_text("")
    monkeypatch.setattr(uploads, "BENCHMARKS_DIR", tmp_path)
    assert [p.name for p in uploads.benchmark_files("data/models/m")] == ["m-test.jsonl", "general-qa.jsonl",
                                                                          "a.jsonl"]


def test_parse_upload_lists_lone_surrogates_as_bad_lines():
    good = json.dumps({"id": "a", "question": "Q?", "answer": "x", "distractors": ["y", "z"]})
    bad = '{"id": "b", "question": "Q\\udc00?", "answer": "x", "distractors": ["y", "z"]}'
    bench = uploads.parse_upload(f"{bad}\n{good}\n{{broken\n".encode(), "u.jsonl")
    assert [it.id for it in bench.items] == ["a"]
    assert [e.line for e in bench.errors] == [1, 3] and "surrogate" in bench.errors[0].reason


def test_notation_names_the_cups_task_and_nothing_else():
    from backend.uploads import notation
    assert "s34 swaps cups 3 and 4" in notation("data/benchmarks/cups-letters-test.jsonl")
    assert notation("cups-letters") == notation("cups-mini-test.jsonl")
    assert notation("general-qa.jsonl") is None and notation(None) is None
