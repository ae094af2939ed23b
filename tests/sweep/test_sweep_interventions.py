"""Sweeps with an intervention (rows keyed by instance, the intervention in the directory's identity) and the
exit gate stored in sweep rows (Ouro), through to the report's exit-rule table."""
from __future__ import annotations

import json

import numpy as np
import pytest

from backend.cli import main as cli_main
from backend.errors import LoopLensError
from backend.interventions import Intervention, trace_intervened
from backend.intervention_tables import report_sections
from backend.models import load_bundle
from backend.sweep import SweepSpec, load_items, load_results, run_sweep
from backend.sweep.store import INTERVENTION_FIELDS
from backend.trace import trace_items
from model_builders import make_family_dir
from sweep.test_sweep import write_benchmark


def spec_for(model, bench, out, **kw) -> SweepSpec:
    base = dict(model=str(model), benchmark=str(bench), out=str(out), permutations=2, seeds=1, steps=6,
                chunk_size=4, threads=1, embedding_model=None, device="cpu", limit=3)
    base.update(kw)
    return SweepSpec(**base)


def quiet(spec, **kw):
    return run_sweep(spec, progress=False, log=lambda m: None, **kw)


def beliefs(df):
    return np.stack([np.stack(x) for x in df["belief"]])


def sort(df):
    return df.sort_values(["item_id", "variant", "permutation", "seed"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return write_benchmark(tmp_path_factory.mktemp("b") / "bench.jsonl")


@pytest.fixture(scope="module")
def plain(tiny_dir, bench, tmp_path_factory):
    out = tmp_path_factory.mktemp("plain") / "out"
    quiet(spec_for(tiny_dir, bench, out))
    return sort(load_results(out))


def test_plain_sweep_has_null_intervention_columns(plain):
    assert plain["intervention"].isna().all() and plain["final_changed"].isna().all()
    assert plain["exit_prob"].isna().all()  # Huginn has no exit gate


def test_noise_sigma_zero_sweep_equals_its_baseline(tiny_dir, bench, tmp_path, plain):
    out = tmp_path / "n0"
    iv = Intervention("noise", 3, sigma=0.0)
    quiet(spec_for(tiny_dir, bench, out, intervention=iv.to_dict()))
    df = sort(load_results(out))
    assert len(df) == len(plain)
    np.testing.assert_allclose(beliefs(df), beliefs(plain), atol=1e-6)
    assert not df["final_changed"].any() and df["diverged_at"].isna().all()
    assert (df["iv_kind"] == "noise").all() and (df["iv_at"] == 3).all() and (df["iv_sigma"] == 0).all()
    assert [list(a) for a in df["baseline_argmax"]] == [list(a) for a in plain["argmax"]]
    assert json.loads(df["intervention"][0])["kind"] == "noise"


def test_intervention_rows_are_the_intervened_runs(tiny_dir, tiny_bundle, bench, tmp_path, plain):
    """freeze at k: every row's belief is the direct trace_intervened run's, constant after k, and its
    comparison columns describe it against the plain sweep's row (the baseline)."""
    out = tmp_path / "fr"
    iv = Intervention("freeze", 2)
    spec = spec_for(tiny_dir, bench, out, intervention=iv.to_dict())
    quiet(spec)
    df = sort(load_results(out))
    b = beliefs(df)
    np.testing.assert_allclose(b[:, 2:], np.repeat(b[:, 1:2], 4, axis=1), atol=1e-6)
    items = {it.id: it for it in load_items(spec)}
    shown = [items[r.item_id].instance(r.variant, int(r.permutation)) for r in df.itertuples()]
    direct = trace_intervened(tiny_bundle, shown, iv, 6, seeds=[int(s) for s in df["init_seed"]])
    np.testing.assert_allclose(b, np.stack([t.probs for t in direct]), atol=1e-5)
    base_final = plain["final_answer"].astype(int).to_numpy()
    assert (df["baseline_final_answer"].astype(int).to_numpy() == base_final).all()
    changed = df["final_answer"].astype(int).to_numpy() != base_final
    assert (df["final_changed"].astype(bool).to_numpy() == changed).all()
    rej = df.dropna(subset=["rejoin_step"])
    assert (rej["steps_to_rejoin"] == rej["rejoin_step"] - 2).all()


def test_rerun_resumes_and_another_intervention_is_refused(tiny_dir, bench, tmp_path):
    out = tmp_path / "r"
    iv = Intervention("noise", 2, sigma=4.0)
    s1 = quiet(spec_for(tiny_dir, bench, out, intervention=iv.to_dict(), limit=2))
    s2 = quiet(spec_for(tiny_dir, bench, out, intervention=iv.to_dict()))  # more items: continues
    assert s2.already == s1.done and s2.done == s2.total
    assert len(load_results(out)) == s2.total
    for other in (Intervention("noise", 3, sigma=4.0).to_dict(), Intervention("freeze", 2).to_dict(), None):
        with pytest.raises(LoopLensError, match="different parameters.*intervention"):
            quiet(spec_for(tiny_dir, bench, out, intervention=other))


def test_splice_from_another_variant_names_its_positions(tiny_dir, bench, tmp_path):
    out = tmp_path / "sp"
    iv = Intervention("splice", 3, splice_from={"variant": "easy"}, splice_step=2)
    quiet(spec_for(tiny_dir, bench, out, intervention=iv.to_dict(), variants=("base",)))
    df = load_results(out)
    assert df["iv_positions"].map(lambda s: "last" in s or "suffix" in s).all()
    assert df["intervention"].map(lambda s: json.loads(s)["splice_from"] == {"variant": "easy"}).all()


def test_intervention_effect_in_the_report_sections(tiny_dir, bench, tmp_path):
    out = tmp_path / "eff"
    quiet(spec_for(tiny_dir, bench, out, intervention=Intervention("reset", 2).to_dict()))
    df = load_results(out)
    sec = report_sections(df, n_boot=50)
    eff = sec["intervention_sweep"]
    assert eff["intervention"]["kind"] == "reset" and eff["interventions_found"] == 1
    base = eff["per_variant"]["base"]
    assert base["instances"] == int((df["variant"] == "base").sum())
    row = next(r for r in eff["final_changed"] if r["variant"] == "base" and r["group"] == "all")
    assert row["share"] == pytest.approx(float(df[df["variant"] == "base"]["final_changed"].mean()))
    assert "intervention_sweep" not in report_sections(df.assign(intervention=None), n_boot=10)


def test_cli_sweep_intervene_then_report(tiny_dir, bench, tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["sweep", "--model", str(tiny_dir), "--benchmark", str(bench), "--out", str(out), "--limit", "2",
            "--permutations", "1", "--seeds", "1", "--steps", "5", "--no-similarity", "--no-progress",
            "--threads", "1", "--variants", "base"]
    assert cli_main(args + ["--intervene", "noise", "--at", "2", "--sigma", "2"]) == 0
    df = load_results(out)
    assert (df["iv_sigma"] == 2.0).all() and set(INTERVENTION_FIELDS) <= set(df.columns)
    assert cli_main(args + ["--intervene", "noise", "--at", "9", "--sigma", "2"]) == 2  # past the last step
    assert cli_main(args + ["--sigma", "2"]) == 2  # --sigma without --intervene
    assert cli_main(args + ["--intervene", "noise", "--at", "3", "--sigma", "2"]) == 1  # another intervention
    capsys.readouterr()
    assert cli_main(["report", str(out), "--format", "json", "--n-boot", "20"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["intervention_sweep"]["intervention"]["at"] == 2
    assert cli_main(["report", str(out), "--n-boot", "20"]) == 0
    md = capsys.readouterr().out
    assert "Intervention sweep" in md


# ---------------------------------------------------------------------------------------------- the exit gate
@pytest.fixture(scope="module")
def ouro_dir(tmp_path_factory):
    return make_family_dir(tmp_path_factory.mktemp("ouro") / "m", "ouro")


def test_ouro_sweep_rows_store_the_exit_gate_and_the_report_uses_it(ouro_dir, bench, tmp_path):
    out = tmp_path / "ouro"
    spec = spec_for(ouro_dir, bench, out, variants=("base", "easy"))
    quiet(spec)
    df = sort(load_results(out))
    ex = np.stack([np.asarray(x) for x in df["exit_prob"]])
    assert ex.shape == (len(df), 6) and (ex >= 0).all()
    bundle = load_bundle(str(ouro_dir))
    items = {it.id: it for it in load_items(spec)}
    shown = [items[r.item_id].instance(r.variant, int(r.permutation)) for r in df.itertuples()]
    direct = trace_items(bundle, shown, 6, seeds=[int(s) for s in df["init_seed"]])
    np.testing.assert_allclose(ex, np.stack([t.exit_probs for t in direct]), atol=1e-6)
    sec = report_sections(df, n_boot=30)
    gate = [r for r in sec["exit_rules"] if r["rule"] == "exit_gate"]
    assert {r["variant"] for r in gate} == {"base", "easy"} and {r["setting"] for r in gate} == {"q = 0.5", "q = 0.9"}
    assert all(r["n"] == int((df["variant"] == r["variant"]).sum()) for r in gate)
    assert sec["exit_rules_basis"]["exit_gate"] is True
    # the stop step is where the cumulative exit probability first reaches q
    r0 = ex[df["variant"].to_numpy() == "base"]
    want = np.mean([int(np.argmax(np.cumsum(e) >= 0.5 - 1e-12)) + 1 if (np.cumsum(e) >= 0.5 - 1e-12).any() else 6
                    for e in r0])
    got = next(r for r in gate if r["variant"] == "base" and r["setting"] == "q = 0.5")["mean_steps"]
    assert got == pytest.approx(want, rel=1e-6)


def test_a_noise_sweep_is_one_point_of_the_studys_curve(tiny_dir, tiny_bundle, bench, tmp_path):
    """The two paths agree: a sweep with --intervene noise --at k --sigma s (one seed) gives, instance by instance,
    the point-of-no-return records the intervention study computes at that k and sigma (same instance seeds,
    same noise seeds)."""
    from backend.exit_report import noise_ponr_records
    from backend.sweep import instance_seed

    out = tmp_path / "pt"
    spec = spec_for(tiny_dir, bench, out, intervention=Intervention("noise", 3, sigma=4.0).to_dict(), permutations=1)
    quiet(spec)
    df = load_results(out)
    items = {it.id: it for it in load_items(spec)}
    shown = [items[r.item_id].instance(r.variant, int(r.permutation)) for r in df.itertuples()]
    seeds = [instance_seed(0, r.item_id, r.variant, int(r.permutation), 0) for r in df.itertuples()]
    assert seeds == [int(s) for s in df["init_seed"]]
    recs = noise_ponr_records(tiny_bundle, shown, seeds, 6, sigma=4.0, at_steps=[3])
    assert [r["final_changed"] for r in recs] == [bool(x) for x in df["final_changed"]]
    assert [r["final_answer"] for r in recs] == [int(x) for x in df["final_answer"]]
    assert [r["baseline_backtracked"] for r in recs] == [bool(x) for x in df["baseline_backtracked"]]
