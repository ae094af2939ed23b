"""The benchmark validator (backend/validate.py) and the shipped benchmark data/benchmarks/general-qa.jsonl."""
import io
import json
from collections import Counter
from pathlib import Path

import pytest

from backend.errors import UsageError
from backend.items import DOMAINS, VARIANTS, load_benchmark
from backend.validate import Problem, main, validate_file

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "data" / "benchmarks" / "general-qa.jsonl"


def good(i=1, **over):
    d = {"id": f"t-{i:03d}", "domain": "factual", "question": f"What is test question number {i}?",
         "answer": f"Right {i}", "distractors": [f"Wrong {i}a", f"Wrong {i}b", f"Wrong {i}c"],
         "easy_distractors": ["Banana", "Violin", "Thursday"], "nca_distractor": f"Wrong {i}d"}
    d.update(over)
    return d


def write(tmp_path, rows, name="bench.jsonl"):
    p = tmp_path / name
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def run_main(path, **kw):
    out, err = io.StringIO(), io.StringIO()
    rc = main(str(path), out=out, err=err, **kw)
    return rc, out.getvalue(), err.getvalue()


# ------------------------------------------------------------------------------------------ the shipped file
def test_shipped_file_is_clean():
    assert SHIPPED.is_file()
    assert validate_file(SHIPPED) == []
    assert validate_file(SHIPPED, strict=True) == []
    rc, out, err = run_main(SHIPPED, strict=True)
    assert rc == 0 and err == ""
    assert out.strip() == ("OK: 260 items (factual 52, definition 52, logic 52, arithmetic 52, misleading 52)")


def test_shipped_domain_balance():
    bench = load_benchmark(SHIPPED)
    assert bench.errors == []
    assert len(bench) == 260
    assert Counter(it.domain for it in bench.items) == {d: 52 for d in DOMAINS}
    # ids follow the domain's prefix and are numbered 001..052
    prefix = {"factual": "fact", "definition": "def", "logic": "logic", "arithmetic": "arith", "misleading": "mis"}
    for d in DOMAINS:
        ids = sorted(it.id for it in bench.items if it.domain == d)
        assert ids == [f"{prefix[d]}-{k:03d}" for k in range(1, 53)]


def test_shipped_every_variant_constructible():
    bench = load_benchmark(SHIPPED)
    for it in bench.items:
        assert it.available_variants() == list(VARIANTS), it.id
        for v in VARIANTS:
            inst = it.variant(v)
            assert inst.n_options == 4, (it.id, v)
            assert inst.correct == (None if v == "nca" else 0)
            assert it.answer not in inst.options[1:]
        assert it.answer not in it.variant("nca").options
        assert it.question.strip().endswith("?"), it.id


def test_shipped_arithmetic_answers_are_numbers():
    bench = load_benchmark(SHIPPED)
    arith = [it for it in bench.items if it.domain == "arithmetic"]
    assert len(arith) == 52
    for it in arith:
        assert it.answer.lstrip("-").isdigit(), it.id
        for o in [*it.distractors, it.nca_distractor]:
            assert o.lstrip("-").isdigit(), (it.id, o)


# ------------------------------------------------------------------------------------------ bad files
def messages(problems):
    return [str(p) for p in problems]


def test_clean_small_file(tmp_path):
    p = write(tmp_path, [good(1), good(2)])
    assert validate_file(p) == []
    rc, out, _ = run_main(p)
    assert rc == 0 and out.startswith("OK: 2 items (factual 2)")


def test_bad_json_line_number(tmp_path):
    p = write(tmp_path, [good(1), good(2), '{"id": "t-003", "question": "oops"', good(4)])
    probs = validate_file(p)
    assert [pr.line for pr in probs] == [3]
    assert "not valid JSON" in probs[0].message
    assert str(probs[0]).startswith("line 3")
    rc, out, _ = run_main(p)
    assert rc == 1 and "line 3" in out


