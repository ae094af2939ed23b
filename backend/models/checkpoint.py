"""Load and save checkpoints in Huginn-0125's format: ``config.json`` + safetensors (one file or shards).

Only JSON and safetensors are read: no pickle, no code from the checkpoint (an ``auto_map`` entry is ignored).
Tensors are read lazily, one at a time, and cast to the requested dtype, so a 15.6 GB fp32 checkpoint loads in
bf16 without holding an fp32 copy.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Dict, Iterable, Optional

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..errors import ModelFormatError
from .huginn import HuginnConfig, HuginnModel

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"

# What this implementation computes; any other value is refused rather than silently computed differently.
IMPLEMENTED = {
    "block_class_name": "SandwichBlock",
    "norm_class_name": "RMSNorm_llama",
    "mlp_class_name": "GatedMLP",
    "injection_type": "linear",
    "nonlin_name": "SiLU",
}
REQUIRED_INT_KEYS = (
    "n_embd",
    "n_heads",
    "intermediate_size",
    "block_size",
    "n_layers_in_prelude",
    "n_layers_in_recurrent_block",
    "n_layers_in_coda",
)
OPTIONAL_KEYS = {"freqs_cis"}


def read_config(path: Path) -> dict:
    cfg_path = Path(path) / "config.json"
    if not Path(path).is_dir():
        raise ModelFormatError(f"model directory not found: {path}")
    if not cfg_path.is_file():
        raise ModelFormatError(f"no config.json in {path}: a Huginn-format checkpoint directory needs one")
    try:
        return json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFormatError(f"{cfg_path} is not valid JSON: {exc}") from None


def parse_config(raw: dict, where: str = "config.json") -> HuginnConfig:
    """Validate a Huginn config dict and return a HuginnConfig; refuse anything this code does not implement."""
    archs = raw.get("architectures") or []
    if raw.get("model_type") != "huginn_raven" and "RavenForCausalLM" not in archs:
        raise ModelFormatError(
            f"{where}: unsupported model format (model_type={raw.get('model_type')!r}, architectures={archs!r}); "
            "LoopLens loads Huginn-format checkpoints (model_type 'huginn_raven' / RavenForCausalLM)"
        )
    for key, want in IMPLEMENTED.items():
        got = raw.get(key, want)
        if got != want:
            raise ModelFormatError(
                f"{where}: {key}={got!r} is not implemented (only {want!r}); refusing to compute something else"
            )
    if raw.get("bias", False):
        raise ModelFormatError(f"{where}: bias=true is not implemented (Huginn's Linear layers have no bias)")
    missing = [k for k in REQUIRED_INT_KEYS if k not in raw]
    if "vocab_size" not in raw and "padded_vocab_size" not in raw:
        missing.append("vocab_size")
    if missing:
        raise ModelFormatError(f"{where}: missing required key(s) {', '.join(missing)}")
    for k in REQUIRED_INT_KEYS:
        if not isinstance(raw[k], int) or raw[k] < (1 if not k.startswith("n_layers") else 0):
            raise ModelFormatError(f"{where}: {k} must be a positive integer, got {raw[k]!r}")
    if raw["n_embd"] % raw["n_heads"]:
        raise ModelFormatError(f"{where}: n_embd={raw['n_embd']} is not divisible by n_heads={raw['n_heads']}")
    hd = raw["n_embd"] // raw["n_heads"]
    if hd % 2:
        raise ModelFormatError(f"{where}: head_dim={hd} must be even for rotary embeddings")
    kv = raw.get("num_key_value_heads", raw["n_heads"])
    if kv != raw["n_heads"]:
        raise ModelFormatError(f"{where}: grouped KV heads (num_key_value_heads={kv}) are not implemented")
    if raw["n_layers_in_recurrent_block"] < 1:
        raise ModelFormatError(f"{where}: n_layers_in_recurrent_block must be >= 1")
    vocab = raw.get("padded_vocab_size") or raw.get("vocab_size")
    init = raw.get("init_values") or {}
    init_std = init.get("std", math.sqrt(2 / (5 * raw["n_embd"])))
    return HuginnConfig(
        n_embd=raw["n_embd"],
        n_heads=raw["n_heads"],
        intermediate_size=raw["intermediate_size"],
        vocab_size=int(vocab),
        block_size=raw["block_size"],
        n_layers_in_prelude=raw["n_layers_in_prelude"],
        n_layers_in_recurrent_block=raw["n_layers_in_recurrent_block"],
        n_layers_in_coda=raw["n_layers_in_coda"],
        rope_base=float(raw.get("rope_base", 50000)),
        norm_eps=float(raw.get("norm_eps", 1e-6)),
        qk_bias=bool(raw.get("qk_bias", True)),
        tie_embeddings=bool(raw.get("tie_embeddings", raw.get("tie_word_embeddings", True))),
        mean_recurrence=int(raw.get("mean_recurrence", 32)),
        init_std=float(init_std),
    )


def weight_files(path: Path) -> Dict[str, Path]:
    """Map every tensor name to the safetensors file holding it (single file or index + shards)."""
    path = Path(path)
    index = path / INDEX_FILE
    single = path / SINGLE_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ModelFormatError(f"{index} is not a valid safetensors index (needs a 'weight_map'): {exc}") from None
        files = {}
        for name, fname in weight_map.items():
            f = path / fname
            if not f.is_file():
                raise ModelFormatError(f"{index} names shard {fname!r} (for {name}) but {f} does not exist")
            files[name] = f
        return files
    if single.is_file():
        try:
            with safe_open(str(single), framework="pt") as fh:
                return {k: single for k in fh.keys()}
        except Exception as exc:  # safetensors raises its own error types
            raise ModelFormatError(f"{single} is not a readable safetensors file: {exc}") from None
    others = sorted(p.name for p in path.glob("*.bin")) + sorted(p.name for p in path.glob("*.pt"))
    hint = f" (found {', '.join(others)}: pickle formats are never loaded, convert to safetensors)" if others else ""
    raise ModelFormatError(f"no weights in {path}: expected {SINGLE_FILE} or {INDEX_FILE}{hint}")


def checkpoint_hash(path: Path, full_limit: int = 256 * 2**20) -> str:
    """A short content id for a checkpoint: sha256 over config.json and the weight files.

    Files up to ``full_limit`` bytes are hashed whole; larger ones by their safetensors header (names, dtypes,
    shapes, offsets), size and the first and last MiB, so a 15 GB checkpoint is identified in milliseconds.
    """
    path = Path(path)
    h = hashlib.sha256((path / "config.json").read_bytes())
    for f in sorted(set(weight_files(path).values())):
        size = f.stat().st_size
        h.update(f.name.encode() + str(size).encode())
        with open(f, "rb") as fh:
            if size <= full_limit:
                for chunk in iter(lambda: fh.read(2**20), b""):
                    h.update(chunk)
            else:
                n = int.from_bytes(fh.read(8), "little")
                fh.seek(0)
                h.update(fh.read(8 + n + 2**20))
                fh.seek(size - 2**20)
                h.update(fh.read())
    return h.hexdigest()[:16]


def load_checkpoint(path, device="cpu", dtype=torch.float32) -> HuginnModel:
    """Build a HuginnModel from a checkpoint directory by key name; refuse missing or mis-shaped tensors."""
    path = Path(path)
    cfg = parse_config(read_config(path), where=str(path / "config.json"))
    files = weight_files(path)
    with torch.device("meta"):
        model = HuginnModel(cfg)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if cfg.tie_embeddings:
        expected.pop("lm_head.weight", None)
    missing = sorted(set(expected) - set(files))
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise ModelFormatError(f"{path}: missing tensor(s) {', '.join(missing[:5])}{more}")
    unexpected = sorted(set(files) - set(expected) - OPTIONAL_KEYS - {"lm_head.weight"})
    if unexpected:
        raise ModelFormatError(
            f"{path}: unexpected tensor(s) {', '.join(unexpected[:5])}: the checkpoint does not match its config"
        )
    state: Dict[str, torch.Tensor] = {}
    by_file: Dict[Path, list] = {}
    for name in expected:
        by_file.setdefault(files[name], []).append(name)
    for f, names in by_file.items():
        try:
            with safe_open(str(f), framework="pt", device="cpu") as fh:
                for name in names:
                    shape = tuple(fh.get_slice(name).get_shape())
                    if shape != expected[name]:
                        raise ModelFormatError(
                            f"{f.name}: tensor {name} has shape {list(shape)}, expected {list(expected[name])} "
                            "from config.json"
                        )
                    state[name] = fh.get_tensor(name).to(device=device, dtype=dtype)
        except ModelFormatError:
            raise
        except Exception as exc:
            raise ModelFormatError(f"could not read {f}: {exc}") from None
    if cfg.tie_embeddings:
        state["lm_head.weight"] = state["transformer.wte.weight"]
    elif "lm_head.weight" not in state:
        raise ModelFormatError(f"{path}: missing tensor lm_head.weight (tie_embeddings is false)")
    for name, t in state.items():
        if not torch.isfinite(t).all():
            raise ModelFormatError(f"{path}: tensor {name} contains NaN or infinite values")
    model.load_state_dict(state, strict=True, assign=True)
    if cfg.tie_embeddings:
        model.lm_head.weight = model.transformer.wte.weight
    model.eval()
    return model


def huginn_state_dict(model: HuginnModel, dtype: Optional[torch.dtype] = None) -> Dict[str, torch.Tensor]:
    """The model's tensors under Huginn's key names, with the tied head stored as a copy and freqs_cis."""
    cfg = model.config
    out = {}
    for k, v in model.state_dict().items():
        t = v.detach().to("cpu")
        out[k] = (t.to(dtype) if dtype is not None else t).contiguous().clone()
    hd = cfg.head_dim
    inv = cfg.rope_base ** (-torch.arange(0, hd, 2, dtype=torch.float32) / hd)
    ang = torch.arange(cfg.block_size, dtype=torch.float32)[:, None] * inv
    out["freqs_cis"] = torch.stack([ang.cos(), ang.sin()], dim=-1)[None, :, None]
    return out


def save_checkpoint(
    model: HuginnModel,
    path,
    *,
    dtype: Optional[torch.dtype] = None,
    max_shard_bytes: Optional[int] = None,
    extra_config: Optional[dict] = None,
) -> Path:
    """Write config.json and safetensors (one file, or shards + index when max_shard_bytes is given)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    cfg = model.config.to_json_dict()
    if dtype is not None:
        cfg["torch_dtype"] = str(dtype).replace("torch.", "")
    if extra_config:
        cfg.update(extra_config)
    (path / "config.json").write_text(json.dumps(cfg, indent=2))
    sd = huginn_state_dict(model, dtype)
    if max_shard_bytes is None:
        save_file(sd, str(path / SINGLE_FILE), metadata={"format": "pt"})
        return path
    shards: list = [{}]
    size = 0
    for k in sorted(sd):
        nbytes = sd[k].numel() * sd[k].element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][k] = sd[k]
        size += nbytes
    weight_map = {}
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(path / fname), metadata={"format": "pt"})
        weight_map.update({k: fname for k in shard})
    total = sum(t.numel() * t.element_size() for t in sd.values())
    (path / INDEX_FILE).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    return path


def init_weights(model: HuginnModel, seed: int = 0, std: Optional[float] = None) -> HuginnModel:
    """Random weights with non-trivial norms and q/k biases (for tests and for training from scratch)."""
    g = torch.Generator().manual_seed(seed)
    E = model.config.n_embd
    std = std if std is not None else math.sqrt(2 / (5 * E))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm_1.weight") or ".norm_" in name or name.endswith("ln_f.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("qk_bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(std * torch.randn(p.shape, generator=g))
    return model
