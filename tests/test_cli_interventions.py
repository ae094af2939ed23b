"""`python -m backend trace --intervene ...`: the intervened run beside its baseline, one-line usage errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from test_cli import bench, run  # noqa: F401  (the bench fixture and the subprocess helper)

Q = ["--question", "Capital of France?", "--option", "Paris", "--option", "London", "--option", "Berlin",
     "--answer", "0"]


def test_intervened_json_holds_both_runs_and_the_parameters(tiny_dir):
    code, out, err = run("trace", "--model", tiny_dir, *Q, "--steps", "8", "--seed", "4", "--intervene", "reset",
                         "--at", "3", "--json")
    assert code == 0, err
    d = json.loads(out)
    p, b = np.array(d["probs"]), np.array(d["baseline_probs"])
    assert p.shape == b.shape == (8, 3) and d["seed"] == 4
    np.testing.assert_allclose(p[3:], b[:5], atol=1e-5)  # reset with the run's own seed replays the baseline
    assert d["intervention"] == {"schema": "looplens.intervention/1", "kind": "reset", "at": 3, "reset_seed": None}
    assert {"final_changed", "rejoin_step", "new_backtracks"} <= set(d["comparison"])


def test_noise_zero_and_splice_from_another_variant(tiny_dir, bench):
    code, out, err = run("trace", "--model", tiny_dir, *Q, "--steps", "6", "--seed", "1", "--intervene", "noise",
                         "--at", "2", "--sigma", "0", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["probs"] == d["baseline_probs"] and d["intervention"]["sigma"] == 0.0
    code, out, err = run("trace", "--model", tiny_dir, "--benchmark", bench, "--item", "geo-1", "--steps", "6",
                         "--seed", "1", "--intervene", "splice", "--at", "3", "--splice-from", "variant=easy",
                         "--splice-step", "5", "--json")
    assert code == 0, err
    d = json.loads(out)
    sp = d["intervention"]
    assert sp["splice_from"] == {"variant": "easy"} and sp["splice_step"] == 5 and sp["spliced"]["prefix"] > 0
    assert d["probs"][:2] == d["baseline_probs"][:2]


def test_intervened_text_summary(tiny_dir):
    code, out, err = run("trace", "--model", tiny_dir, *Q, "--steps", "6", "--seed", "1", "--intervene", "freeze",
                         "--at", "2")
    assert code == 0, err
    assert "intervention: freeze at step 2" in out and "baseline  intervened" in out and "final answer" in out


@pytest.mark.parametrize("args,msg", [
    (["--at", "3"], "--at needs --intervene"),
    (["--intervene", "noise", "--at", "3"], "needs --sigma"),
    (["--intervene", "freeze", "--at", "3", "--sigma", "1"], "--sigma does not apply"),
    (["--intervene", "freeze", "--at", "6"], "between 1 and 5"),
    (["--intervene", "splice", "--at", "2", "--splice-from", "variant=easy"], "needs a benchmark item"),
    (["--intervene", "splice", "--at", "2", "--splice-from", "tea=1"], "variant=V, permutation=P or seed=S"),
])
def test_bad_combinations_are_one_line_usage_errors(tiny_dir, args, msg):
    code, out, err = run("trace", "--model", tiny_dir, *Q, "--steps", "6", "--seed", "1", *args)
    assert code == 2 and msg in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_interventions_study_then_report_json_carries_the_tables(tiny_dir, bench, tmp_path, capsys):
    from backend.cli import main

    out = tmp_path / "res"
    assert main(["sweep", "--model", str(tiny_dir), "--benchmark", str(bench), "--out", str(out), "--permutations",
                 "2", "--steps", "6", "--threads", "1", "--no-similarity", "--no-progress", "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["report", str(out), "--format", "json", "--n-boot", "20"]) == 0
    rep = json.loads(capsys.readouterr().out)
    rows = rep["exit_rules"]
    last = {r["variant"]: r for r in rows if r["rule"] == "last"}
    assert set(last) == {"base", "easy", "nca"} and last["nca"]["accuracy"] is None
    assert "latent" in {r["rule"] for r in rows}  # the sweep kept the hidden states
    assert "dynamics_around_backtracks" in rep and "interventions" not in rep
    assert main(["interventions", "--model", str(tiny_dir), "--benchmark", str(bench), "--out", str(out),
                 "--steps", "6", "--permutations", "2", "--sigma", "0", "--sigma", "4"]) == 0
    assert (out / "_interventions.json").is_file()
    capsys.readouterr()
    assert main(["report", str(out), "--format", "json", "--n-boot", "20"]) == 0
    rep = json.loads(capsys.readouterr().out)
    iv = rep["interventions"]
    assert {r["sigma"] for r in iv["ponr"]} == {0.0, 4.0} and {r["at"] for r in iv["ponr"]} == {1, 2, 3, 4, 5}
    assert all(r["share"] == 0.0 for r in iv["ponr"] if r["sigma"] == 0.0)
    assert main(["interventions", "--benchmark", str(bench), "--out", str(out), "--steps", "1"]) == 2
