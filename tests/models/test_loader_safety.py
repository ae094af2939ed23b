"""Issue 14's model-loader findings, one test each: roots and links, typed configs, sizes, dtypes, devices."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import backend.models.checkpoint as checkpoint
from backend.errors import LoopLensError, ModelFormatError
from backend.models import default_model_name, load_bundle, load_model, resolve_model_path
from backend.settings import ENV_MODEL_ROOTS, MODELS_DIR
from model_builders import GOLDENS, make_family_dir

ROOT = Path(__file__).parents[2]
GOLDEN = GOLDENS["huginn"]


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    for p in dst.iterdir():
        p.chmod(0o644)
    return dst


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A server set-up: $LOOPLENS_MODEL_ROOTS = tmp/root; returns (root, outside)."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    monkeypatch.setenv(ENV_MODEL_ROOTS, str(root))
    return root, outside


# ---------------------------------------------------------------------------------------- model roots
@pytest.mark.skipif(default_model_name() is None, reason="no shipped model")
def test_shipped_models_always_allowed_under_roots(served):
    name = default_model_name()
    assert resolve_model_path(name) == MODELS_DIR / name
    assert resolve_model_path(str(MODELS_DIR / name)) == MODELS_DIR / name  # by path too (sweeps, Ray workers)
    bundle = load_bundle(name)
    assert bundle.name == name


def test_other_directories_outside_roots_refused(served):
    root, outside = served
    d = _copy(GOLDEN, outside / "m")
    with pytest.raises(ModelFormatError, match=ENV_MODEL_ROOTS.replace("$", r"\$")):
        load_model(d)
    load_model(_copy(GOLDEN, root / "m"))  # inside: fine


@pytest.mark.parametrize("shard", ["../elsewhere/model-00001.safetensors", "ABSOLUTE"])
def test_index_shard_paths_outside_the_directory_refused(tmp_path, shard):
    """An index may only name files inside the model directory (`..` or an absolute path is refused, roots or
    not), and the message names only what the index says."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    save_file(load_file(str(GOLDEN / "model.safetensors")), str(elsewhere / "model-00001.safetensors"))
    d = _copy(GOLDEN, tmp_path / "m")
    names = list(load_file(str(d / "model.safetensors")))
    (d / "model.safetensors").unlink()
    fname = str(elsewhere / "model-00001.safetensors") if shard == "ABSOLUTE" else shard
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {n: fname for n in names}}))
    with pytest.raises(ModelFormatError, match="not a file name inside the model directory"):
        load_model(d)


@pytest.mark.parametrize("target", ["config.json", "model.safetensors", "tokenizer.json"])
def test_symlinked_files_outside_roots_refused_without_an_existence_oracle(served, target):
    root, outside = served
    d = make_family_dir(root / "m", "huginn")
    real = outside / target
    shutil.move(str(d / target), real)
    (d / target).symlink_to(real)
    with pytest.raises(ModelFormatError) as exists:
        load_bundle(str(d))
    real.unlink()  # the link now points at nothing: the message must not change
    with pytest.raises(ModelFormatError) as missing:
        load_bundle(str(d))
    assert "outside the model directories" in str(exists.value)
    assert str(exists.value) == str(missing.value)
    assert str(outside) not in str(exists.value)


# ---------------------------------------------------------------------------------------- typed config values
@pytest.mark.parametrize("family,key,value", [
    ("huginn", "n_embd", "64"), ("huginn", "n_embd", [64]), ("huginn", "n_heads", True), ("huginn", "n_heads", None),
    ("huginn", "n_heads", 2.5), ("huginn", "rope_base", [1]), ("huginn", "norm_eps", "1e-6"),
    ("huginn", "mean_recurrence", None), ("huginn", "qk_bias", "yes"), ("huginn", "tie_embeddings", 1),
    ("huginn", "init_values", "x"), ("huginn", "block_size", 2**70),
    ("ouro", "total_ut_steps", "4"), ("ouro", "rope_theta", None), ("ouro", "num_hidden_layers", [3]),
    ("retrofit", "rope_scaling", [32]), ("retrofit", "num_key_value_heads", "2"),
    ("parcae", "mean_backprop_depth", None), ("parcae", "rope_settings", "50000"),
])
def test_wrong_typed_config_values_name_the_key(tmp_path, family, key, value):
    d = make_family_dir(tmp_path / "m", family)
    raw = json.loads((d / "config.json").read_text())
    raw[key] = value
    (d / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ModelFormatError) as err:
        load_model(d)
    msg = str(err.value)
    assert key in msg and "\n" not in msg


def test_init_values_std_wrong_type(tmp_path):
    d = _copy(GOLDEN, tmp_path / "m")
    raw = json.loads((d / "config.json").read_text())
    raw["init_values"]["std"] = "0.1"
    (d / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ModelFormatError, match="init_values: std must be"):
        load_model(d)


# ---------------------------------------------------------------------------------------- sizes
def test_huge_layer_count_refused_before_building_the_model(tmp_path, monkeypatch):
    d = _copy(GOLDEN, tmp_path / "m")
    raw = json.loads((d / "config.json").read_text())
    small = {k: raw[k] for k in ("model_type", "n_embd", "n_heads", "intermediate_size", "vocab_size",
                                 "block_size", "n_layers_in_prelude", "n_layers_in_recurrent_block")}
    small["n_layers_in_coda"] = 100_000
    (d / "config.json").write_text(json.dumps(small))
    assert (d / "config.json").stat().st_size < 600

    def no_build(*a, **k):
        raise AssertionError("the model was built before the config was checked against the weights")

    monkeypatch.setattr(checkpoint, "build_model", no_build)
    with pytest.raises(ModelFormatError, match=r"n_layers_in_coda=100000 but the weights hold 2"):
        load_model(d)


# ---------------------------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("dtype,stored", [(torch.int8, "I8"), (torch.bool, "BOOL"), (torch.float64, "F64")])
def test_int_bool_float64_weights_refused_not_converted(tmp_path, dtype, stored):
    d = _copy(GOLDEN, tmp_path / "m")
    sd = load_file(str(d / "model.safetensors"))
    sd["transformer.coda.1.mlp.fc.weight"] = sd["transformer.coda.1.mlp.fc.weight"].to(dtype)
    save_file(sd, str(d / "model.safetensors"))
    with pytest.raises(ModelFormatError, match=rf"transformer\.coda\.1\.mlp\.fc\.weight is stored as {stored}"):
        load_model(d)


# ---------------------------------------------------------------------------------------- devices
@pytest.mark.parametrize("device", ["potato", "meta", "mps"])
def test_bad_device_is_about_the_device(tmp_path, device):
    d = make_family_dir(tmp_path / "m", "huginn")
    with pytest.raises(LoopLensError) as err:
        load_model(d, device=device)
    assert "device" in str(err.value) and "safetensors" not in str(err.value)
    r = subprocess.run([sys.executable, "-m", "backend", "trace", "--model", str(d), "--question", "Which?",
                        "--option", "a", "--option", "b", "--steps", "2", "--device", device],
                       capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode in (1, 2) and "Traceback" not in r.stderr
    assert "device" in r.stderr and "safetensors" not in r.stderr
