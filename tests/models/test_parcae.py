"""Parcae specifics: the pickle is converted on request only, every tensor checked; layout rules; refusals."""
from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from backend.errors import ModelFormatError
from backend.models import load_model
from backend.models.checkpoint import build_model, parse_config, read_config
from backend.models.convert import convert_checkpoint
from model_builders import GOLDENS, make_family_dir

GOLDEN = GOLDENS["parcae"]
ROOT = Path(__file__).parents[2]


def _copy(tmp_path) -> Path:
    d = tmp_path / "parcae"
    shutil.copytree(GOLDEN, d)
    return d


def test_loader_given_only_a_bin_says_to_convert(tmp_path):
    d = _copy(tmp_path)
    with pytest.raises(ModelFormatError, match=r"python -m backend convert"):
        load_model(d)


def test_convert_cli_then_load(tmp_path):
    d = _copy(tmp_path)
    r = subprocess.run([sys.executable, "-m", "backend", "convert", str(d)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert (d / "model.safetensors").is_file() and "wrote" in r.stdout
    assert load_model(d).config.family == "parcae"
    again = subprocess.run([sys.executable, "-m", "backend", "convert", str(d)], capture_output=True, text=True,
                           cwd=ROOT)
    assert again.returncode == 1 and "already exists" in again.stderr and "Traceback" not in again.stderr


def test_release_key_set_matches_the_layout_rules():
    """63 entries in the fixture: value tables 1, 3, 5 and ve_gate in prelude 1, core 1, coda 1 (README)."""
    sd = torch.load(GOLDEN / "pytorch_model.bin", weights_only=True)
    assert len(sd) == 63
    model = build_model(parse_config(read_config(GOLDEN)), "meta")
    assert set(model.state_dict()) | {"freqs_cis"} == set(sd)
    assert sorted(k for k in sd if k.startswith("value_embeds")) == [f"value_embeds.{j}.weight" for j in (1, 3, 5)]


def test_convert_refuses_a_partial_checkpoint(tmp_path):
    d = _copy(tmp_path)
    sd = torch.load(d / "pytorch_model.bin", weights_only=True)
    del sd["transformer.adapter.A_log"]
    torch.save(sd, d / "pytorch_model.bin")
    with pytest.raises(ModelFormatError, match=r"missing tensor\(s\) transformer\.adapter\.A_log"):
        convert_checkpoint(d)
    assert not (d / "model.safetensors").exists()


def test_convert_strips_training_prefixes(tmp_path):
    d = _copy(tmp_path)
    sd = torch.load(d / "pytorch_model.bin", weights_only=True)
    torch.save({"_orig_mod." + k: v for k, v in sd.items()}, d / "pytorch_model.bin")
    convert_checkpoint(d)
    assert load_model(d).config.family == "parcae"


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_convert_never_runs_pickled_code(tmp_path, capsys):
    d = _copy(tmp_path)
    with open(d / "pytorch_model.bin", "wb") as fh:
        pickle.dump({"x": _Evil()}, fh)
    with pytest.raises(ModelFormatError, match="tensors-only"):
        convert_checkpoint(d)
    assert "must never run" not in capsys.readouterr().out


@pytest.mark.parametrize("key,value", [
    ("injection_type", "linear"),
    ("nonlin_name", "GELU"),
    ("block_class_name", "SandwichBlock"),
    ("init_strategy", "takase"),
    ("mup_model_scaling_factor", 2),
    ("recurrent_embedding_dimension", 32),
    ("rope_settings", {"use_rope": False, "rope_condense_ratio": 1, "rope_base": 50000}),
])
def test_refuses_unimplemented_config(tmp_path, key, value):
    d = make_family_dir(tmp_path / "p", "parcae")
    cfg = json.loads((d / "config.json").read_text())
    cfg[key] = value
    (d / "config.json").write_text(json.dumps(cfg))
    needle = "use_rope" if key == "rope_settings" else key
    with pytest.raises(ModelFormatError, match=needle):
        load_model(d)


def test_pickled_builder_dir_converts_and_traces(tmp_path):
    d = make_family_dir(tmp_path / "p", "parcae", pickle=True)
    convert_checkpoint(d)
    m = load_model(d)
    assert m.step_logprobs(torch.randint(0, 500, (1, 6)), 2).shape == (1, 2, 512)
