"""Interventions on the latent state: the four exact invariants for every model family, the splice plan, the
JSON description, tracing an intervened run beside its baseline, and the comparison summary."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from backend.errors import UsageError
from backend.interventions import (Intervention, capture_states, compare, make_hook, splice_plan,
                                   trace_intervened, trace_with_baseline)
from backend.items import BenchmarkItem, Item
from backend.trace import trace_items
from helpers_trace import one_hot_path
import model_builders

K = 10


def family_models():
    """(family name, small random model) for every family the engine implements (tests/model_builders.py)."""
    names = getattr(model_builders, "FAMILIES", ("huginn",))
    build = getattr(model_builders, "make_family_model", None)
    return [(f, build(f, seed=1) if build is not None else model_builders.make_model(seed=1)) for f in names]


FAMILIES = family_models()


@pytest.fixture(params=FAMILIES, ids=[f for f, _ in FAMILIES], scope="module")
def model(request):
    return request.param[1]


def _batch(model):
    """Two prompts of different lengths: a left-padded batch."""
    V = model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, V, (9,), generator=g)
    b = torch.randint(0, V, (6,), generator=g)
    ids = torch.zeros((2, 9), dtype=torch.long)
    mask = torch.zeros((2, 9), dtype=torch.bool)
    ids[0], mask[0] = a, True
    ids[1, 3:], mask[1, 3:] = b, True
    return ids, mask, [a.tolist(), b.tolist()]


def run(model, ids, mask, seeds, hook=None, steps=K):
    outs = list(model.iterate_steps(ids, steps, seed=seeds, attention_mask=mask, state_hook=hook))
    return torch.stack([o.logprobs for o in outs], 1).double().numpy(), [o.state.clone() for o in outs]


SEEDS = [5, 6]


@pytest.mark.parametrize("at", [1, 4, K - 1])
def test_noise_sigma_zero_equals_baseline(model, at):
    ids, mask, _ = _batch(model)
    base, _ = run(model, ids, mask, SEEDS)
    iv = Intervention("noise", at, sigma=0.0)
    got, _ = run(model, ids, mask, SEEDS, make_hook(model, iv, SEEDS))
    np.testing.assert_array_equal(got, base)
    # and a real sigma changes the run from step `at` on, never before
    noisy, _ = run(model, ids, mask, SEEDS, make_hook(model, Intervention("noise", at, sigma=1.0), SEEDS))
    np.testing.assert_array_equal(noisy[:, :at - 1], base[:, :at - 1])
    assert np.abs(noisy[:, at - 1] - base[:, at - 1]).max() > 1e-4


def test_noise_is_relative_seeded_and_batch_independent(model):
    ids, mask, rows = _batch(model)
    iv = Intervention("noise", 3, sigma=0.5, noise_seed=7)
    _, st_base = run(model, ids, mask, SEEDS)
    _, st = run(model, ids, mask, SEEDS, make_hook(model, iv, SEEDS))
    d = (st[2][0] - st_base[2][0]).float()
    rel = d.norm(dim=-1) / st_base[2][0].float().norm(dim=-1)
    assert 0.3 < float(rel.mean()) < 0.7  # expected norm of the added noise is about sigma x the state's norm
    again, _ = run(model, ids, mask, SEEDS, make_hook(model, iv, SEEDS))
    got, _ = run(model, ids, mask, SEEDS, make_hook(model, iv, SEEDS))
    np.testing.assert_array_equal(again, got)
    other, _ = run(model, ids, mask, SEEDS, make_hook(model, Intervention("noise", 3, sigma=0.5, noise_seed=8), SEEDS))
    assert np.abs(other - got).max() > 1e-6
    # the second row alone (no padding) gets the same noise as inside the padded batch
    alone, _ = run(model, torch.tensor([rows[1]]), None, [SEEDS[1]], make_hook(model, iv, [SEEDS[1]]))
    np.testing.assert_allclose(alone[0], got[1], atol=1e-4)


@pytest.mark.parametrize("at", [1, 3, 6])
def test_reset_with_own_seed_replays_the_baseline(model, at):
    ids, mask, _ = _batch(model)
    base, _ = run(model, ids, mask, SEEDS)
    got, _ = run(model, ids, mask, SEEDS, make_hook(model, Intervention("reset", at), SEEDS))
    np.testing.assert_array_equal(got[:, :at - 1], base[:, :at - 1])
    for j in range(1, K - at + 1):
        np.testing.assert_allclose(got[:, at + j - 1], base[:, j - 1], atol=1e-6, rtol=0)
    other, _ = run(model, ids, mask, SEEDS, make_hook(model, Intervention("reset", at, reset_seed=99), SEEDS))
    prompt = model.encode(ids, mask)
    if not torch.equal(model.initial_state(prompt, 1.0, [1, 1]), model.initial_state(prompt, 1.0, [2, 2])):
        assert np.abs(other[:, at] - base[:, 0]).max() > 1e-6  # a random s_0: another seed, another s_0


@pytest.mark.parametrize("at", [1, 5])
def test_freeze_gives_constant_beliefs_after_k(model, at):
    ids, mask, _ = _batch(model)
    base, st_base = run(model, ids, mask, SEEDS)
    got, st = run(model, ids, mask, SEEDS, make_hook(model, Intervention("freeze", at), SEEDS))
    np.testing.assert_array_equal(got[:, :at], base[:, :at])
    for t in range(at, K):
        np.testing.assert_array_equal(got[:, t], got[:, at - 1])
        assert torch.equal(st[t], st_base[at - 1])


@pytest.mark.parametrize("at,j", [(4, 4), (4, 2), (4, 7)])
def test_splicing_own_state_equals_baseline_or_replays_it(model, at, j):
    ids, mask, rows = _batch(model)
    base, _ = run(model, ids, mask, SEEDS)
    iv = Intervention("splice", at, splice_step=j)
    plans = [splice_plan(r, r) for r in rows]
    # the source captured in a separate pass (as for another run), and on the fly in this pass
    captured = [capture_states(model, [r], j, [s])[0] for r, s in zip(rows, SEEDS)]
    srcs = [captured] + ([[None, None]] if j <= at else [])
    for src in srcs:
        got, _ = run(model, ids, mask, SEEDS, make_hook(model, iv, SEEDS, splice_sources=src, splice_plans=plans))
        if j == at:
            np.testing.assert_allclose(got, base, atol=1e-5, rtol=0)
        else:  # s_at := s_j, so step at + m reads like the baseline's step j + m
            for m in range(0, K - max(at, j)):
                np.testing.assert_allclose(got[:, at + m - 1], base[:, j + m - 1], atol=1e-5, rtol=0)


def test_splice_plan_positions():
    assert splice_plan([1, 2, 3], [1, 2, 3]).target == (0, 1, 2)
    p = splice_plan([1, 2, 9, 9, 5, 6], [1, 2, 7, 5, 6])
    assert p.target == (0, 1, 4, 5) and p.source == (0, 1, 3, 4) and p.prefix == 2 and p.suffix == 2
    assert "shared prefix (positions 0-1)" in p.describe() and "4-5 of 6" in p.describe()
    q = splice_plan([1, 2, 3], [4, 5, 6])  # nothing shared: the last position still
    assert q.target == (2,) and q.source == (2,)
    assert splice_plan([1, 2, 3], [1, 9, 3, 4], "last").target == (2,)
    assert splice_plan([1, 2, 3], [3, 2, 1], "all").target == (0, 1, 2)
    with pytest.raises(UsageError, match="3 and 4 tokens.*'shared'.*would splice"):
        splice_plan([1, 2, 3], [1, 9, 3, 4], "all")
    # a prefix that is all of the shorter prompt does not overlap the suffix
    r = splice_plan([1, 2, 3], [1, 2, 3, 3])
    assert r.target == (0, 1, 2) and len(set(r.source)) == 3


def test_intervention_json_round_trip_and_refusals():
    for iv in [Intervention("noise", 3, sigma=0.2, noise_seed=4), Intervention("reset", 2),
               Intervention("reset", 2, reset_seed=9), Intervention("freeze", 5),
               Intervention("splice", 4, splice_from={"variant": "easy"}, splice_step=2),
               Intervention("splice", 4, splice_from={"seed": 3}, splice_positions="last")]:
        d = json.loads(iv.to_json())
        back = Intervention.from_dict(d)
        assert back.to_dict() == iv.to_dict() and back.kind == iv.kind
    assert Intervention("splice", 4).to_dict()["splice_step"] == 4
    bad = [dict(kind="noise", at=3), dict(kind="noise", at=3, sigma=-1), dict(kind="freeze", at=3, sigma=0.1),
           dict(kind="reset", at=3, splice_step=2), dict(kind="wobble", at=3), dict(kind="noise", at=0, sigma=1),
           dict(kind="splice", at=2, splice_from={"colour": 1}), dict(kind="splice", at=2, splice_step=0),
           dict(kind="splice", at=2, splice_positions="middle")]
    for kw in bad:
        with pytest.raises(UsageError):
            Intervention(**kw)
    with pytest.raises(UsageError, match="between 1 and 9"):
        Intervention("freeze", 10).check(10)
    with pytest.raises(UsageError, match="unknown intervention field"):
        Intervention.from_dict({"kind": "freeze", "at": 2, "colour": 1})


Q = Item("What is the capital of France?", ("Paris", "London", "Berlin", "Madrid"), 0, id="q1")


@pytest.mark.parametrize("iv", [Intervention("noise", 4, sigma=0.0), Intervention("splice", 4),
                                Intervention("splice", 4, splice_from={"seed": 3})],
                         ids=["noise0", "splice-self", "splice-own-seed"])
def test_trace_with_baseline_invariants(tiny_bundle, iv):
    res = trace_with_baseline(tiny_bundle, Q, iv, 12, seed=3)
    np.testing.assert_allclose(res.intervened.probs, res.baseline.probs, atol=1e-6, rtol=0)
    c = res.comparison
    assert not c["final_changed"] and c["diverged_at"] is None and c["rejoin_step"] is None
    d = res.to_dict()
    assert d["baseline_probs"] == res.baseline.probs.tolist() and d["intervention"]["kind"] == iv.kind
    assert res.baseline.seed == res.intervened.seed == 3


def test_trace_intervened_reset_and_freeze_batched(tiny_bundle):
    items = [Q.permuted(k) for k in range(3)] + [Item("2+2?", ("4", "5", "6"), 0)]
    seeds = [1, 2, 3, 4]
    base = trace_items(tiny_bundle, items, 12, seeds=seeds)
    reset = trace_intervened(tiny_bundle, items, Intervention("reset", 5), 12, seeds=seeds)
    frozen = trace_intervened(tiny_bundle, items, Intervention("freeze", 5), 12, seeds=seeds)
    for b, r, f in zip(base, reset, frozen):
        np.testing.assert_allclose(r.probs[5:], b.probs[:7], atol=1e-5)
        np.testing.assert_allclose(f.probs[5:], np.tile(f.probs[4], (7, 1)), atol=1e-12)
        np.testing.assert_allclose(f.probs[:5], b.probs[:5], atol=1e-12)


def test_splice_from_other_variant_and_permutation(tiny_bundle):
    bi = BenchmarkItem(id="b1", question="What is the capital of France?", answer="Paris",
                       distractors=["London", "Berlin", "Madrid"], easy_distractors=["blue", "seven", "dog"])
    item = bi.instance("base", 0)
    res = trace_with_baseline(tiny_bundle, item, Intervention("splice", 3, splice_from={"variant": "easy"}), 8,
                              seed=1, benchmark_item=bi)
    assert res.splice["prefix"] > 0 and res.splice["suffix"] >= 1
    assert res.splice["positions"][-1] == len(res.intervened.prompt_ids) - 1
    np.testing.assert_array_equal(res.intervened.probs[:2], res.baseline.probs[:2])
    with pytest.raises(UsageError, match="benchmark item"):
        trace_with_baseline(tiny_bundle, item, Intervention("splice", 3, splice_from={"variant": "easy"}), 8, seed=1)
    perm = trace_with_baseline(tiny_bundle, item, Intervention("splice", 3, splice_from={"permutation": 2}), 8,
                               seed=1, benchmark_item=bi)
    assert perm.intervention.splice_from == {"permutation": 2}


def test_compare_summary_on_hand_made_beliefs():
    base = one_hot_path([0] * 4 + [1] * 6)  # A 1-4, B 5-10: a backtrack A -> B
    inter = one_hot_path([0] * 4 + [2] * 3 + [1] * 3)  # C 5-7 then back to B
    c = compare(inter, base, 5, correct=1)
    assert not c["final_changed"] and c["diverged_at"] == 5 and c["rejoin_step"] == 8
    assert c["new_commitments"] == [[2, 5, 7], [1, 8, 10]] and c["lost_commitments"] == [[1, 5, 10]]
    assert c["new_backtracks"] == [[0, 2], [2, 1]] and c["lost_backtracks"] == [[0, 1]]
    flip = compare(one_hot_path([0] * 10), base, 5, correct=1)
    assert flip["final_changed"] and flip["rejoin_step"] is None and flip["lost_backtracks"] == [[0, 1]]
    assert flip["is_correct"] is False and flip["baseline_is_correct"] is True
    same = compare(base, base, 3)
    assert same["diverged_at"] is None and same["max_tv"] == 0.0


def _parse(argv):
    import argparse

    from backend.interventions import add_cli_arguments, intervention_from_args

    p = argparse.ArgumentParser()
    add_cli_arguments(p)
    return intervention_from_args(p.parse_args(argv))


def test_cli_options_build_the_intervention_or_refuse_in_one_line():
    assert _parse([]) is None
    assert _parse(["--intervene", "noise", "--at", "3", "--sigma", "0.5"]).to_dict()["sigma"] == 0.5
    iv = _parse(["--intervene", "splice", "--at", "4", "--splice-from", "variant=easy", "--splice-step", "2"])
    assert iv.splice_from == {"variant": "easy"} and iv.source_step == 2 and iv.splice_positions == "shared"
    assert _parse(["--intervene", "splice", "--at", "4", "--splice-from", "seed=7"]).splice_from == {"seed": 7}
    assert _parse(["--intervene", "reset", "--at", "2", "--reset-seed", "9"]).reset_seed == 9
    bad = {("--at", "3"): "--at needs --intervene", ("--intervene", "noise", "--at", "3"): "needs --sigma",
           ("--intervene", "freeze"): "needs --at", ("--intervene", "freeze", "--at", "3", "--sigma", "1"):
           "--sigma does not apply", ("--intervene", "splice", "--at", "3", "--splice-from", "colour=red"):
           "variant=V, permutation=P or seed=S", ("--intervene", "splice", "--at", "3", "--splice-from",
                                                 "seed=x"): "whole number",
           ("--intervene", "reset", "--at", "3", "--splice-step", "2"): "--splice-step does not apply"}
    for argv, msg in bad.items():
        with pytest.raises(UsageError, match=msg):
            _parse(list(argv))
