"""`python -m backend trace`: JSON output, readable summary, and one-line errors without tracebacks."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
ITEM = {"id": "geo-1", "domain": "factual", "question": "What is the capital of Australia?", "answer": "Canberra",
        "distractors": ["Sydney", "Melbourne", "Perth"], "easy_distractors": ["Banana", "Violin", "Thursday"],
        "nca_distractor": "Brisbane"}


def run(*args):
    r = subprocess.run([sys.executable, "-m", "backend", *map(str, args)], capture_output=True, text=True, cwd=ROOT)
    return r.returncode, r.stdout, r.stderr


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    f = tmp_path_factory.mktemp("bench") / "b.jsonl"
    f.write_text(json.dumps(ITEM) + "\n")
    return f


def test_trace_question_json(tiny_dir):
    code, out, err = run("trace", "--model", tiny_dir, "--question", "Capital of France?", "--option", "Paris",
                         "--option", "London", "--option", "Berlin", "--answer", "0", "--steps", "6", "--seed", "4",
                         "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["options"] == ["Paris", "London", "Berlin"] and d["correct"] == 0 and d["seed"] == 4
    assert len(d["probs"]) == 6 and all(abs(sum(r) - 1) < 1e-9 for r in d["probs"])
    for k in ("final_answer", "exploration_end", "backtracked"):
        assert k in d
    # issue 10: the raw masses stay, and each step carries its low-mass flag under the threshold used
    assert d["mass_threshold"] == 0.01 and len(d["low_mass"]) == 6
    assert d["low_mass"] == [sum(r) < 0.01 for r in d["raw_mass"]]
    code, out, err = run("trace", "--model", tiny_dir, "--question", "Capital of France?", "--option", "Paris",
                         "--option", "London", "--steps", "3", "--seed", "4", "--json", "--mass-threshold", "1")
    d = json.loads(out)
    assert code == 0 and d["mass_threshold"] == 1.0 and d["low_mass"] == [sum(r) < 1 for r in d["raw_mass"]]
    code, _, err = run("trace", "--model", tiny_dir, "--question", "Q?", "--option", "a", "--option", "b",
                       "--mass-threshold", "2")
    assert code == 2 and "mass threshold must be a number between 0 and 1" in err and "Traceback" not in err


def test_trace_benchmark_item_variant_permutation(tiny_dir, bench):
    code, out, err = run("trace", "--model", tiny_dir, "--benchmark", bench, "--item", "geo-1", "--variant", "nca",
                         "--permutation", "5", "--steps", "4", "--seed", "1", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["correct"] is None and sorted(d["options"]) == sorted(["Brisbane", "Sydney", "Melbourne", "Perth"])
    assert d["permutation"] == 5 and d["variant"] == "nca" and d["item_id"] == "geo-1"


def test_trace_readable_summary(tiny_dir):
    code, out, err = run("trace", "--model", tiny_dir, "--question", "Q?", "--option", "yes", "--option", "no",
                         "--steps", "3", "--init-scale", "0")
    assert code == 0, err
    assert "final answer:" in out and "exploration:" in out and "backtracked:" in out
    assert "steps below the mass threshold 0.01" in out


@pytest.mark.parametrize("args,needle", [
    (["--question", "", "--option", "a", "--option", "b"], "question is empty"),
    (["--question", "Q?", "--option", "a", "--option", " "], "option 2 is empty"),
    (["--question", "Q?", "--option", "a", "--option", "A"], "same"),
    (["--question", "Q?", "--option", "a"], "2 to 10 options"),
    (["--question", "Q?"] + sum([["--option", str(i)] for i in range(11)], []), "2 to 10 options"),
    (["--question", "Q?", "--option", "a", "--option", "b", "--answer", "2"], "out of range"),
    (["--question", "Q?", "--option", "a", "--option", "b", "--steps", "0"], "steps must be between 1 and 256"),
    (["--question", "Q?", "--option", "a", "--option", "b", "--steps", "257"], "steps must be between"),
    (["--question", "Q?", "--option", "a", "--option", "b", "--steps", "x"], "invalid int value"),
    ([], "give --question"),
])
def test_usage_errors_exit_2_one_line(tiny_dir, args, needle):
    code, out, err = run("trace", "--model", tiny_dir, *args)
    assert code == 2
    assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bad_benchmark_and_item(tiny_dir, bench, tmp_path):
    code, _, err = run("trace", "--model", tiny_dir, "--benchmark", tmp_path / "no.jsonl", "--item", "x")
    assert code == 2 and "not found" in err and "Traceback" not in err
    code, _, err = run("trace", "--model", tiny_dir, "--benchmark", bench, "--item", "nope")
    assert code == 2 and "no item with id 'nope'" in err


def test_model_problems_exit_nonzero_with_message(tmp_path, tiny_dir):
    q = ["--question", "Q?", "--option", "a", "--option", "b", "--steps", "2"]
    code, _, err = run("trace", "--model", tmp_path / "missing", *q)
    assert code == 1 and "not found" in err and "Traceback" not in err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"model_type": "llama"}))
    code, _, err = run("trace", "--model", bad, *q)
    assert code == 1 and "unsupported model format" in err and "Traceback" not in err
    noweights = tmp_path / "noweights"
    noweights.mkdir()
    (noweights / "config.json").write_text((tiny_dir / "config.json").read_text())
    code, _, err = run("trace", "--model", noweights, *q)
    assert code == 1 and "no weights" in err and "Traceback" not in err
    code, _, err = run("trace", "--model", tiny_dir, "--question", "word " * 3000, "--option", "a", "--option", "b")
    assert code == 1 and "tokens" in err and "Traceback" not in err


def test_sweep_says_when_the_answer_orders_do_not_balance(tiny_dir, bench, tmp_path):
    code, out, err = run("sweep", "--model", tiny_dir, "--benchmark", bench, "--out", tmp_path / "o", "--variants",
                         "base", "--permutations", "6", "--seeds", "1", "--steps", "2", "--no-similarity",
                         "--no-progress", "--device", "cpu", "--threads", "1")
    assert code == 0, err
    assert "note: 6 answer orders for 4 options is not a multiple of 4" in err
    assert "6/6 instances finished" in out


@pytest.mark.parametrize("template,msg", [({"prompt": "{question}\n{options}", "option_format": "{option:>20000000}"},
                                           "format spec"),
                                          ({"prompt": "{question}\n{options}", "option_format": "{nope}"}, "{nope}"),
                                          ({"prompt": ["{question}{options}"]}, "prompt must be text")])
def test_trace_refuses_a_bad_template_with_one_line(tiny_dir, tmp_path, template, msg):
    f = tmp_path / "t.json"
    f.write_text(json.dumps(template))
    code, out, err = run("trace", "--model", tiny_dir, "--question", "Q?", "--option", "a", "--option", "b",
                         "--steps", "2", "--seed", "0", "--template", f)
    assert code == 2 and msg in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_trace_escapes_control_characters_in_the_summary(tiny_dir):
    code, out, err = run("trace", "--model", tiny_dir, "--question", "Q\x1b]0;pwned\x07\x1b[31m red?",
                         "--option", "a\x1b[2J", "--option", "b", "--steps", "2", "--seed", "0")
    assert code == 0, err
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b[31m" in out and "\\x1b[2J" in out


def test_trace_json_carries_ouro_exit_probs(tmp_path, tiny_dir):
    from model_builders import make_family_dir

    d = make_family_dir(tmp_path / "ouro", "ouro")
    code, out, err = run("trace", "--model", d, "--question", "Capital of France?", "--option", "Paris",
                         "--option", "London", "--steps", "5", "--json")
    assert code == 0, err
    p = json.loads(out)["exit_probs"]
    assert len(p) == 5 and abs(sum(p) - 1) < 1e-5 and all(0 <= x <= 1 for x in p)
    code, out, err = run("trace", "--model", tiny_dir, "--question", "Q?", "--option", "a", "--option", "b",
                         "--steps", "2", "--seed", "1", "--json")
    assert code == 0 and json.loads(out)["exit_probs"] is None
