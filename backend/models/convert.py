"""``python -m backend convert DIR``: turn a pickled PyTorch checkpoint (Parcae's ``pytorch_model.bin``) into
``model.safetensors`` beside it, once, on the user's explicit request.

The pickle is opened with ``torch.load(weights_only=True)`` (tensors and plain containers only: no code runs),
memory-mapped where the file allows.  Every tensor the config implies must be present with its shape (a silent
partial load would give a random model); the authors' prefixes ``module.``, ``_orig_mod.`` and ``model.`` are
stripped where that is what makes a name match.  The result is then loaded once to prove it works.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict

import torch
from safetensors.torch import save_file

from ..errors import ModelFormatError
from .paths import model_file
from .checkpoint import PICKLE_FILES, SINGLE_FILE, build_model, load_checkpoint, parse_config, read_config

PREFIXES = ("module.", "_orig_mod.", "model.")
FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _unpickle_tensors(f: Path) -> Dict[str, torch.Tensor]:
    try:
        try:
            obj = torch.load(str(f), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # legacy (non-zip) files cannot be memory-mapped
            obj = torch.load(str(f), map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refuses anything but tensors and plain containers
        raise ModelFormatError(f"{f.name} could not be read as a tensors-only PyTorch file: "
                               f"{str(exc).splitlines()[0][:200]}") from None
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and set(obj) == {key} and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise ModelFormatError(f"{f.name} does not hold a state dict (a mapping of names to tensors)")
    return obj


def _match_names(sd: Dict[str, torch.Tensor], expected) -> Dict[str, torch.Tensor]:
    out = {}
    for name, t in sd.items():
        key = name
        while key not in expected and key.startswith(PREFIXES):
            key = next(key[len(p):] for p in PREFIXES if key.startswith(p))
        out[key if key in expected else name] = t
    return out


def convert_checkpoint(path, overwrite: bool = False) -> Path:
    """Write ``model.safetensors`` from the directory's pickled weights; returns the new file's path."""
    path = Path(path)
    raw = read_config(path)
    cfg = parse_config(raw, str(path / "config.json"))
    target = model_file(path, SINGLE_FILE)
    if target.exists() and not overwrite:
        raise ModelFormatError(f"{target} already exists: nothing to convert (pass --overwrite to redo it)")
    source = next((model_file(path, n) for n in PICKLE_FILES if model_file(path, n).is_file()), None)
    if source is None:
        raise ModelFormatError(f"no {' / '.join(PICKLE_FILES)} in {path}: nothing to convert")
    model = build_model(cfg, "meta")
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    tied = getattr(cfg, "tie_embeddings", False)
    optional = set(model.OPTIONAL_TENSORS) | ({"lm_head.weight"} if tied else set())
    sd = _match_names(_unpickle_tensors(source), set(expected) | optional)
    required = set(expected) - ({"lm_head.weight"} if tied else set())
    missing = sorted(required - set(sd))
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise ModelFormatError(f"{source.name}: missing tensor(s) {', '.join(missing[:5])}{more}: not converted "
                               "(a partial checkpoint would load as a random model)")
    unexpected = sorted(set(sd) - set(expected) - optional)
    if unexpected:
        raise ModelFormatError(f"{source.name}: unexpected tensor(s) {', '.join(unexpected[:5])}: the checkpoint "
                               "does not match its config.json")
    out: Dict[str, torch.Tensor] = {}
    seen = set()
    for name, t in sd.items():
        if name in expected and tuple(t.shape) != expected[name]:
            raise ModelFormatError(f"{source.name}: tensor {name} has shape {list(t.shape)}, expected "
                                   f"{list(expected[name])} from config.json")
        if t.dtype not in FLOAT_DTYPES:
            raise ModelFormatError(f"{source.name}: tensor {name} is {str(t.dtype).replace('torch.', '')}; only "
                                   "float32, bfloat16 and float16 weights are converted")
        ptr = (t.untyped_storage().data_ptr(), t.storage_offset())
        out[name] = t.contiguous().clone() if ptr in seen or not t.is_contiguous() else t
        seen.add(ptr)
    tmp = target.with_name(target.name + ".tmp")
    save_file(out, str(tmp), metadata={"format": "pt", "converted_from": source.name})
    tmp.replace(target)
    try:
        load_checkpoint(path)
    except ModelFormatError:
        target.unlink(missing_ok=True)
        raise
    return target
