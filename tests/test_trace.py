"""Tracing questions: one forward per batch, batch == single, seeds recorded, readout semantics."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from backend.errors import PromptTooLongError, UsageError
from backend.items import Item
from backend.models import PromptTemplate, resolve_option_tokens
from backend.metrics import entropy
from backend.trace import (MAX_STEPS, NumericalError, Trace, TraceRequest, TraceSet, convergence_map, trace_items,
                           trace_question)
from tests.helpers_trace import backtracking_probs, make_trace, one_hot_path

Q = Item("What is the capital of France?", ("Paris", "London", "Berlin", "Madrid"), 0, id="q1")


def test_trace_shapes_and_semantics(tiny_bundle):
    tr = trace_items(tiny_bundle, [Q], 12, seeds=3)[0]
    assert tr.probs.shape == (12, 4) and tr.raw_mass.shape == (12, 4)
    np.testing.assert_allclose(tr.probs.sum(1), 1.0, atol=1e-12)
    np.testing.assert_allclose(tr.probs, tr.raw_mass / tr.raw_mass.sum(1, keepdims=True))
    assert tr.hidden_last.shape == (12, tiny_bundle.model.config.n_embd) and tr.hidden_last.dtype == np.float16
    assert tr.seed == 3 and tr.steps == 12 and tr.correct == 0 and tr.item_id == "q1"
    assert tr.top_probs.shape == (12, 10) and np.all(np.diff(tr.top_probs, axis=1) <= 0)
    assert len(tr.top_tokens) == 12 and all(isinstance(s, str) for s in tr.top_tokens[0])
    # raw mass = sum of the option tokens' probabilities in the model's own per-step log-probs
    ids = torch.tensor([tr.prompt_ids])
    lp = tiny_bundle.model.step_logprobs(ids, 12, init_scale=1.0, seed=3)[0].double().exp().numpy()
    want = np.stack([[lp[t, toks].sum() for toks in tr.option_token_ids] for t in range(12)])
    np.testing.assert_allclose(tr.raw_mass, want, rtol=1e-6, atol=1e-9)
    assert tr.metrics.n_steps == 12


def test_letter_tokens_cover_every_single_token_spelling(tiny_bundle):
    ot = resolve_option_tokens(tiny_bundle.tokenizer, tiny_bundle.template, ["x", "y", "z"])
    enc = tiny_bundle.tokenizer.encode
    for i, letter in enumerate("ABC"):
        spellings = {tuple(enc(s, add_special_tokens=False)) for s in (letter, " " + letter)}
        assert {(t,) for t in ot.ids[i]} == {s for s in spellings if len(s) == 1}
    assert len(ot.ids[0]) == 2  # "A" and " A" are both single tokens in this tokenizer


def test_one_forward_per_trace(tiny_bundle, monkeypatch):
    calls = {"core": 0, "prelude": 0}
    model = tiny_bundle.model
    orig_core, orig_embed = model.step, model.encode

    def core(*a, **k):
        calls["core"] += 1
        return orig_core(*a, **k)

    def embed(*a, **k):
        calls["prelude"] += 1
        return orig_embed(*a, **k)

    monkeypatch.setattr(model, "step", core)
    monkeypatch.setattr(model, "encode", embed)
    trace_items(tiny_bundle, [Q.permuted(k) for k in range(6)], 30, seeds=0)
    assert calls == {"core": 30, "prelude": 1}  # O(K): never a re-run per step, one batch for 6 instances


def test_batch_of_permutations_and_seeds_equals_single_runs(tiny_bundle):
    items = [Q.permuted(k) for k in range(5)] + [
        Item("Which is a prime number that is larger than ten and smaller than twenty?", ("13", "15"), 0),
        Item("2+2?", ("4", "5", "6"), 0)]
    seeds = [11, 12, 13, 14, 15, 16, 17]
    batch = trace_items(tiny_bundle, items, 10, seeds=seeds)
    assert len({len(t.prompt_ids) for t in batch}) > 1  # really padded
    for it, s, b in zip(items, seeds, batch):
        single = trace_items(tiny_bundle, [it], 10, seeds=s)[0]
        np.testing.assert_allclose(b.probs, single.probs, atol=1e-5, rtol=0)
        np.testing.assert_allclose(b.raw_mass, single.raw_mass, atol=1e-5, rtol=0)
        assert b.seed == s and b.options == list(it.options) and b.permutation == it.permutation
    # batch_size splits give the same numbers
    split = trace_items(tiny_bundle, items, 10, seeds=seeds, batch_size=3)
    for a, b in zip(batch, split):
        np.testing.assert_allclose(a.probs, b.probs, atol=1e-5, rtol=0)


def test_seeds_recorded_reproducible_and_fresh_when_not_given(tiny_bundle):
    a, b = trace_items(tiny_bundle, [Q, Q], 5)
    assert a.seed is not None and b.seed is not None and a.seed != b.seed
    again = trace_items(tiny_bundle, [Q], 5, seeds=a.seed)[0]
    np.testing.assert_allclose(again.probs, a.probs, atol=1e-5, rtol=0)
    z = trace_items(tiny_bundle, [Q], 5, init_scale=0.0)[0]
    assert z.seed is None and z.init_scale == 0.0


def test_init_scale_zero_step_t_equals_t_step_run(tiny_bundle):
    tr = trace_items(tiny_bundle, [Q], 8, init_scale=0.0)[0]
    short = trace_items(tiny_bundle, [Q], 3, init_scale=0.0)[0]
    np.testing.assert_allclose(tr.probs[:3], short.probs, atol=1e-6)


def test_all_states_and_convergence_map(tiny_bundle):
    tr = trace_items(tiny_bundle, [Q], 6, seeds=1, keep_all_states=True)[0]
    S = len(tr.prompt_ids)
    assert tr.hidden_all.shape == (6, S, tiny_bundle.model.config.n_embd)
    np.testing.assert_array_equal(tr.hidden_all[:, -1], tr.hidden_last)
    cm = convergence_map(tr.hidden_all)
    assert cm.shape == (6, S) and np.allclose(cm[-1], 0) and (cm[0] > 0).all()


def test_on_step_reports_growing_partial_traces(tiny_bundle):
    seen = []
    trace_items(tiny_bundle, [Q, Q.permuted(1)], 4, seeds=0, on_step=lambda t, trs: seen.append((t, len(trs), trs[0].probs.shape[0])))
    assert seen == [(1, 2, 1), (2, 2, 2), (3, 2, 3), (4, 2, 4)]


def test_json_roundtrip_and_frame(tiny_bundle):
    tr = trace_items(tiny_bundle, [Q.permuted(3)], 7, seeds=9)[0]
    d = json.loads(tr.to_json())
    for key in ("options", "correct", "probs", "seed", "permutation", "order", "template", "model",
                "checkpoint_hash", "init_scale", "steps", "prompt", "metrics"):
        assert key in d
    back = Trace.from_dict(d)
    np.testing.assert_allclose(back.probs, tr.probs)
    assert back.metrics.summary() == tr.metrics.summary()
    df = tr.to_frame()
    assert len(df) == 7 * 4 and set(df["seed"]) == {9}
    np.testing.assert_allclose(df.groupby("step")["belief"].sum(), 1.0)


def test_option_readout_template_and_ambiguous_first_tokens(tiny_bundle):
    tpl = PromptTemplate(name="opt", prompt="Q: {question}\n{options}\nA:", readout="option")
    tr = trace_items(tiny_bundle, [Item("Capital of France?", ("Paris", "London", "Berlin"), 0)], 3, seeds=0,
                     template=tpl)[0]
    assert tr.template["readout"] == "opt" or tr.template["readout"] == "option"
    assert all(len(t) == 1 for t in tr.option_token_ids)
    with pytest.raises(UsageError, match="start with the same token"):
        trace_items(tiny_bundle, [Item("Which?", ("the cat", "the dog"))], 3, template=tpl)


def test_bad_steps_and_long_prompts(tiny_bundle):
    for bad in (0, -1, MAX_STEPS + 1, 2.5, True):
        with pytest.raises(UsageError, match="steps"):
            trace_items(tiny_bundle, [Q], bad)
    long_q = Item("word " * 2000 + "?", ("a", "b"))
    with pytest.raises(PromptTooLongError, match="reads at most"):
        trace_items(tiny_bundle, [long_q], 3)
    with pytest.raises(UsageError, match="init_scale"):
        trace_items(tiny_bundle, [Q], 3, init_scale=float("nan"))


def test_nan_keeps_finished_steps(tiny_bundle, monkeypatch):
    model = tiny_bundle.model
    orig = model.readout

    def readout(state, ctx, _n=[0]):
        _n[0] += 1
        out = orig(state, ctx)
        return out * float("nan") if _n[0] >= 4 else out

    monkeypatch.setattr(model, "readout", readout)
    with pytest.raises(NumericalError, match="step 4") as ei:
        trace_items(tiny_bundle, [Q], 10, seeds=0)
    assert ei.value.partial[0].steps == 3 and ei.value.partial[0].probs.shape == (3, 4)


def test_trace_question_validates_input(tiny_bundle):
    with pytest.raises(UsageError, match="same"):
        trace_question(tiny_bundle, "Q?", ["a", "A"])
    tr = trace_question(tiny_bundle, "Q?", ["yes", "no"], correct=1, steps=2, seeds=0)
    assert tr.correct == 1 and tr.n_options == 2


# ---------------------------------------------------------------------------------------------- requests and sets
def test_run_key_names_every_input():
    from types import SimpleNamespace

    m = SimpleNamespace(path="p", checkpoint_hash="h")
    it = Item("Q?", ("a", "b"), 0)
    k1 = TraceRequest([it], 30, [0], 1.0).key(m)
    assert k1 == TraceRequest((it,), 30, (0,), 1.0).key(m)
    assert k1 != TraceRequest([it], 30, [1], 1.0).key(m)
    assert k1 != TraceRequest([it.permuted(1)], 30, [0], 1.0).key(m)
    assert k1 != TraceRequest([it], 30, [0], 1.0, keep_all_states=True).key(m)
    assert k1 != TraceRequest([it], 30, [0], 1.0).key(SimpleNamespace(path="p", checkpoint_hash="other"))


def test_request_runs_the_same_as_trace_items(tiny_bundle):
    runs = TraceRequest([Q, Q.permuted(1)], 5, [3, 3]).run(tiny_bundle)
    assert isinstance(runs, TraceSet) and len(runs) == 2 and runs.probs.shape == (2, 5, 4)
    direct = trace_items(tiny_bundle, [Q, Q.permuted(1)], 5, seeds=3)
    np.testing.assert_allclose(runs.probs, np.stack([t.probs for t in direct]))


def test_exports_carry_every_parameter_and_seed():
    import io

    import pandas as pd

    trs = TraceSet([make_trace(backtracking_probs(), seed=s) for s in (3, 4)])
    df = pd.read_csv(io.StringIO(trs.to_csv({"n_seeds": 2})))
    assert set(df["seed"]) == {3, 4} and len(df) == 2 * 30 * 4
    for col in ("model", "checkpoint_hash", "steps", "init_scale", "template", "variant", "permutation", "belief",
                "raw_mass", "n_seeds"):
        assert col in df.columns
    d = json.loads(trs.to_json({"n_seeds": 2}))
    assert [t["seed"] for t in d["traces"]] == [3, 4] and d["parameters"]["n_seeds"] == 2
    back = Trace.from_dict(d["traces"][0])
    np.testing.assert_allclose(back.probs, trs[0].probs)


def test_belief_band_undoes_the_permutation():
    p = np.tile([0.7, 0.1, 0.1, 0.1], (30, 1))
    a = make_trace(p, correct=0, options=list("wxyz"), order=[0, 1, 2, 3])
    b = make_trace(p[:, [1, 0, 2, 3]], correct=1, options=list("xwyz"), order=[1, 0, 2, 3])
    band = TraceSet([a, b]).belief_band(n_boot=50)
    np.testing.assert_allclose(band.mean[0], [0.7, 0.1, 0.1, 0.1])
    assert list(band.options) == list("wxyz") and band.correct == 0 and band.n == 2
    mean, lo, hi = band
    assert mean.shape == lo.shape == hi.shape == (30, 4)


def test_entropy_band_over_permutations():
    stack = [one_hot_path([0] * 5, strong=0.4 + 0.1 * k) for k in range(5)]
    mean, lo, hi = TraceSet([make_trace(s) for s in stack]).entropy_band()
    assert mean.shape == (5,) and np.all(lo <= mean) and np.all(mean <= hi)
    assert mean[0] == pytest.approx(np.mean([entropy(s)[0] for s in stack]))


def test_trace_set_groups_by_variant_and_refuses_ragged_stacks():
    p = backtracking_probs()
    runs = TraceSet([make_trace(p, variant="base"), make_trace(p, variant="nca"), make_trace(p, variant="base")])
    groups = runs.by_variant()
    assert list(groups) == ["base", "nca"] and [len(g) for g in groups.values()] == [2, 1]
    assert isinstance(runs[:2], TraceSet) and runs.probs.shape == (3, 30, 4)
    with pytest.raises(UsageError, match="differ"):
        TraceSet([make_trace(p), make_trace(p[:10])]).probs


def test_csv_export_neutralises_spreadsheet_formulas():
    import io

    import pandas as pd

    tr = make_trace(backtracking_probs(), options=['=HYPERLINK("http://evil.example","x")', "+1", "-2", "@SUM(A1)"],
                    item_id="=cmd|' /C calc'!A0")
    tr.question = "=1+1"
    df = pd.read_csv(io.StringIO(TraceSet([tr]).to_csv({"note": "-oops"})))
    assert set(df["option"]) == {"'=HYPERLINK(\"http://evil.example\",\"x\")", "'+1", "'-2", "'@SUM(A1)"}
    assert set(df["question"]) == {"'=1+1"} and set(df["item_id"]) == {"'=cmd|' /C calc'!A0"}
    assert set(df["note"]) == {"'-oops"}
    assert df["belief"].dtype == float and (df["kl_to_prev"].dropna() >= 0).all()


@pytest.fixture(scope="module")
def ouro_bundle(tmp_path_factory):
    from backend.models import load_bundle
    from model_builders import make_family_dir

    return load_bundle(str(make_family_dir(tmp_path_factory.mktemp("ouro") / "m", "ouro")))


def test_ouro_exit_probs_recorded_and_exported(ouro_bundle):
    """issue 11: the model's own distribution over exit steps is part of the trace and of every export."""
    trs = trace_items(ouro_bundle, [Q, Q.permuted(2)], 6)
    ids = torch.tensor([ouro_bundle.tokenizer.encode(trs[0].prompt, add_special_tokens=False)])
    want = np.array([o.exit_prob[0].item() for o in ouro_bundle.model.iterate_steps(ids, 6)])
    tr = trs[0]
    assert tr.exit_probs.shape == (6,) and abs(tr.exit_probs.sum() - 1) < 1e-5
    np.testing.assert_allclose(tr.exit_probs, want, atol=1e-6)
    assert not np.allclose(trs[1].exit_probs, tr.exit_probs)  # per row, not one row copied
    assert tr.truncated(3).exit_probs.tolist() == tr.exit_probs[:3].tolist()
    d = json.loads(tr.to_json())
    assert d["exit_probs"] == tr.exit_probs.tolist()
    np.testing.assert_allclose(Trace.from_dict(d).exit_probs, tr.exit_probs)
    df = TraceSet(trs).to_frame()
    first = df[df["run"] == 0].groupby("step")["exit_prob"].agg(["min", "max"])
    np.testing.assert_allclose(first["min"], tr.exit_probs)
    np.testing.assert_allclose(first["max"], tr.exit_probs)
    assert "exit_prob" in TraceSet(trs).to_csv().splitlines()[0].split(",")


def test_no_exit_probs_without_an_exit_gate(tiny_bundle):
    tr = trace_items(tiny_bundle, [Q], 3, seeds=0)[0]
    assert tr.exit_probs is None and json.loads(tr.to_json())["exit_probs"] is None
    assert Trace.from_dict(json.loads(tr.to_json())).exit_probs is None
    assert "exit_prob" not in tr.to_frame().columns


def test_words_the_model_does_not_know_are_refused_before_any_model_work(monkeypatch):
    """The CLI and API refuse them too (not only the app): on the shipped cups-letters an English question would
    read as its unknown token, a meaningless trace."""
    from backend.fit import UnknownWordsError
    from backend.models import load_bundle

    bundle = load_bundle("cups-letters")
    calls = []
    monkeypatch.setattr(type(bundle.model), "forward", lambda *a, **k: calls.append(1))
    item = Item("What is the capital of Australia?", ("c1", "Canberra", "c2"), correct=1)
    with pytest.raises(UnknownWordsError, match="cups-letters") as e:
        trace_items(bundle, [item], 4)
    assert "capital" in str(e.value) and "Canberra" in str(e.value) and calls == []
