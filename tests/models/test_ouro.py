"""Ouro specifics: the exit gate and exit distribution per step, no random state, refusals."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from backend.errors import ModelFormatError
from backend.models import load_model
from model_builders import GOLDENS, make_family_model

GOLDEN = GOLDENS["ouro"]
REF = np.load(GOLDEN / "reference_steps.npz")


@pytest.fixture(scope="module")
def golden():
    return load_model(GOLDEN)


def test_release_files_are_bf16_and_load_as_float32(golden):
    from safetensors import safe_open
    with safe_open(str(GOLDEN / "model.safetensors"), "pt") as fh:
        assert {fh.get_slice(k).get_dtype() for k in fh.keys()} == {"BF16"}
    assert golden.dtype == torch.float32


@pytest.mark.parametrize("i", [0, 1])
def test_exit_gate_per_step_matches_reference(golden, i):
    ids = torch.tensor(REF[f"ids_{i}"])
    outs = list(golden.iterate_steps(ids, 6))
    lam = np.array([o.exit_gate[0].item() for o in outs])
    want = 1 / (1 + np.exp(-REF[f"gate_logits_{i}"][:, -1]))
    assert np.abs(lam - want).max() <= 1e-5
    # every position's gate logits too
    with torch.no_grad():
        prompt = golden.encode(ids)
        s = golden.initial_state(prompt)
        for t in range(6):
            s = golden.step(s, prompt)
            assert np.abs(golden.gate_logits(s)[0].double().numpy() - REF[f"gate_logits_{i}"][t]).max() <= 1e-4


@pytest.mark.parametrize("i", [0, 1])
def test_exit_distribution_of_a_run_matches_reference(golden, i):
    """For a T-step run, p_t = lambda_t * prod_{j<t}(1 - lambda_j), and the last step takes the remainder."""
    ids = torch.tensor(REF[f"ids_{i}"])
    for T in range(1, 7):
        p = np.array([o.exit_prob[0].item() for o in golden.iterate_steps(ids, T)])
        assert np.abs(p - REF[f"exit_pdf_{i}"][T - 1, :T, -1]).max() <= 1e-5
        assert abs(p.sum() - 1) < 1e-5


def test_no_random_state_seed_and_scale_change_nothing(golden):
    ids = torch.tensor(REF["ids_0"])
    a = golden.step_logprobs(ids, 4, init_scale=1.0, seed=1)
    b = golden.step_logprobs(ids, 4, init_scale=0.0, seed=2)
    assert torch.equal(a, b)


def test_other_families_have_no_gate():
    m = make_family_model("huginn", 0)
    (o,) = list(m.iterate_steps(torch.randint(0, 500, (1, 5)), 1))
    assert o.exit_gate is None and o.exit_prob is None


@pytest.mark.parametrize("key,value", [
    ("use_sliding_window", True),
    ("rope_scaling", {"rope_type": "linear", "factor": 2.0}),
    ("hidden_act", "gelu"),
    ("layer_types", ["full_attention", "sliding_attention", "full_attention"]),
])
def test_refuses_unimplemented_config(tmp_path, key, value):
    d = tmp_path / "ouro"
    shutil.copytree(GOLDEN, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg[key] = value
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFormatError, match=key):
        load_model(d)


def test_refuses_layer_count_mismatch_before_reading_weights(tmp_path):
    d = tmp_path / "ouro"
    shutil.copytree(GOLDEN, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["num_hidden_layers"] = 100_000
    cfg.pop("layer_types")
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFormatError, match="num_hidden_layers=100000 but the weights hold 3"):
        load_model(d)
