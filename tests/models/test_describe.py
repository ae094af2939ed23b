"""describe_checkpoint: the sidebar's model summary from config.json and the safetensors headers, no weights."""
from __future__ import annotations

import pytest
import torch

from backend.models import checkpoint, describe, describe_checkpoint, load_bundle
from model_builders import FAMILIES, make_family_dir


@pytest.mark.parametrize("family", FAMILIES)
def test_describe_checkpoint_equals_describe_of_the_loaded_model(family, tmp_path):
    d = make_family_dir(tmp_path / family, family)
    assert describe_checkpoint(str(d)) == describe(load_bundle(str(d)))


@pytest.mark.parametrize("kw", [dict(max_shard_bytes=20_000), dict(dtype=torch.bfloat16)], ids=["sharded", "bf16"])
def test_describe_checkpoint_of_sharded_and_bf16_checkpoints(kw, tmp_path):
    d = make_family_dir(tmp_path / "m", "retrofit", **kw)  # untied head: counted
    info = describe_checkpoint(str(d))
    assert info == describe(load_bundle(str(d)))
    assert info["dtype"] == "float32" and info["family"] == "retrofit"


def test_describe_checkpoint_reads_no_weights(tmp_path, monkeypatch):
    d = make_family_dir(tmp_path / "ouro", "ouro")

    def refuse(*a, **k):
        raise AssertionError("weights were read")

    monkeypatch.setattr(checkpoint, "read_tensors", refuse)
    info = describe_checkpoint(str(d))
    assert info["family"] == "ouro" and info["trained_depth"] == 4 and info["parameters"] > 0
    assert "trained depth 4 steps" in info["summary"]


def test_describe_checkpoint_names_a_missing_model(tmp_path):
    from backend.errors import ModelFormatError

    with pytest.raises(ModelFormatError, match="not found"):
        describe_checkpoint(str(tmp_path / "nope"))