def test_blank_lines_keep_line_numbers(tmp_path):
    p = write(tmp_path, [good(1), "", good(3, answer="")])
    probs = validate_file(p)
    assert probs and all(pr.line == 3 for pr in probs)


@pytest.mark.parametrize("field", ["easy_distractors", "nca_distractor"])
def test_missing_design_field(tmp_path, field):
    row = good(1)
    del row[field]
    p = write(tmp_path, [row])
    probs = validate_file(p)
    assert len(probs) == 1 and probs[0].line == 1 and probs[0].item_id == "t-001"
    assert field in probs[0].message
    assert run_main(p)[0] == 1


def test_missing_required_field(tmp_path):
    row = good(1)
    del row["answer"]
    probs = validate_file(write(tmp_path, [row]))
    assert len(probs) == 1 and "answer" in probs[0].message


def test_wrong_number_of_distractors(tmp_path):
    p = write(tmp_path, [good(1, distractors=["a", "b"]), good(2, easy_distractors=["x", "y", "z", "w"])])
    msgs = messages(validate_file(p))
    assert any(m.startswith("line 1 (t-001)") and "'distractors' must have 3" in m for m in msgs)
    assert any(m.startswith("line 2 (t-002)") and "'easy_distractors' must have 3" in m for m in msgs)


def test_duplicate_id(tmp_path):
    p = write(tmp_path, [good(1), good(2), good(3, id="t-001")])
    probs = validate_file(p)
    assert len(probs) == 1 and probs[0].line == 3
    assert "duplicate id" in probs[0].message and "line 1" in probs[0].message
    assert run_main(p)[0] == 1


def test_duplicate_question_ignores_case_and_whitespace(tmp_path):
    p = write(tmp_path, [good(1, question="What is the capital of France?"),
                         good(2, question="  what is the  CAPITAL of france? ")])
    probs = validate_file(p)
    assert len(probs) == 1 and probs[0].line == 2 and "duplicate question" in probs[0].message
    assert run_main(p)[0] == 1


@pytest.mark.parametrize("over, roles", [
    ({"easy_distractors": ["Banana", "right 1", "Thursday"]}, ("answer", "easy distractor 2")),  # base vs easy
    ({"nca_distractor": "RIGHT 1"}, ("answer", "nca_distractor")),                              # base vs nca
    ({"nca_distractor": "Violin"}, ("easy distractor 2", "nca_distractor")),                    # easy vs nca
    ({"easy_distractors": ["Banana", "Wrong 1b", "Thursday"]}, ("distractor 2", "easy distractor 2")),
    ({"distractors": ["Wrong 1a", "wrong 1a", "Wrong 1c"]}, ("distractor 1", "distractor 2")),  # within a variant
])
def test_option_collisions(tmp_path, over, roles):
    p = write(tmp_path, [good(1, **over)])
    probs = validate_file(p)
    assert len(probs) == 1, messages(probs)
    assert probs[0].line == 1 and f"{roles[0]} and {roles[1]} are the same" in probs[0].message
    assert run_main(p)[0] == 1


def test_too_long_option_and_question(tmp_path):
    p = write(tmp_path, [good(1, distractors=["x" * 61, "b", "c"]), good(2, question="Why " + "q" * 300 + "?"),
                         good(3, easy_distractors=["y" * 60, "Violin", "Thursday"])])
    probs = validate_file(p)
    assert [pr.line for pr in probs] == [1, 2]
    assert "distractor 1 is 61 characters" in probs[0].message
    assert "question is 305 characters" in probs[1].message
    assert run_main(p)[0] == 1


def test_empty_strings(tmp_path):
    p = write(tmp_path, [good(1, nca_distractor="  "), good(2, easy_distractors=["Banana", "", "Thursday"]),
                         good(3, question=" ")])
    probs = validate_file(p)
    assert sorted({pr.line for pr in probs}) == [1, 2, 3]
    msgs = messages(probs)
    assert any("line 1" in m and "'nca_distractor' is empty" in m for m in msgs)
    assert any("line 2" in m and "easy distractor 2 is empty" in m for m in msgs)
    assert any("line 3" in m and "question is empty" in m for m in msgs)


