"""Retrofitted recurrence specifics: tokenizer-file special tokens (never config ids), Llama-3 RoPE, refusals."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from backend.errors import ModelFormatError
from backend.items import Item
from backend.models import load_bundle, load_model, load_tokenizer, special_tokens_from_files
from backend.models.layers import inv_frequencies
from backend.trace import trace_items
from model_builders import GOLDENS, make_family_dir

GOLDEN = GOLDENS["retrofit"]


def test_release_config_carries_huginn_ids_and_no_tie_word_embeddings(tmp_path):
    d = make_family_dir(tmp_path / "r", "retrofit")
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["bos_token_id"] == 65504 and "tie_word_embeddings" not in cfg  # as the authors' conversion writes


def test_special_tokens_come_from_tokenizer_files_not_config_ids(tmp_path):
    d = make_family_dir(tmp_path / "r", "retrofit")
    b = load_bundle(str(d))
    assert b.tokenizer.bos_token == "<|begin_of_text|>" and b.tokenizer.eos_token == "<|end_of_text|>"
    assert b.template.prompt.startswith("<|begin_of_text|>Question:")
    (tr,) = trace_items(b, [Item("Which city?", ("Paris", "Rome"))], 2, seeds=0)
    assert tr.prompt_ids[0] == b.tokenizer.convert_tokens_to_ids("<|begin_of_text|>")
    assert 65504 not in tr.prompt_ids and tr.prompt_ids.count(tr.prompt_ids[0]) == 1


def test_bos_from_tokenizer_json_post_processor_alone(tmp_path):
    d = make_family_dir(tmp_path / "r", "retrofit")
    (d / "tokenizer_config.json").unlink()
    assert special_tokens_from_files(d) == {"bos": "<|begin_of_text|>"}
    assert load_tokenizer(d).bos_token == "<|begin_of_text|>"


def test_llama3_rope_scaling_rule():
    scaling = {"factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 8192}
    plain = inv_frequencies(64, 500000.0)
    scaled = inv_frequencies(64, 500000.0, scaling)
    wavelen = 2 * np.pi / plain.numpy()
    hi = wavelen < 8192 / 4
    lo = wavelen > 8192 / 1
    assert torch.equal(scaled[hi], plain[hi])
    torch.testing.assert_close(scaled[lo], plain[lo] / 32)
    mid = ~(hi | lo)
    assert mid.any() and bool(((scaled[mid] < plain[mid]) & (scaled[mid] > plain[mid] / 32)).all())


def test_rope_scaling_matters_on_the_golden(tmp_path):
    d = tmp_path / "r"
    shutil.copytree(GOLDEN, d)
    cfg = json.loads((d / "config.json").read_text())
    del cfg["rope_scaling"]
    (d / "config.json").write_text(json.dumps(cfg))
    ref = np.load(GOLDEN / "reference_steps.npz")
    ids = torch.tensor(ref["ids_0"])
    lp = load_model(d).step_logprobs(ids, 4, init_scale=0.0)[0].double().numpy()
    assert np.abs(lp - ref["logprobs_0"][:4, -1]).max() > 1e-3  # the fixture would catch a skipped scaling


@pytest.mark.parametrize("key,value", [
    ("rope_scaling", {"rope_type": "yarn", "factor": 4.0}),
    ("injection_type", "add"),
    ("mlp_class_name", "BaseMLP"),
    ("num_key_value_heads", 3),
    ("qk_bias", True),
])
def test_refuses_unimplemented_config(tmp_path, key, value):
    d = tmp_path / "r"
    shutil.copytree(GOLDEN, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg[key] = value
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFormatError, match=key):
        load_model(d)


def test_olmo2_blocks_recognised_by_q_norm(tmp_path):
    """OLMo-2 retrofits: q/k RMSNorm over the whole projection and post-norm blocks, told apart by tensor names."""
    from backend.models.checkpoint import build_model, init_weights, save_checkpoint
    from model_builders import family_config
    cfg = family_config("retrofit", block_type="olmo2", num_key_value_heads=4, rope_scaling=None)
    m = init_weights(build_model(cfg), seed=0).eval()
    save_checkpoint(m, tmp_path)
    loaded = load_model(tmp_path)
    assert loaded.config.block_type == "olmo2"
    assert hasattr(loaded.transformer.core_block[0].attn, "q_norm")
    ids = torch.randint(0, 500, (1, 7))
    torch.testing.assert_close(loaded.step_logprobs(ids, 3, init_scale=0.0), m.step_logprobs(ids, 3, init_scale=0.0))
