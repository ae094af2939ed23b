import json

import pytest

from backend import uploads
from backend.errors import UsageError
from backend.items import BenchmarkItem
from backend.settings import BENCHMARKS_DIR, MODELS_DIR


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


def test_benchmark_files_offer_the_models_own_splits_first_and_unreadable_files_last():
    names = [p.name for p in uploads.benchmark_files("cups-letters")]
    assert names[:3] == ["cups-letters-test.jsonl", "cups-letters-probe.jsonl", "cups-letters-hard.jsonl"]
    assert names[-1] == "general-qa.jsonl"
    labels = [uploads.benchmark_label("cups-letters", p) for p in uploads.benchmark_files("cups-letters")]
    assert labels[-1] == "general-qa.jsonl (words this model does not know)"
    assert all("does not know" not in lab for lab in labels[:-1])
    unknown = uploads.benchmark_unknown_words("cups-letters", BENCHMARKS_DIR / "general-qa.jsonl")
    assert "capital" in unknown
    assert uploads.benchmark_unknown_words("cups-letters", BENCHMARKS_DIR / "cups-letters-hard.jsonl") == ()
    # a model whose tokenizer cannot be read: nothing is marked, the order is by name
    assert [p.name for p in uploads.benchmark_files("no-such-model")][0] == "general-qa.jsonl"


def test_benchmark_files_of_a_byte_level_model_mark_nothing(tiny_dir):
    files = uploads.benchmark_files(str(tiny_dir))
    assert not any(uploads.benchmark_unknown_words(str(tiny_dir), f) for f in files)
    assert files[0].name == "general-qa.jsonl"


def test_example_item_is_a_question_the_model_reads(tiny_dir):
    from backend import fit
    from backend.models import load_tokenizer

    for name in ("cups-letters", "cups-mini"):
        ex = uploads.example_item(name)
        own = uploads.load_benchmark(BENCHMARKS_DIR / f"{name}-test.jsonl")
        assert ex.id in {it.id for it in own.items} and ex.extra["swaps"] >= 3  # an item of its own test split
        tok = load_tokenizer(MODELS_DIR / name)
        assert not any(fit.unknown_words(tok, t) for t in [ex.question, ex.answer, *ex.distractors])
    assert uploads.example_item(str(tiny_dir)) == uploads.EXAMPLE_ITEM  # an English model: the English example
    assert uploads.example_item(None) == uploads.EXAMPLE_ITEM


def test_a_model_with_the_cups_vocabulary_but_no_split_gets_a_cups_question(tmp_path):
    import shutil

    d = tmp_path / "my-model"
    shutil.copytree(MODELS_DIR / "cups-letters", d)
    ex = uploads.example_item(str(d))
    assert ex.question == "ball c2 : s34 s23 s13 ?" and ex.answer == "c1"  # c2 -> c2 -> c3 -> c1


def test_every_item_of_the_default_models_own_files_runs_on_it():
    """Every variant of every item in the files offered first for the default model traces without error."""
    from backend.models import load_bundle
    from backend.models.runtime import default_model
    from backend.trace import trace_items

    name = default_model()
    bundle = load_bundle(name)
    for path in uploads.benchmark_files(bundle):
        if uploads.benchmark_unknown_words(bundle, path):
            continue
        bench = uploads.load_benchmark(path)
        items = [it.instance(v, 1) for it in bench.items for v in it.available_variants()]
        traces = trace_items(bundle, items, 2, seeds=0)
        assert len(traces) == len(items)