def test_domain_rules(tmp_path):
    p = write(tmp_path, [good(1, domain="poetry"), good(2)])
    assert validate_file(p) == []  # any non-empty domain is accepted by default
    probs = validate_file(p, strict=True)
    assert len(probs) == 1 and probs[0].line == 1 and "unknown domain 'poetry'" in probs[0].message
    assert run_main(p, strict=True)[0] == 1
    row = good(3)
    del row["domain"]
    probs = validate_file(write(tmp_path, [row], "nodomain.jsonl"))
    assert len(probs) == 1 and "domain" in probs[0].message


def test_non_object_and_empty_file(tmp_path):
    probs = validate_file(write(tmp_path, ['["a", "b"]']))
    assert len(probs) == 1 and probs[0].line == 1 and "JSON object" in probs[0].message
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    probs = validate_file(empty)
    assert len(probs) == 1 and probs[0].line is None and "no items" in probs[0].message
    assert run_main(empty)[0] == 1


def test_problem_str():
    assert str(Problem(12, "fact-003", "boom")) == "line 12 (fact-003): boom"
    assert str(Problem(4, None, "boom")) == "line 4: boom"
    assert str(Problem(None, None, "boom")) == "file: boom"


def test_every_problem_printed_with_line_number(tmp_path):
    p = write(tmp_path, [good(1, nca_distractor="Right 1"), "not json", good(3, id="t-001")])
    rc, out, err = run_main(p)
    assert rc == 1
    lines = out.strip().splitlines()
    assert lines[0].startswith("line 1 (t-001):")
    assert lines[1].startswith("line 2:")
    assert lines[2].startswith("line 3 (t-001):")
    assert lines[-1].startswith("FAILED: 3 problem(s)")


# ------------------------------------------------------------------------------------------ unreadable files
def test_main_missing_file_returns_2(tmp_path):
    rc, out, err = run_main(tmp_path / "nope.jsonl")
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "not found" in err and "Traceback" not in err
    with pytest.raises(UsageError):
        validate_file(tmp_path / "nope.jsonl")


def test_main_unreadable_returns_2(tmp_path):
    rc, _, err = run_main(tmp_path)  # a directory
    assert rc == 2 and len(err.strip().splitlines()) == 1
    binary = tmp_path / "b.jsonl"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    rc, _, err = run_main(binary)
    assert rc == 2 and "UTF-8" in err and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------------ hostile lines (issue 14)
def test_validator_refuses_a_lone_surrogate(tmp_path):
    p = write(tmp_path, [good(1, question="What is \ud800 number 1?"), good(2)])
    probs = validate_file(p)
    assert [pr.line for pr in probs] == [1] and "unpaired surrogate" in probs[0].message
    rc, out, _ = run_main(p)
    assert rc == 1 and "line 1" in out


@pytest.mark.parametrize("line,reason", [
    ('{"id": "t-009", "x": ' + "[" * 5000 + "]" * 5000 + "}", "nested too deeply"),
    ('{"id": ' + "7" * 5000 + "}", "not valid JSON"),
    (json.dumps(good(9, distractors=None)), "'distractors' must be a list of strings"),
])
def test_validator_reports_hostile_lines(tmp_path, line, reason):
    p = write(tmp_path, [good(1), line])
    probs = validate_file(p)
    assert [pr.line for pr in probs] == [2] and reason in probs[0].message
    assert run_main(p)[0] == 1


def test_validator_accepts_bom_and_keeps_line_numbers_with_raw_separators(tmp_path):
    p = tmp_path / "b.jsonl"
    rows = [json.dumps(good(1, question="What is\u2028 test question 1?"), ensure_ascii=False), "{oops",
            json.dumps(good(3))]
    p.write_bytes(b"\xef\xbb\xbf" + ("\n".join(rows) + "\n").encode("utf-8"))
    probs = validate_file(p)
    assert [pr.line for pr in probs] == [2]
