"""Every family through the one interface: golden per-step outputs, per-step readout, padding, files, hooks."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from backend.errors import ModelFormatError
from backend.models import describe, load_bundle, load_model
from backend.models.checkpoint import detect_family, parse_config, read_config, read_header, save_checkpoint, \
    weight_files
from backend.models.convert import convert_checkpoint
from backend.models.huginn import HuginnModel
from backend.models.ouro import OuroModel
from backend.models.parcae import ParcaeModel
from backend.models.retrofit import RetrofitModel
from model_builders import FAMILIES, GOLDENS, make_family_dir, make_family_model

ROOT = Path(__file__).parents[2]
GOLDEN_STEPS = {"retrofit": 10, "ouro": 6, "parcae": 10}
MODEL_CLASS = {"huginn": HuginnModel, "retrofit": RetrofitModel, "ouro": OuroModel, "parcae": ParcaeModel}


def golden_dir(family, tmp_path_factory) -> Path:
    """The family's golden fixture, loadable (Parcae's pickle converted once into a copy)."""
    if family != "parcae":
        return GOLDENS[family]
    d = tmp_path_factory.mktemp("parcae-golden") / "ckpt"
    shutil.copytree(GOLDENS["parcae"], d)
    convert_checkpoint(d)
    return d


@pytest.fixture(scope="module", params=sorted(GOLDEN_STEPS))
def golden(request, tmp_path_factory):
    family = request.param
    d = golden_dir(family, tmp_path_factory)
    return family, load_model(d), np.load(GOLDENS[family] / "reference_steps.npz")


def test_golden_every_step_every_position_fp32(golden):
    """Per-step log-probs equal the reference implementation's (max |diff| <= 1e-4 in float32), both read out
    per step at the last position and as full-sequence forwards at every position."""
    family, model, ref = golden
    T = GOLDEN_STEPS[family]
    assert model.dtype == torch.float32
    for i in (0, 1):
        ids = torch.tensor(ref[f"ids_{i}"])
        want = ref[f"logprobs_{i}"]  # [T, S, V]
        per_step = model.step_logprobs(ids, T, init_scale=0.0)[0].double().numpy()
        assert per_step.shape == (T, want.shape[2])
        assert np.abs(per_step - want[:, -1]).max() <= 1e-4
        with torch.no_grad():
            full = np.stack([torch.log_softmax(model(ids, t, init_scale=0.0)[0], -1).double().numpy()
                             for t in range(1, T + 1)])
        assert np.abs(full - want).max() <= 1e-4


def test_golden_recognised_as_its_family(tmp_path_factory):
    for family in FAMILIES:
        d = golden_dir(family, tmp_path_factory)
        m = load_model(d)
        assert type(m) is MODEL_CLASS[family] and m.config.family == family


def test_huginn_and_retrofit_told_apart_by_tensor_names():
    # Both say model_type huginn_raven / RavenForCausalLM / SandwichBlock.
    h, r = read_config(GOLDENS["huginn"]), read_config(GOLDENS["retrofit"])
    assert h["model_type"] == r["model_type"] and h["block_class_name"] == r["block_class_name"]
    names_h = read_header(weight_files(GOLDENS["huginn"])).keys()
    names_r = read_header(weight_files(GOLDENS["retrofit"])).keys()
    assert detect_family(h, tensor_names=names_h) == "huginn"
    assert detect_family(r, tensor_names=names_r) == "retrofit"
    # the tensor names win over a config that looks like the other family
    r_like_h = {k: v for k, v in r.items() if k not in ("rope_theta",)}
    r_like_h["init_values"] = dict(r["init_values"], embed_scale=8.0)
    assert detect_family(r_like_h) == "huginn"
    assert detect_family(r_like_h, tensor_names=names_r) == "retrofit"
    assert detect_family(r) == "retrofit" and detect_family(h) == "huginn"  # config alone, when no weights


def test_default_depth_per_family(tmp_path_factory):
    want = {"huginn": ("mean_recurrence", 8), "retrofit": ("mean_recurrence", 4), "ouro": ("total_ut_steps", 4),
            "parcae": ("mean_recurrence", 8)}
    for family, (key, n) in want.items():
        cfg = parse_config(read_config(GOLDENS[family]))
        assert cfg.default_steps == n == read_config(GOLDENS[family])[key]


@pytest.mark.parametrize("family", FAMILIES)
def test_per_step_readout_equals_separate_runs(family):
    m = make_family_model(family, 3)
    ids = torch.randint(0, 500, (2, 15), generator=torch.Generator().manual_seed(1))
    lp = m.step_logprobs(ids, 6, init_scale=1.0, seed=5)
    for t in (1, 3, 6):
        (last,) = list(m.iterate_steps(ids, t, init_scale=1.0, seed=5, readout_every_step=False))
        torch.testing.assert_close(lp[:, t - 1], last.logprobs, atol=1e-5, rtol=0)
        with torch.no_grad():
            full = torch.log_softmax(m(ids, t, init_scale=1.0, seed=5)[:, -1], -1)
        torch.testing.assert_close(lp[:, t - 1], full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_padded_batch_equals_single_runs(family):
    m = make_family_model(family, 1)
    g = torch.Generator().manual_seed(0)
    seqs = [torch.randint(3, 500, (n,), generator=g) for n in (5, 17, 11, 2)]
    seeds = [7, 8, 9, 10]
    S = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), S, dtype=torch.long)
    mask = torch.zeros(len(seqs), S, dtype=torch.bool)
    for i, s in enumerate(seqs):
        ids[i, S - len(s):] = s
        mask[i, S - len(s):] = True
    batch = m.step_logprobs(ids, 5, init_scale=1.0, seed=seeds, attention_mask=mask)
    for i, s in enumerate(seqs):
        single = m.step_logprobs(s[None], 5, init_scale=1.0, seed=seeds[i])
        torch.testing.assert_close(batch[i:i + 1], single, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("sharded", [False, True])
def test_save_load_single_and_sharded(tmp_path, family, dtype, sharded):
    """Written in the release's layout (one file or shards + index; fp32 or bf16), loaded as float32."""
    m = make_family_model(family, 4)
    save_checkpoint(m, tmp_path, dtype=dtype, max_shard_bytes=150_000 if sharded else None)
    shards = list(tmp_path.glob("model-*-of-*.safetensors"))
    assert (len(shards) > 1) == sharded and (tmp_path / "model.safetensors").exists() != sharded
    stored = set()
    for f in tmp_path.glob("*.safetensors"):
        with safe_open(str(f), "pt") as fh:
            stored |= {fh.get_slice(k).get_dtype() for k in fh.keys() if k != "freqs_cis"}
    assert stored == {"F32" if dtype == torch.float32 else "BF16"}
    loaded = load_model(tmp_path)
    assert type(loaded) is type(m) and loaded.dtype == torch.float32
    ids = torch.randint(0, 500, (1, 10))
    ref = make_family_model(family, 4)
    if dtype != torch.float32:
        ref.load_state_dict({k: v.to(dtype).float() for k, v in ref.state_dict().items()})
    torch.testing.assert_close(loaded.step_logprobs(ids, 3, init_scale=0.0), ref.step_logprobs(ids, 3, init_scale=0.0),
                               atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_state_hook_replaces_the_state(family):
    m = make_family_model(family, 2)
    ids = torch.randint(0, 500, (1, 9))
    base = m.step_logprobs(ids, 4, init_scale=0.0)
    seen = []

    def keep(t, state, prompt):
        seen.append(t)
        return None

    kept = torch.stack([o.logprobs for o in m.iterate_steps(ids, 4, init_scale=0.0, state_hook=keep)], 1)
    assert seen == [1, 2, 3, 4] and torch.equal(kept, base)

    def zero_at_2(t, state, prompt):
        return torch.zeros_like(state) if t == 2 else None

    hooked = torch.stack([o.logprobs for o in m.iterate_steps(ids, 4, init_scale=0.0, state_hook=zero_at_2)], 1)
    torch.testing.assert_close(hooked[:, 0], base[:, 0])
    assert (hooked[:, 1] - base[:, 1]).abs().max() > 1e-3  # the replaced s_2 is what step 2 reads out


@pytest.mark.parametrize("family", FAMILIES)
def test_trace_cli_on_each_family(tmp_path, family):
    d = make_family_dir(tmp_path / family, family)
    r = subprocess.run([sys.executable, "-m", "backend", "trace", "--model", str(d), "--question",
                        "What is the capital of France?", "--option", "Paris", "--option", "London", "--option",
                        "Rome", "--steps", "5", "--seed", "3", "--json"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    probs = np.array(out["probs"])
    assert probs.shape == (5, 3) and np.allclose(probs.sum(1), 1)


@pytest.mark.parametrize("family", FAMILIES)
def test_describe_names_family_size_and_trained_depth(tmp_path, family):
    d = make_family_dir(tmp_path / family, family)
    b = load_bundle(str(d))
    info = describe(b)
    assert info["family"] == family == b.family
    assert info["parameters"] == b.model.num_parameters() > 0
    assert info["trained_depth"] == b.default_steps == b.model.config.default_steps
    assert info["exit_gate"] == (family == "ouro")
    assert str(info["trained_depth"]) in info["summary"]
